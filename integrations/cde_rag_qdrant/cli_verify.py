"""``cde-rag verify``: does this install reproduce the cde-small-v2 model card's table?

Needs no Qdrant store. Heavy imports (torch, pyarrow, huggingface_hub) happen in :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

EXIT_MISMATCH = 9
"""Exit code when the embeddings do not reproduce the card."""

DESCRIPTION = """\
Embed the texts of the cde-small-v2 model card's example (sentence-transformers/natural-questions,
train split: context = the last 512 answers, documents = the first 2,000 answers, queries = the
first 10 queries) and compare the top-5 cosine table with the card's: every similarity within
2e-3, the same documents (tied ranks as sets). Needs the Hugging Face Hub the first time (the
model and the dataset's parquet files are kept in the HF cache) and the extra `verify` (pyarrow).

Cost: 2,522 texts (512 context, 2,000 documents, 10 queries): 40-50 minutes on 2 CPU cores,
about a minute on a GPU; a progress bar shows the ETA.
--all-switches adds the other three combinations of output_residual and
pool_ignore_instruction_tokens at almost no extra cost: the context (stage 1) uses neither
switch and both act after the stage-2 backbone, so one pass serves all four.

exit codes: 0 reproduced · 9 not reproduced (the table shows where) · 4 model or dataset not
available (offline: pass local copies with --model / --dataset) · 2 usage, or a dataset
without the card's columns or rows · 1 other error (e.g. pyarrow missing: the message says what
to install)
"""


def add_parser(sub: Any, epilog: str) -> argparse.ArgumentParser:
    """Add the ``verify`` subcommand to ``sub`` (the subparsers of ``cde-rag``)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="check this install against the cde-small-v2 model card (needs the Hub)",
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = parser.add_argument_group("model and data")
    g.add_argument(
        "--model",
        default=None,
        help="hub id or local folder (default: the card's model, jxm/cde-small-v2)",
    )
    g.add_argument("--revision", default=None, help="hub revision of the model to pin")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    g.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="compute dtype (default: float32, as the card)",
    )
    g.add_argument(
        "--dataset",
        default=None,
        help="hub dataset id, or a local .parquet file or folder (default: "
        "sentence-transformers/natural-questions)",
    )
    g.add_argument("--dataset-revision", default=None, help="hub revision of the dataset")
    g.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    g.add_argument(
        "--all-switches",
        action="store_true",
        help="report all four combinations of output_residual and "
        "pool_ignore_instruction_tokens (one pass over the texts)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    out.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``cde-rag verify``; returns 0 when the card is reproduced, :data:`EXIT_MISMATCH` not.

    Download and load failures propagate as ``cde_rag`` errors (the caller maps them to exit
    codes: ``DatasetDownloadError`` and ``CheckpointError`` to 4).
    """
    from cde_rag import CDEEncoder, verify
    from cde_rag.errors import InvalidInputError

    if args.batch_size < 1:
        msg = f"--batch-size {args.batch_size}: expected a positive number."
        raise InvalidInputError(msg)
    card = verify.CDE_SMALL_V2_NQ
    model = args.model or card.model_id
    data = verify.load_card_data(card, dataset=args.dataset, revision=args.dataset_revision)
    logger.info("loaded %d texts from %s", len(data.documents) + len(data.queries), data.source)
    encoder = CDEEncoder.from_pretrained(
        model, revision=args.revision, device=args.device, dtype=args.dtype
    )
    if encoder.identity.model_id != card.model_id and not args.quiet:
        print(
            f"cde-rag: note: the card was published for {card.model_id}; {model} is expected "
            "to match only if it holds the same weights",
            file=sys.stderr,
        )
    report = verify.run_card_check(
        encoder,
        data,
        card,
        all_switches=args.all_switches,
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(verify.format_report(report))
    return 0 if report.passed else EXIT_MISMATCH

"""``cde-rag eval``: retrieval quality of several conditions on a BEIR-format data set.

Only argparse is imported at start; the model, numpy work and Qdrant are imported by the
handler. Without ``--collection`` no Qdrant store is opened or created.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

DEFAULT_OUTPUT = "./cde-rag-eval"
DEFAULT_MODEL = "jxm/cde-small-v2"

EVAL_EPILOG = """\
conditions (--conditions, comma-separated; the first is the reference of the tests):
  uniform, diverse   a context sampled from the evaluated corpus (--seed, --context-size)
  fallback           the model's generic context (reported unavailable when it has none)
  context:PATH       a saved CorpusContext, e.g. built from another corpus
  baseline:MODEL     a sentence-transformers model, hub id or folder (extra: baseline)
  ...@bf16           the same in bfloat16 (default list: only where bf16 is native)
  ...@hybrid         context conditions: the same cached vectors ranked in an in-memory
                     hybrid Qdrant collection (dense + lexical sparse, RRF); @sparse: lexical
  ...@int8, @binary  ranked in an int8/binary-quantized in-memory collection with rescoring
                     (in-memory Qdrant searches exactly: results equal dense; see README)
  default: uniform,diverse,fallback,uniform@bf16

examples:
  cde-rag eval ./scifact --model ./cde-small-v2
  cde-rag eval ./scifact --conditions uniform,fallback,baseline:./all-MiniLM-L6-v2 --json
  cde-rag eval ./scifact --conditions uniform,uniform@hybrid,uniform@int8
  cde-rag eval ./scifact --collection scifact --qdrant-path ./cde_data   # an ingested corpus
"""


def add_eval_parser(
    sub: Any, formatter_class: type[argparse.HelpFormatter], epilog: str
) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to ``sub`` (the subparsers of ``cde-rag``)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="measure retrieval quality (context vs no context, fp32 vs bf16, baselines)",
        description="Compare retrieval conditions on a BEIR-format data set: corpus.jsonl, "
        "queries.jsonl, qrels/<split>.tsv. Metrics: nDCG@10, Recall@10, Recall@100, MRR@10.",
        epilog=EVAL_EPILOG + "\n" + epilog,
        formatter_class=formatter_class,
    )
    p.add_argument("data", type=Path, metavar="DATA", help="BEIR-format data set folder")
    p.add_argument("--split", default="test", help="qrels split (default: %(default)s)")
    p.add_argument(
        "--conditions",
        action="append",
        default=[],
        metavar="LIST",
        help="conditions to compare (comma-separated, repeatable; see below)",
    )
    p.add_argument("--seed", type=int, default=0, help="context sampling seed (default: 0)")
    p.add_argument("--context-size", type=int, default=None, help="context rows (model's)")
    p.add_argument("--batch-size", type=int, default=32, help="embedding batch size")
    p.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_OUTPUT),
        help="folder for run files, chart and cache (default: %(default)s)",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="default: OUTPUT/cache")
    p.add_argument("--no-cache", action="store_true", help="recompute everything")
    p.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    g = p.add_argument_group("model and store")
    g.add_argument("--model", default=None, help="hub id or local folder (default: "
                   f"the collection's model, else {DEFAULT_MODEL})")  # fmt: skip
    g.add_argument("--revision", default=None, help="hub revision to pin")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    g.add_argument(
        "--collection",
        default=None,
        help="evaluate this existing collection instead (its points' metadata must carry "
        "the corpus id, see --id-key); DATA then needs only queries and qrels",
    )
    g.add_argument("--id-key", default="_id", help="metadata key of the corpus id (default: _id)")
    where = g.add_mutually_exclusive_group()
    where.add_argument(
        "--qdrant-path", default=None, help="embedded store (with --collection; default ./cde_data)"
    )
    where.add_argument("--qdrant-url", default=None, help="Qdrant server URL (with --collection)")
    g.add_argument(
        "--api-key",
        default=os.environ.get("QDRANT_API_KEY"),
        help="server API key (default: $QDRANT_API_KEY)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    out.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return p


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def run_eval(args: argparse.Namespace, connect: Callable[[], QdrantClient]) -> int:
    """Handle ``cde-rag eval``; ``connect`` opens the store (only used with --collection)."""
    from cde_rag import CDEEncoder
    from cde_rag.errors import InvalidInputError
    from cde_rag_qdrant.evaluation import evaluate, evaluate_collection
    from cde_rag_qdrant.evaluation.conditions import split_specs

    if args.collection is None and (args.qdrant_path or args.qdrant_url):
        msg = "--qdrant-path/--qdrant-url only apply with --collection NAME"
        raise InvalidInputError(msg)
    if args.collection is not None and args.conditions:
        msg = "--conditions apply to the local path; a --collection is evaluated as stored"
        raise InvalidInputError(msg)
    progress = not args.quiet
    if not args.quiet:  # "condition 2/4: diverse" lines between the progress bars
        logging.getLogger("cde_rag_qdrant.evaluation").setLevel(logging.INFO)
    else:  # also transformers' "Loading weights" bar of a baseline model
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    specs = split_specs(args.conditions) or None
    common: dict[str, Any] = {
        "split": args.split,
        "output_dir": args.output,
        "cache_dir": args.cache_dir,
        "use_cache": not args.no_cache,
        "chart": not args.no_chart,
        "batch_size": args.batch_size,
        "show_progress_bar": progress,
    }
    if args.collection is not None:
        from cde_rag_qdrant import _store

        client = connect()
        try:
            record = _store.read_record(client, args.collection)
            model, revision = args.model or record.model_id, args.revision or record.revision
            encoder = CDEEncoder.from_pretrained(model, revision=revision, device=args.device)
            report = evaluate_collection(
                client, args.collection, args.data, encoder, id_key=args.id_key, **common
            )
        finally:
            client.close()
    else:
        only_baselines = specs is not None and all(s.startswith("baseline:") for s in specs)
        cde = (
            None
            if only_baselines
            else CDEEncoder.from_pretrained(
                args.model or DEFAULT_MODEL, revision=args.revision, device=args.device
            )
        )
        report = evaluate(
            args.data,
            cde,
            conditions=specs,
            seed=args.seed,
            context_size=args.context_size,
            **common,
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(report.table())
        for note in report.notes:
            _note(args, f"note: {note}")
        files = [c.run_file for c in report.conditions if c.run_file is not None]
        if files:
            _note(args, f"run files: {', '.join(map(str, files))}")
        if report.chart is not None:
            _note(args, f"chart: {report.chart}")
    return 0

"""Real-weight acceptance: reproduce the cde-small-v2 model card's Natural Questions table.

The card of ``jxm/cde-small-v2`` publishes a complete example with its outputs: dataset
``sentence-transformers/natural-questions`` (split ``train``, not shuffled: the card calls
``dataset.shuffle(seed=42)`` without keeping the result), context = the last 512 answers in
order, documents = the first 2,000 answers, queries = the first 10 queries, cosine similarity,
top 5 per query. :func:`run_card_check` embeds the same texts and compares: every similarity
within ``2e-3`` of the card and the same documents (ranks tied on the card, equal to 4 decimals,
compared as sets).

Example:
    >>> from cde_rag import CDEEncoder
    >>> from cde_rag.verify import format_report, load_card_data, run_card_check
    >>> data = load_card_data()  # doctest: +SKIP
    >>> encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2")  # doctest: +SKIP
    >>> print(format_report(run_card_check(encoder, data)))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from cde_rag import _verify_embed
from cde_rag._verify_data import load_columns
from cde_rag._verify_embed import ALL_SWITCHES, Switches, encoder_switches
from cde_rag._verify_report import (
    VALUE_TOLERANCE,
    TableCheck,
    VerifyReport,
    compare_table,
    format_report,
    tie_groups,
    top_k,
)
from cde_rag.context import CorpusContext
from cde_rag.encoder import CDEEncoder
from cde_rag.errors import InvalidInputError, VerificationDataError
from cde_rag.progress import progress_enabled

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_SWITCHES",
    "CDE_SMALL_V2_NQ",
    "VALUE_TOLERANCE",
    "CardData",
    "CardTable",
    "Switches",
    "TableCheck",
    "VerifyReport",
    "compare_table",
    "format_report",
    "load_card_data",
    "run_card_check",
    "tie_groups",
    "top_k",
]


@dataclass(frozen=True)
class CardTable:
    """A published top-k table: which texts were embedded and what came out.

    Attributes:
        model_id: The model the table was published for.
        dataset: Hub dataset id of the texts.
        split: Its split.
        n_queries: Queries: the first ``n_queries`` of ``query_column``.
        n_documents: Documents: the first ``n_documents`` of ``document_column``.
        n_context: Context: the last ``n_context`` of ``document_column``, in order.
        values: ``(n_queries, k)`` cosine similarities, best first, as published.
        indices: ``(n_queries, k)`` document indices, as published.
        query_column: Column of the queries.
        document_column: Column of the documents and context documents.
        source: Where the table was published.
    """

    model_id: str
    dataset: str
    split: str
    n_queries: int
    n_documents: int
    n_context: int
    values: tuple[tuple[float, ...], ...]
    indices: tuple[tuple[int, ...], ...]
    query_column: str = "query"
    document_column: str = "answer"
    source: str = ""

    def __post_init__(self) -> None:
        """Check that the table is rectangular and matches ``n_queries``."""
        k = len(self.values[0]) if self.values else 0
        shape_ok = (
            k > 0
            and len(self.values) == len(self.indices) == self.n_queries
            and all(len(r) == k for r in (*self.values, *self.indices))
        )
        if not shape_ok or min(self.n_documents, self.n_context) < 1:
            msg = (
                f"card table for {self.model_id!r}: values and indices must both be "
                f"{self.n_queries} rows of the same length k >= 1, with positive n_documents "
                "and n_context."
            )
            raise InvalidInputError(msg)

    @property
    def top_k(self) -> int:
        """Results per query."""
        return len(self.values[0])


CDE_SMALL_V2_NQ = CardTable(
    model_id="jxm/cde-small-v2",
    dataset="sentence-transformers/natural-questions",
    split="train",
    n_queries=10,
    n_documents=2000,
    n_context=512,
    values=(
        (0.5495, 0.5426, 0.5423, 0.5292, 0.5286),
        (0.6357, 0.6334, 0.6177, 0.5862, 0.5794),
        (0.7648, 0.5452, 0.5000, 0.4959, 0.4881),
        (0.6802, 0.5225, 0.5178, 0.5160, 0.5075),
        (0.6947, 0.5843, 0.5619, 0.5344, 0.5298),
        (0.7742, 0.7742, 0.7742, 0.7231, 0.6224),
        (0.8853, 0.6667, 0.5829, 0.5795, 0.5769),
        (0.6911, 0.6127, 0.6003, 0.5986, 0.5936),
        (0.6796, 0.6053, 0.6000, 0.5911, 0.5884),
        (0.7624, 0.5589, 0.5428, 0.5278, 0.5275),
    ),
    indices=(
        (0, 296, 234, 1651, 1184),
        (1542, 466, 438, 1207, 1911),
        (2, 1562, 632, 1852, 382),
        (3, 694, 932, 1765, 662),
        (4, 35, 747, 26, 432),
        (534, 175, 5, 1495, 575),
        (6, 1802, 1875, 747, 21),
        (7, 1913, 1936, 640, 6),
        (8, 747, 167, 1318, 1743),
        (9, 1583, 1145, 219, 357),
    ),
    source="https://huggingface.co/jxm/cde-small-v2 (model card, Sentence Transformers example)",
)
"""The cde-small-v2 card's Natural Questions table (values from its CUDA run)."""


@dataclass(frozen=True)
class CardData:
    """The texts a card embedded.

    Attributes:
        queries: The queries, in order.
        documents: The documents (the indices of the table point into these).
        context_documents: The context documents, in order.
        source: Where they came from (``repo@commit`` or a path).
    """

    queries: tuple[str, ...]
    documents: tuple[str, ...]
    context_documents: tuple[str, ...]
    source: str = ""

    @classmethod
    def from_columns(
        cls,
        queries: Sequence[str],
        documents: Sequence[str],
        card: CardTable = CDE_SMALL_V2_NQ,
        *,
        source: str = "",
    ) -> CardData:
        """Select the card's rows from whole dataset columns (no shuffling).

        Raises:
            VerificationDataError: The columns differ in length or are too short.
        """
        need = max(card.n_queries, card.n_documents, card.n_context)
        if len(queries) != len(documents) or len(documents) < need:
            msg = (
                f"the dataset has {len(queries)} queries and {len(documents)} documents; the "
                f"card needs two equally long columns of at least {need} rows."
            )
            raise VerificationDataError(msg)
        return cls(
            queries=tuple(queries[: card.n_queries]),
            documents=tuple(documents[: card.n_documents]),
            context_documents=tuple(documents[len(documents) - card.n_context :]),
            source=source,
        )


def load_card_data(
    card: CardTable = CDE_SMALL_V2_NQ,
    *,
    dataset: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> CardData:
    """Fetch the card's dataset (or read a local copy) and select its rows.

    Args:
        card: The table whose texts to load.
        dataset: Hub dataset id or local ``.parquet`` file or folder (default: the card's).
        revision: Hub revision of the dataset to pin.
        cache_dir: Hugging Face cache folder.

    Returns:
        The queries, documents and context documents.

    Raises:
        DatasetDownloadError: Offline or Hub unreachable (says how to use a local copy).
        VerificationDataError: Unreadable files, missing columns, too few rows.
        OptionalDependencyError: pyarrow is missing (extra ``verify``).
    """
    columns, where = load_columns(
        card.dataset if dataset is None else dataset,
        card.split,
        (card.query_column, card.document_column),
        revision=revision,
        cache_dir=cache_dir,
    )
    return CardData.from_columns(
        columns[card.query_column], columns[card.document_column], card, source=where
    )


def run_card_check(
    encoder: CDEEncoder,
    data: CardData,
    card: CardTable = CDE_SMALL_V2_NQ,
    *,
    all_switches: bool = False,
    context: CorpusContext | None = None,
    tolerance: float = VALUE_TOLERANCE,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> VerifyReport:
    """Embed the card's texts with ``encoder`` and compare the top-k table with the card's.

    Args:
        encoder: The encoder to check (``jxm/cde-small-v2`` for the default card).
        data: The card's texts (:func:`load_card_data`, or built by hand).
        card: The published table.
        all_switches: Also compute the other three combinations of ``output_residual`` and
            ``pool_ignore_instruction_tokens``. Shares the context and one stage-2 backbone
            pass (see :mod:`cde_rag._verify_embed`), so it costs about what a single check does.
            Without it the documents go through the public ``embed_documents`` path.
        context: A context already built from ``data.context_documents`` by this model (for
            example ``report.context`` of an earlier run); built when None.
        tolerance: Largest accepted ``|similarity - card|``.
        batch_size: Texts per forward pass.
        show_progress_bar: One bar over every text, with an ETA (default: when logging at INFO).

    Returns:
        The report; ``report.passed`` tells whether the encoder as loaded reproduces the card.

    Raises:
        InvalidInputError: ``data`` does not have the card's numbers of texts.
    """
    counts = (len(data.queries), len(data.documents), len(data.context_documents))
    if counts != (card.n_queries, card.n_documents, card.n_context):
        msg = (
            f"data has {counts[0]} queries, {counts[1]} documents and {counts[2]} context "
            f"documents; the card needs {card.n_queries}, {card.n_documents} and "
            f"{card.n_context}. Build it with load_card_data() or CardData.from_columns()."
        )
        raise InvalidInputError(msg)
    start = time.perf_counter()
    total = (
        len(data.documents)
        + len(data.queries)
        + (0 if context is not None else len(data.context_documents))
    )
    kw: dict[str, Any] = {"batch_size": batch_size}
    truncated = _verify_embed.count_truncated(encoder, data)
    if truncated:
        logger.warning(
            "truncated %d of %d texts to max_length=%d tokens",
            truncated,
            len(data.context_documents) + len(data.documents) + len(data.queries),
            encoder.max_length,
        )
    with (
        tqdm(
            total=total,
            desc="Verifying",
            unit="text",
            disable=not progress_enabled(show_progress_bar),
        ) as bar,
        _verify_embed.one_truncation_warning(),
    ):
        if context is None:
            context = _verify_embed.build_context(encoder, data.context_documents, bar, **kw)
        if all_switches:
            docs = _verify_embed.embed_all_switches(
                encoder, data.documents, context, "document", bar, **kw
            )
            queries = _verify_embed.embed_all_switches(
                encoder, data.queries, context, "query", bar, **kw
            )
            own = encoder_switches(encoder)
            runs = [(s, queries[s], docs[s]) for s in sorted(ALL_SWITCHES, key=lambda s: s != own)]
        else:
            d = _verify_embed.embed(encoder, data.documents, context, "document", bar, **kw)
            q = _verify_embed.embed(encoder, data.queries, context, "query", bar, **kw)
            runs = [(encoder_switches(encoder), q, d)]
    checks = []
    for switches, q_vecs, d_vecs in runs:
        values, indices = top_k(q_vecs, d_vecs, card.top_k)
        checks.append(compare_table(values, indices, card, switches=switches, tolerance=tolerance))
    identity = encoder.identity
    return VerifyReport(
        card=card,
        model_id=identity.model_id,
        weights_hash=identity.weights_hash,
        revision=identity.revision,
        device=str(encoder.device),
        dtype=str(encoder.dtype).removeprefix("torch."),
        data_source=data.source,
        default=encoder_switches(encoder),
        checks=tuple(checks),
        tolerance=tolerance,
        seconds=time.perf_counter() - start,
        context=context,
        truncated=truncated,
    )

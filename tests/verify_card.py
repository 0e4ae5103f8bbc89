"""A synthetic "model card" for the offline tests of ``cde_rag.verify`` and ``cde-rag verify``.

The table is computed through the public API (build_context, embed_*), independently of the
verify module, from a small dataset holding duplicated documents (exact ties).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch.nn.functional as F

from cde_rag import CDEEncoder
from cde_rag.verify import CardData, CardTable
from tests.conftest import corpus_texts

K = 4
N_DOCS, N_QUERIES, N_CONTEXT = 12, 4, 16
DUPLICATE, COPIES = 3, (10, 11)  # documents 10 and 11 repeat document 3: exact ties


def synthetic_columns() -> tuple[list[str], list[str]]:
    """A 40-row (query, answer) dataset; context = its last 16 answers."""
    answers = corpus_texts() + [
        f"{t} It was noted again in the annual report." for t in corpus_texts()
    ]
    for i in COPIES:
        answers[i] = answers[DUPLICATE]
    queries = [answers[DUPLICATE], "volcanic islands", "how do tomatoes grow?", "rotating keys"]
    queries += [f"filler question {i}" for i in range(len(answers) - len(queries))]
    return queries, answers


def blank_card(**changes: Any) -> CardTable:
    """A card with the synthetic dimensions and zero values (``changes`` replace fields)."""
    base = CardTable(
        model_id="v2-tiny",
        dataset="local",
        split="train",
        n_queries=N_QUERIES,
        n_documents=N_DOCS,
        n_context=N_CONTEXT,
        values=((0.0,) * K,) * N_QUERIES,
        indices=((0,) * K,) * N_QUERIES,
    )
    return dataclasses.replace(base, **changes)


def published_table(encoder: CDEEncoder, data: CardData) -> CardTable:
    """What a card would publish for ``encoder``: public API, torch topk, 4 decimals."""
    context = encoder.build_context(list(data.context_documents), show_progress_bar=False)
    docs = encoder.embed_documents(list(data.documents), context, output="torch")
    queries = encoder.embed_queries(list(data.queries), context, output="torch")
    sims = F.normalize(queries, dim=-1) @ F.normalize(docs, dim=-1).T
    values, indices = sims.topk(K)
    return blank_card(
        values=tuple(tuple(round(v, 4) for v in row) for row in values.tolist()),
        indices=tuple(tuple(row) for row in indices.tolist()),
    )


def synthetic_card(encoder: CDEEncoder) -> CardTable:
    """The card ``encoder`` (as loaded) reproduces on :func:`synthetic_columns`."""
    queries, answers = synthetic_columns()
    return published_table(encoder, CardData.from_columns(queries, answers, blank_card()))


def write_parquet(path: Path, queries: list[str], answers: list[str]) -> Path:
    """A parquet file with the card's columns (and one more)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = list(range(len(queries)))
    pq.write_table(pa.table({"query": queries, "answer": answers, "extra": extra}), path)
    return path


def card_json(card: CardTable) -> dict[str, Any]:
    """``card`` as JSON (for a subprocess)."""
    return dataclasses.asdict(card)

"""Ranking metrics (trec_eval definitions) and TREC run files.

Computed here with numpy rather than through a library: the four measures are a few lines each,
this keeps ``cde-rag eval`` free of compiled extras (``pytrec_eval``) and heavy ones (``ranx``
pulls numba), and the test suite checks every value against ``ir-measures`` /
``pytrec_eval-terrier`` on the same run files to 1e-9.

Definitions (as trec_eval): documents are ranked by score, ties broken by document id in
descending order; a document is relevant when its qrels grade is > 0; nDCG uses the grade as
the gain and ``log2(rank + 1)`` as the discount, the ideal ranking being all judged documents
by grade; Recall@k = relevant in the top k / all relevant; RR@10 = 1 / rank of the first
relevant document in the top 10 (0 when none). Their means over queries are reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cde_rag_qdrant.errors import DatasetFormatError

METRICS = ("nDCG@10", "Recall@10", "Recall@100", "MRR@10")
"""Reported measures, in table order."""
RUN_DEPTH = 100
"""Documents kept per query in a run (enough for Recall@100)."""

Run = dict[str, list[tuple[str, float]]]
"""``{query id: [(doc id, score), ...]}``, best first."""


def rank(
    candidates: Sequence[tuple[str, float]], depth: int = RUN_DEPTH
) -> list[tuple[str, float]]:
    """Order ``(doc id, score)`` pairs as trec_eval does and keep the first ``depth``."""
    ordered = sorted(candidates, key=lambda item: item[0], reverse=True)
    ordered.sort(key=lambda item: item[1], reverse=True)  # stable: ties keep id-descending
    return ordered[:depth]


def _ndcg(grades: Sequence[int], judged: Mapping[str, int], k: int) -> float:
    gains = [max(g, 0) for g in grades[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def query_metrics(ranking: Sequence[tuple[str, float]], judged: Mapping[str, int]) -> list[float]:
    """The :data:`METRICS` of one query, from its ranking (best first) and its qrels."""
    grades = [judged.get(doc, 0) for doc, _ in ranking]
    n_relevant = sum(1 for g in judged.values() if g > 0)
    hits = [g > 0 for g in grades]
    first = next((i for i, hit in enumerate(hits[:10]) if hit), None)
    return [
        _ndcg(grades, judged, 10),
        sum(hits[:10]) / n_relevant if n_relevant else 0.0,
        sum(hits[:100]) / n_relevant if n_relevant else 0.0,
        0.0 if first is None else 1.0 / (first + 1),
    ]


def evaluate_run(
    run: Run, qrels: Mapping[str, Mapping[str, int]], query_ids: Sequence[str]
) -> dict[str, npt.NDArray[np.float64]]:
    """Per-query values of every metric, aligned with ``query_ids``.

    Each query's ranking is re-ordered with :func:`rank`, so the values are those trec_eval
    computes from the run file. A query missing from ``run`` scores 0.
    """
    rows = [query_metrics(rank(run.get(q, [])), qrels[q]) for q in query_ids]
    table = np.asarray(rows, dtype=np.float64).reshape(len(query_ids), len(METRICS))
    return {name: table[:, i] for i, name in enumerate(METRICS)}


def write_trec_run(path: Path, run: Run, tag: str) -> None:
    """Write ``run`` as a TREC run file (``qid Q0 docid rank score tag``).

    Scores are written with ``repr``, so reading the file back gives the very same ranking.
    """
    if not tag or any(c.isspace() for c in tag):
        msg = f"run tag {tag!r} must be a non-empty string without spaces"
        raise DatasetFormatError(msg)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for qid, ranking in run.items():
            for position, (doc, score) in enumerate(rank(ranking), start=1):
                f.write(f"{qid} Q0 {doc} {position} {score!r} {tag}\n")
    tmp.replace(path)


def read_trec_run(path: Path) -> Run:
    """Read a TREC run file into a :data:`Run` (ranked as trec_eval ranks it)."""
    run: Run = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                msg = f"{path}:{number}: expected 'qid Q0 docid rank score tag', got {line!r:.80}"
                raise DatasetFormatError(msg)
            run.setdefault(fields[0], []).append((fields[2], float(fields[4])))
    return {qid: rank(ranking, depth=len(ranking)) for qid, ranking in run.items()}

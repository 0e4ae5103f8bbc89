"""Metrics equal trec_eval's (pytrec_eval via ir-measures) on the same run files, to 1e-9."""

from __future__ import annotations

from pathlib import Path

import ir_measures
import numpy as np
import pytest
from ir_measures import RR, R, nDCG
from scipy import stats

from cde_rag_qdrant.errors import DatasetFormatError
from cde_rag_qdrant.evaluation import (
    METRICS,
    evaluate_run,
    paired_randomization_test,
    read_trec_run,
    write_trec_run,
)
from cde_rag_qdrant.evaluation.metrics import Run, rank
from cde_rag_qdrant.evaluation.retrieval import exact_run

REFERENCE = {"nDCG@10": nDCG @ 10, "Recall@10": R @ 10, "Recall@100": R @ 100, "MRR@10": RR @ 10}
"""pytrec_eval (trec_eval) computes nDCG and recall. trec_eval has no cut-off for RR: RR@10 is
its ``recip_rank`` on the first 10 lines per query of the run file (ranked as trec_eval ranks;
the nDCG@10 check on tie-heavy runs holds that order), and on tie-free runs also ir-measures'
``msmarco`` provider (the MS MARCO script; it breaks ties the other way, so only without ties)."""


def _random_case(seed: int) -> tuple[Run, dict[str, dict[str, int]]]:
    """Graded qrels, ties in scores, relevant documents outside the run, 150-deep rankings."""
    rng = np.random.default_rng(seed)
    docs = [f"doc{i:03d}" for i in range(300)]
    run: Run = {}
    qrels: dict[str, dict[str, int]] = {}
    for q in range(40):
        qid = f"q{q}"
        chosen = rng.choice(len(docs), size=150, replace=False)
        scores = np.round(rng.random(150), 2)  # two decimals: many exact ties
        run[qid] = [(docs[i], float(s)) for i, s in zip(chosen, scores, strict=True)]
        judged = rng.choice(len(docs), size=int(rng.integers(1, 30)), replace=False)
        grades = rng.integers(-1, 4, size=judged.size)
        grades[0] = max(int(grades[0]), 1)  # at least one relevant document
        qrels[qid] = {docs[i]: int(g) for i, g in zip(judged, grades, strict=True)}
    return run, qrels


def _first_lines(path: Path, k: int) -> list[ir_measures.ScoredDoc]:
    """The first ``k`` lines per query of a run file written in rank order."""
    kept: list[ir_measures.ScoredDoc] = []
    seen: dict[str, int] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, position, score, _ = line.split()
        seen[qid] = seen.get(qid, 0) + 1
        assert int(position) == seen[qid]
        if seen[qid] <= k:
            kept.append(ir_measures.ScoredDoc(qid, doc, float(score)))
    return kept


def _reference(path: Path, qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    run = list(ir_measures.read_trec_run(str(path)))
    judged = [ir_measures.Qrel(q, d, r) for q, rels in qrels.items() for d, r in rels.items()]
    out: dict[str, dict[str, float]] = {name: {} for name in METRICS}
    names = {str(m): name for name, m in REFERENCE.items()}
    trec = [REFERENCE[m] for m in ("nDCG@10", "Recall@10", "Recall@100")]
    top10 = _first_lines(path, 10)
    metrics = [
        *ir_measures.pytrec_eval.iter_calc(trec, judged, run),
        *ir_measures.pytrec_eval.iter_calc([RR], judged, top10),
    ]
    for metric in metrics:
        name = "MRR@10" if metric.measure == RR else names[str(metric.measure)]
        out[name][metric.query_id] = metric.value
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_trec_eval_on_the_run_file(tmp_path: Path, seed: int) -> None:
    run, qrels = _random_case(seed)
    path = tmp_path / "run.trec"
    write_trec_run(path, run, "test")
    ours = evaluate_run(read_trec_run(path), qrels, list(qrels))
    ref = _reference(path, qrels)
    for name in METRICS:
        expected = np.array([ref[name][q] for q in qrels])
        assert np.abs(ours[name] - expected).max() < 1e-9, name
        assert ours[name].std() > 0  # the case is not degenerate
    # evaluating the in-memory run gives what the file gives
    direct = evaluate_run(run, qrels, list(qrels))
    for name in METRICS:
        np.testing.assert_array_equal(direct[name], ours[name])


def test_run_file_of_exact_cosine_ranking_matches_trec_eval(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    docs = rng.normal(size=(250, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    docs[7] = docs[3]  # an exact tie
    queries = docs[:30] + 0.3 * rng.normal(size=(30, 16)).astype(np.float32)
    queries[3] = docs[3]  # its two best documents tie exactly
    doc_ids = [f"d{i}" for i in range(250)]
    query_ids = [f"q{i}" for i in range(30)]
    run = exact_run(docs, queries, doc_ids, query_ids)
    assert all(len(r) == 100 for r in run.values())
    full = queries @ docs.T
    for row, q in enumerate(query_ids):  # the top 100 by score are kept, best first
        top = rank(run[q])
        assert top[0][1] == float(full[row].max())
        assert top[-1][1] == float(np.sort(full[row])[-100])
    assert rank(run["q3"])[:2] == [("d7", float(full[3, 7])), ("d3", float(full[3, 3]))]
    qrels = {q: {f"d{i}": 1, f"d{(i * 7) % 250}": 2} for i, q in enumerate(query_ids)}
    path = tmp_path / "exact.trec"
    write_trec_run(path, run, "exact")
    ours = evaluate_run(run, qrels, query_ids)
    ref = _reference(path, qrels)
    for name in METRICS:
        assert np.abs(ours[name] - np.array([ref[name][q] for q in query_ids])).max() < 1e-9


def test_mrr_equals_msmarco_script_on_tie_free_runs(tmp_path: Path) -> None:
    run, qrels = _random_case(7)
    rng = np.random.default_rng(7)
    run = {q: [(d, float(rng.random())) for d, _ in r] for q, r in run.items()}  # no ties
    path = tmp_path / "noties.trec"
    write_trec_run(path, run, "t")
    judged = [ir_measures.Qrel(q, d, r) for q, rels in qrels.items() for d, r in rels.items()]
    ref = {
        m.query_id: m.value
        for m in ir_measures.msmarco.iter_calc(
            [RR @ 10], judged, ir_measures.read_trec_run(str(path))
        )
    }
    ours = evaluate_run(run, qrels, list(qrels))["MRR@10"]
    assert np.abs(ours - np.array([ref[q] for q in qrels])).max() < 1e-9
    assert ours.max() > 0


def test_ties_are_broken_by_descending_doc_id_like_trec_eval() -> None:
    ranking = rank([("a", 0.5), ("c", 0.5), ("b", 0.9), ("d", 0.1)])
    assert [d for d, _ in ranking] == ["b", "c", "a", "d"]


def test_missing_query_scores_zero_and_run_file_errors(tmp_path: Path) -> None:
    values = evaluate_run({}, {"q": {"d": 1}}, ["q"])
    assert all(values[m][0] == 0.0 for m in METRICS)
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 0.5\n")
    with pytest.raises(DatasetFormatError, match=r"bad\.trec:1"):
        read_trec_run(bad)
    with pytest.raises(DatasetFormatError, match="without spaces"):
        write_trec_run(tmp_path / "x.trec", {}, "two words")


@pytest.mark.parametrize("n", [6, 11, 13])
def test_randomization_test_equals_scipy_exact(n: int) -> None:
    rng = np.random.default_rng(n)
    a = rng.random(n)
    b = a + rng.normal(0.15, 0.2, n)
    b[0] = a[0]  # a zero difference
    expected = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=10_000,
    ).pvalue
    assert paired_randomization_test(a, b) == pytest.approx(expected, abs=1e-12)
    assert paired_randomization_test(b, a) == pytest.approx(expected, abs=1e-12)  # other tail


def test_randomization_test_sampled_case_is_close_to_scipy_and_seeded() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(300)
    b = a + rng.normal(0.03, 0.25, 300)
    expected = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=20_000,
        rng=1,
    ).pvalue
    p = paired_randomization_test(a, b)
    assert p == paired_randomization_test(a, b)  # seeded: reproducible
    assert abs(p - expected) < 0.02
    assert paired_randomization_test(a, a) == 1.0
    assert paired_randomization_test(np.zeros(40), np.ones(40)) < 1e-3
    with pytest.raises(ValueError, match="equal-length"):
        paired_randomization_test([1.0, 2.0], [1.0])

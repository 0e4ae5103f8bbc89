"""``evaluate`` with the tiny checkpoints: every condition runs, the cache prevents re-embedding."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cde_rag import CDEEncoder, ContextMismatchError, InvalidInputError
from cde_rag_qdrant.evaluation import (
    METRICS,
    ContextCondition,
    embedders,
    evaluate,
    evaluate_run,
    parse_condition,
    read_trec_run,
)
from cde_rag_qdrant.evaluation.conditions import default_conditions
from tests.conftest import V1_TINY, corpus_texts

OTHER_CORPUS = [
    "The recipe needs two eggs, flour and a pinch of salt.",
    "Knead the dough for ten minutes, then let it rest.",
    "Bake at 200 degrees until the crust is golden.",
]


@pytest.fixture(scope="module")
def encoder(v2_with_fallback: Path) -> CDEEncoder:
    """The v2-tiny model, from a folder that has a random_strings.txt."""
    return CDEEncoder.from_pretrained(v2_with_fallback, device="cpu")


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every forward loop of any encoder (stage 1 and stage 2), by description."""
    calls: list[str] = []
    original: Callable[..., Any] = CDEEncoder._run

    def counting(self: CDEEncoder, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"{kwargs['desc']}/{str(self.dtype).removeprefix('torch.')}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CDEEncoder, "_run", counting)
    return calls


def test_every_condition_runs_and_the_cache_prevents_reembedding(
    tiny_data: Path, encoder: CDEEncoder, tmp_path: Path, model_calls: list[str]
) -> None:
    other = encoder.build_context(OTHER_CORPUS, show_progress_bar=False).save(
        tmp_path / "recipes.safetensors"
    )
    model_calls.clear()
    specs = ["uniform", "diverse", "fallback", f"context:{other}", "uniform@bf16"]
    out = tmp_path / "out"
    report = evaluate(tiny_data, encoder, conditions=specs, output_dir=out)
    names = ["uniform", "diverse", "fallback", "context:recipes", "uniform@bf16"]
    assert [c.name for c in report.conditions] == names
    assert all(c.available for c in report.conditions), [c.reason for c in report.conditions]
    # 4 contexts (stage 1; the file's is loaded), 5 x (documents + queries) in stage 2
    assert sorted(model_calls) == sorted(
        ["Context (stage 1)/float32"] * 3
        + ["Context (stage 1)/bfloat16"]
        + ["Embedding/float32"] * 8
        + ["Embedding/bfloat16"] * 2
    )
    assert report.reference == "uniform"
    assert report.n_queries == 8 and report.n_documents == 20
    for result in report.conditions:
        assert set(result.metrics) == set(METRICS)
        assert result.cached == []
        assert result.run_file is not None and result.run_file.is_file()
        from_file = evaluate_run(read_trec_run(result.run_file), report_qrels(tiny_data), QIDS)
        for m in METRICS:  # the run file reproduces the reported values
            assert from_file[m].tolist() == [result.per_query[m][q] for q in QIDS]
            assert result.metrics[m] == pytest.approx(np.mean(from_file[m]), abs=1e-12)
        if result.name == "uniform":
            assert result.p_values is None
        else:
            assert result.p_values is not None and set(result.p_values) == set(METRICS)
    assert report["uniform"].metrics["Recall@100"] == 1.0  # 20 documents: all retrieved
    assert report.chart is not None and report.chart.read_bytes()[:4] == b"\x89PNG"
    json.dumps(report.as_dict())  # JSON-able
    table = report.table()
    assert all(name in table for name in names) and "nDCG@10" in table

    model_calls.clear()
    again = evaluate(tiny_data, encoder, conditions=specs, output_dir=out)
    assert model_calls == []  # nothing re-embedded
    for first, second in zip(report.conditions, again.conditions, strict=True):
        assert first.per_query == second.per_query
        assert set(second.cached) >= {"documents", "queries"}

    more = evaluate(tiny_data, encoder, conditions=[*specs, "diverse@bf16"], output_dir=out)
    # only the new condition is embedded: its context, its documents, its queries
    assert model_calls == ["Context (stage 1)/bfloat16", "Embedding/bfloat16", "Embedding/bfloat16"]
    assert more["diverse@bf16"].available and more["diverse@bf16"].cached == []


QIDS = [f"q{i}" for i in range(8)]


def report_qrels(folder: Path) -> dict[str, dict[str, int]]:
    """The qrels of the tiny data set."""
    from cde_rag_qdrant.evaluation import load_beir

    return load_beir(folder).qrels


def test_v1_runs_and_a_missing_fallback_is_reported_not_fatal(
    tiny_data: Path, tmp_path: Path
) -> None:
    v1 = CDEEncoder.from_pretrained(V1_TINY, device="cpu", nomic_rotary_mode="repo_hf")
    report = evaluate(tiny_data, v1, conditions=["uniform", "fallback"], output_dir=tmp_path)
    assert report["uniform"].available
    fallback = report["fallback"]
    assert not fallback.available and "random_strings.txt" in str(fallback.reason)
    assert "unavailable: no random_strings.txt" in report.table()
    assert [p.name for p in tmp_path.glob("*.trec")] == ["tiny.test.uniform.trec"]


def test_bf16_without_native_units_only_when_asked(
    tiny_data: Path, encoder: CDEEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulated = (True, False, "this CPU has no AVX512-BF16/AMX units: bf16 is emulated (slow)")
    monkeypatch.setattr(embedders, "bf16_support", lambda device: emulated)
    by_default = [c for c in default_conditions() if c.name == "uniform@bf16"]
    assert by_default == [ContextCondition("uniform", dtype="bfloat16", native_only=True)]
    conditions = [ContextCondition("uniform"), *by_default, parse_condition("diverse@bf16")]
    report = evaluate(tiny_data, encoder, conditions=conditions, use_cache=False)
    skipped = report["uniform@bf16"]
    assert not skipped.available and "ask for it explicitly" in str(skipped.reason)
    assert report["diverse@bf16"].available
    assert emulated[2] in report["diverse@bf16"].notes
    monkeypatch.setattr(embedders, "bf16_support", lambda device: (False, False, "no bf16 here"))
    report = evaluate(tiny_data, encoder, conditions=["uniform", "diverse@bf16"], use_cache=False)
    assert report["diverse@bf16"].reason == "no bf16 here"


def test_foreign_context_is_refused_before_any_embedding(
    tiny_data: Path, encoder: CDEEncoder, v1_context: Any, tmp_path: Path, model_calls: list[str]
) -> None:
    path = v1_context.save(tmp_path / "v1.safetensors")
    model_calls.clear()
    with pytest.raises(ContextMismatchError):
        evaluate(tiny_data, encoder, conditions=["uniform", f"context:{path}"])
    assert model_calls == []


def test_without_matplotlib_the_report_says_how_to_get_the_chart(
    tiny_data: Path, encoder: CDEEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = evaluate(tiny_data, encoder, conditions=["uniform"], output_dir=tmp_path)
    assert report.chart is None and not list(tmp_path.glob("*.png"))
    assert any("pip install 'cde-rag[plot]'" in n for n in report.notes)


def test_bad_condition_spellings_are_refused(tiny_data: Path, encoder: CDEEncoder) -> None:
    with pytest.raises(InvalidInputError, match="unknown modifier '@nosuch'"):
        evaluate(tiny_data, encoder, conditions=["uniform@nosuch"])
    with pytest.raises(InvalidInputError, match="unknown; expected uniform"):
        parse_condition("random")
    with pytest.raises(InvalidInputError, match="no context file"):
        parse_condition("context:/nonexistent.safetensors")
    with pytest.raises(InvalidInputError, match="named twice"):
        evaluate(tiny_data, encoder, conditions=["uniform", "uniform"])
    with pytest.raises(InvalidInputError, match="needs a CDE model"):
        evaluate(tiny_data, None, conditions=["uniform"])
    assert corpus_texts()  # the data set is built from the shared corpus

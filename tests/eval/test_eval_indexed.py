"""``@hybrid``/``@sparse``/``@int8``/``@binary``: cached vectors ranked in a Qdrant collection."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, InvalidInputError
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.cli import main
from cde_rag_qdrant.evaluation import ContextCondition, evaluate, parse_condition, read_trec_run
from tests.conftest import V2_TINY
from tests.eval.conftest import write_beir
from tests.qdrant.hybrid_corpus import DOCS, QUERIES


@pytest.fixture(scope="module")
def encoder() -> CDEEncoder:
    """The v2-tiny model (random weights: dense search cannot tell identifiers apart)."""
    return CDEEncoder.from_pretrained(V2_TINY, device="cpu")


@pytest.fixture
def ident_data(tmp_path: Path) -> Path:
    """A BEIR folder whose queries name exact identifiers (error codes, function names)."""
    docs = {f"d{i}": text for i, text in enumerate(DOCS)}
    queries = {f"q{n}": text for n, (text, _) in enumerate(QUERIES)}
    qrels = {f"q{n}": {f"d{doc}": 1} for n, (_, doc) in enumerate(QUERIES)}
    return write_beir(tmp_path / "idents", docs, queries, qrels)


@pytest.fixture
def model_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every forward loop of the encoder (context, documents, queries), by description."""
    calls: list[str] = []
    original: Callable[..., Any] = CDEEncoder._run

    def counting(self: CDEEncoder, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(kwargs["desc"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CDEEncoder, "_run", counting)
    return calls


def test_hybrid_beats_dense_and_quantized_runs_without_reembedding(
    ident_data: Path, encoder: CDEEncoder, tmp_path: Path, model_calls: list[str]
) -> None:
    out = tmp_path / "out"
    dense = evaluate(ident_data, encoder, conditions=["uniform"], output_dir=out, chart=False)
    assert model_calls, "the dense condition embeds (context, documents, queries)"
    model_calls.clear()
    specs = ["uniform", "uniform@hybrid", "uniform@sparse", "uniform@int8", "uniform@binary"]
    report = evaluate(ident_data, encoder, conditions=specs, output_dir=out, chart=False)
    assert model_calls == []  # every condition reuses the cached context and vectors
    by_name = {c.name: c for c in report.conditions}
    assert list(by_name) == specs
    assert all(set(c.cached) == {"context", "documents", "queries"} for c in by_name.values())
    ndcg = {name: c.metrics["nDCG@10"] for name, c in by_name.items()}
    assert ndcg["uniform"] == pytest.approx(dense.conditions[0].metrics["nDCG@10"])
    assert ndcg["uniform@hybrid"] > ndcg["uniform"] + 0.1, ndcg
    assert ndcg["uniform@sparse"] == pytest.approx(1.0)  # every identifier found first
    # the in-memory Qdrant searches quantized collections exactly: same ranking as dense
    for quantized in ("uniform@int8", "uniform@binary"):
        run_file = by_name[quantized].run_file
        assert run_file is not None and run_file.is_file()
        run = read_trec_run(run_file)
        assert set(run) == {f"q{n}" for n in range(len(QUERIES))}
        assert all(len(hits) == len(DOCS) for hits in run.values())
        assert ndcg[quantized] == pytest.approx(ndcg["uniform"], abs=1e-6)
    assert "hybrid search in Qdrant" in by_name["uniform@hybrid"].description
    assert "int8-quantized" in by_name["uniform@int8"].description


def test_modifier_spellings(encoder: CDEEncoder, ident_data: Path) -> None:
    both = parse_condition("diverse@bf16@hybrid@int8")
    assert isinstance(both, ContextCondition)
    assert (both.source, both.dtype, both.mode, both.quantization) == (
        "diverse", "bfloat16", "hybrid", "int8",
    )  # fmt: skip
    assert both.name == "diverse@bf16@hybrid@int8" and both.indexed
    assert not parse_condition("uniform").indexed  # type: ignore[union-attr]
    with pytest.raises(InvalidInputError, match=r"unknown modifier '@nosuch'.*@hybrid"):
        evaluate(ident_data, encoder, conditions=["uniform@nosuch"])
    with pytest.raises(InvalidInputError, match="at most one of @hybrid/@sparse"):
        parse_condition("uniform@hybrid@sparse")
    with pytest.raises(InvalidInputError, match="one of @int8/@binary"):
        parse_condition("uniform@int8@binary")
    with pytest.raises(InvalidInputError, match="@hybrid applies to context conditions only"):
        parse_condition("baseline:sentence-transformers/all-MiniLM-L6-v2@hybrid")
    with pytest.raises(InvalidInputError, match="each once"):
        parse_condition("uniform@hybrid@hybrid")


def test_cli_documents_and_runs_the_modifiers(
    ident_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = capsys.readouterr().out
    assert "@hybrid" in help_text and "@int8, @binary" in help_text
    out = tmp_path / "cli-out"
    args = ["eval", str(ident_data), "--model", str(V2_TINY), "--device", "cpu", "-q", "--json"]
    code = main(
        [*args, "--conditions", "uniform,uniform@hybrid,uniform@int8", "--output", str(out)]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in report["conditions"]]
    assert names == ["uniform", "uniform@hybrid", "uniform@int8"]
    assert (out / "idents.test.uniform@hybrid.trec").is_file()
    assert (out / "idents.test.uniform@int8.trec").is_file()


def test_collections_are_created_and_searched_as_the_modifiers_say(
    ident_data: Path, encoder: CDEEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[tuple[str, Any, Any]] = []
    original = ContextualCollection.create.__func__  # type: ignore[attr-defined]

    def spying(cls: type[ContextualCollection], *args: Any, **kwargs: Any) -> Any:
        col = original(cls, *args, **kwargs)
        shown = col.info().options
        made.append((kwargs["context"].fingerprint, shown["quantization"], shown["hybrid"]))
        return col

    searched: list[Any] = []
    real_query = QdrantClient.query_points

    def spy_query(self: QdrantClient, *args: Any, **kwargs: Any) -> Any:
        searched.append(kwargs.get("search_params"))
        return real_query(self, *args, **kwargs)

    monkeypatch.setattr(ContextualCollection, "create", classmethod(spying))
    monkeypatch.setattr(QdrantClient, "query_points", spy_query)
    specs = ["uniform@int8", "uniform@binary", "uniform@hybrid"]
    report = evaluate(ident_data, encoder, conditions=specs, output_dir=tmp_path, chart=False)
    notes = {n for c in report.conditions for n in c.notes if n.startswith("context ")}
    assert len(notes) == 1 and len({m[0] for m in made}) == 1  # the condition's own context
    assert next(iter(notes)).startswith(f"context {made[0][0][:12]}")
    assert [m[1:] for m in made] == [("int8", False), ("binary", False), (None, True)]
    rescored = models.SearchParams(
        quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)
    )
    n = len(QUERIES)
    assert searched == [rescored] * (2 * n) + [None] * n  # hybrid: params live in the prefetch

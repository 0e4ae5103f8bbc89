"""``cde-rag eval`` as a user runs it: local data sets create no store; collections too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection, connect
from cde_rag_qdrant.cli import main
from tests.conftest import V2_TINY
from tests.eval.conftest import tiny_beir
from tests.qdrant.conftest import CliRunner

MODEL = ["--model", str(V2_TINY), "--device", "cpu"]


def test_local_eval_as_a_user(tmp_path: Path, run_cli: CliRunner) -> None:
    tiny_beir(tmp_path / "tiny")
    done = run_cli("eval", "tiny", *MODEL, "--conditions", "uniform,diverse")
    assert done.returncode == 0, done.stderr
    assert "condition" in done.stdout and "uniform" in done.stdout and "diverse" in done.stdout
    assert "Embedding" in done.stderr and "<00:" in done.stderr  # a bar with its ETA
    assert "condition 2/2: diverse" in done.stderr
    out = tmp_path / "cde-rag-eval"  # under the working directory by default
    assert sorted(p.name for p in out.glob("*.trec")) == [
        "tiny.test.diverse.trec",
        "tiny.test.uniform.trec",
    ]
    assert (out / "tiny.test.png").is_file()
    assert not (tmp_path / "cde_data").exists()  # no Qdrant store was created

    quiet = run_cli("eval", "tiny", *MODEL, "--conditions", "uniform", "--json", "-q",
                    "--output", "elsewhere")  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # -q: no bars, no notes
    report = json.loads(quiet.stdout)
    assert report["dataset"] == "tiny" and report["n_queries"] == 8
    (uniform,) = report["conditions"]
    assert set(uniform["metrics"]) == {"nDCG@10", "Recall@10", "Recall@100", "MRR@10"}
    assert len(uniform["per_query"]["nDCG@10"]) == 8
    assert (tmp_path / "elsewhere" / "tiny.test.uniform.trec").is_file()


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), *MODEL, "-q"]) == 2
    assert "qrels" in capsys.readouterr().err
    data = tiny_beir(tmp_path / "tiny")
    assert main(["eval", str(data), *MODEL, "--qdrant-path", str(tmp_path / "s"), "-q"]) == 2
    assert "--collection" in capsys.readouterr().err
    code = main(["eval", str(data), *MODEL, "--conditions", "uniform@fp8", "--json", "-q"])
    assert code == 2
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "InvalidInputError"
    assert not (tmp_path / "s").exists()


def test_collection_eval_matches_the_local_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tiny_beir(tmp_path / "tiny")
    # `cde-rag ingest corpus.jsonl` stores the BEIR `_id` in each point's metadata
    assert main(["ingest", str(data / "corpus.jsonl"), *MODEL, "--collection", "tiny", "-q"]) == 0
    capsys.readouterr()
    args = ["eval", str(data), *MODEL, "--json", "-q", "--no-chart"]
    assert main([*args, "--collection", "tiny", "--output", "col"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert main([*args, "--conditions", "uniform", "--output", "local"]) == 0
    local = json.loads(capsys.readouterr().out)
    (col,) = stored["conditions"]
    assert col["name"] == "collection:tiny"
    # the collection's context was built from the same corpus with the same seed
    assert col["per_query"] == local["conditions"][0]["per_query"]
    assert (tmp_path / "col" / "tiny.test.collection_tiny.trec").is_file()


def test_collection_points_without_the_id_key_map_through_point_ids(tmp_path: Path) -> None:
    from cde_rag_qdrant.evaluation import evaluate, evaluate_collection, load_beir

    data = load_beir(tiny_beir(tmp_path / "tiny"))
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    client = connect(location=":memory:")
    col = ContextualCollection.create(client, "c", encoder, corpus=data.doc_texts)
    col.add(data.doc_texts, ids=data.doc_ids, show_progress_bar=False)  # no metadata at all
    report = evaluate_collection(client, "c", data, encoder)
    local = evaluate(data, encoder, conditions=["uniform"])
    assert report.conditions[0].per_query == local.conditions[0].per_query
    assert any("matched to judged corpus ids through their point ids" in n for n in report.notes)


def test_empty_collection_and_corpus_less_data_are_refused(tmp_path: Path) -> None:
    from cde_rag_qdrant.errors import CollectionEmptyError, DatasetFormatError
    from cde_rag_qdrant.evaluation import evaluate, evaluate_collection, load_beir

    folder = tiny_beir(tmp_path / "tiny")
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    client = connect(location=":memory:")
    ContextualCollection.create(client, "empty", encoder, corpus=["one text", "another text"])
    with pytest.raises(CollectionEmptyError, match=r"cde-rag ingest corpus\.jsonl"):
        evaluate_collection(client, "empty", folder, encoder)
    with pytest.raises(DatasetFormatError, match="no corpus to search"):
        evaluate(load_beir(folder, read_corpus=False), encoder, conditions=["uniform"])

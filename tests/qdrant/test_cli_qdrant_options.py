"""``cde-rag`` flags for hybrid search, collection options and tenants (in-process ``main``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cde_rag_qdrant.cli import main
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.hybrid_corpus import DOCS, QUERIES

MODEL = ["--model", str(V2_TINY), "--device", "cpu", "-q"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in args and out.strip() else out
    return code, data, err


def _folder(tmp_path: Path, name: str, texts: list[str]) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{name}{i}.txt").write_text(text, encoding="utf-8")
    return folder


def test_hybrid_ingest_with_options_and_search_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--qdrant-path", str(tmp_path / "store"), "--collection", "kb"]
    docs = _folder(tmp_path, "docs", DOCS)
    flags = ["--hybrid", "--quantization", "int8", "--on-disk", "--hnsw-m", "8"]
    code, _, err = _run(capsys, "ingest", str(docs), *store, *MODEL, *flags, "--parallel", "2")
    assert code == 0, err
    query, i = QUERIES[4]
    for mode in ("sparse", "hybrid"):
        code, data, err = _run(capsys, "search", query, *store, *MODEL, "--mode", mode, "--json")
        assert code == 0, err
        assert data["mode"] == mode
        assert data["hits"][0]["text"] == DOCS[i]
    code, data, _ = _run(
        capsys, "search", query, *store, *MODEL, "--mode", "hybrid", "--fusion", "dbsf", "--json"
    )
    assert data["hits"][0]["text"] == DOCS[i]
    code, data, _ = _run(capsys, "info", *store, "--json")
    options = data["options"]
    assert (options["hybrid"], options["quantization"], options["on_disk"]) == (True, "int8", True)
    assert options["hnsw_m"] == 8
    code, text, _ = _run(capsys, "info", *store)
    assert "options      quantization int8, hybrid (sparse vector 'langchain-sparse')" in text
    code, _, err = _run(capsys, "ingest", str(docs), *store, *MODEL[:-1], "--shards", "2")
    assert code == 0 and "--shards ignored: the collection exists" in err


def test_lexical_search_on_a_dense_collection_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--qdrant-path", str(tmp_path / "store")]
    _run(capsys, "ingest", str(_folder(tmp_path, "docs", DOCS[:4])), *store, *MODEL)
    code, _, err = _run(capsys, "search", "ERR_DISK_7731", *store, *MODEL, "--mode", "hybrid")
    assert code == 1 and "cde-rag ingest --hybrid" in err


def test_tenants_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["--qdrant-path", str(tmp_path / "store"), "--collection", "shared"]
    plain = corpus_texts()
    a = _folder(tmp_path, "a", plain)
    b = _folder(tmp_path, "b", DOCS)
    for tenant, folder in (("acme", a), ("globex", b)):
        code, data, err = _run(
            capsys, "ingest", str(folder), *store, *MODEL, "--tenant", tenant, "--json"
        )
        assert code == 0, err
        assert data["tenant"] == tenant and data["context_created"] is True
    code, data, _ = _run(
        capsys, "search", "anything", *store, *MODEL, "--tenant", "acme", "-k", "50", "--json"
    )
    assert {h["text"] for h in data["hits"]} == set(plain)
    code, data, _ = _run(capsys, "info", *store, "--tenant", "globex", "--json")
    assert (data["tenant"], data["points"], data["tenants"]) == (
        "globex",
        len(DOCS),
        ["acme", "globex"],
    )
    before = data["fingerprint"]
    code, data, err = _run(
        capsys,
        "recontextualize",
        *store,
        *MODEL,
        "--tenant",
        "acme",
        "--context-size",
        "6",
        "--json",
    )
    assert code == 0, err
    assert data["previous_fingerprint"] != data["fingerprint"]
    assert data["points"] == len(plain)
    code, data, _ = _run(capsys, "info", *store, "--tenant", "globex", "--json")
    assert data["fingerprint"] == before  # the other tenant is untouched
    code, _, err = _run(capsys, "search", "x", *store, *MODEL, "--tenant", "initech")
    assert code == 6 and "--tenant initech" in err
    code, _, err = _run(capsys, "search", "x", *store, *MODEL)
    assert code == 6 and "pass --tenant NAME (tenants: acme, globex)" in err

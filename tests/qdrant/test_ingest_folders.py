"""``cde-rag ingest`` on folders: stable ids, sync report, prune, formats, inputs that must not
hang or lose data, and the chunked collection read by LangChain and LlamaIndex."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, cast

import pytest
from qdrant_client import QdrantClient

from cde_rag.errors import OptionalDependencyError
from cde_rag_qdrant import documents as documents_module
from cde_rag_qdrant.cli import main
from cde_rag_qdrant.ingest_files import discover
from tests.conftest import V2_TINY
from tests.qdrant.conftest import CliRunner
from tests.qdrant.long_docs import LONG_DOCS

MODEL = ["--model", str(V2_TINY), "--device", "cpu"]


def _folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "nested.md").write_text(LONG_DOCS["nested.md"][:8000], encoding="utf-8")
    (docs / "cjk.txt").write_text(LONG_DOCS["cjk.txt"][:3000], encoding="utf-8")
    (docs / "notes.rst").write_text("Title\n=====\n\nA reStructuredText note.", encoding="utf-8")
    (docs / "logo.png").write_bytes(b"\x89PNG")
    (docs / "script.py").write_text("print('hi')", encoding="utf-8")
    return docs


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in args and out.strip().startswith("{") else out
    return code, data, err


def _ids(store: Path, name: str = "documents") -> dict[str, str]:
    client = QdrantClient(path=str(store))
    try:
        points, _ = client.scroll(name, limit=10_000, with_payload=True)
        return {str(p.id): (p.payload or {})["metadata"]["source"] for p in points}
    finally:
        client.close()


def test_same_folder_from_anywhere_gives_the_same_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = _folder(tmp_path)
    code, first, err = _run(capsys, "ingest", "docs", *MODEL, "--json", "-q")
    assert code == 0, err
    assert first["documents"] == {"added": 3, "updated": 0, "unchanged": 0, "removed": 0}
    assert first["unsupported"] == {".png": 1, ".py": 1}
    assert "skipped 2 files of unsupported types (.png: 1, .py: 1)" not in err  # -q
    ids = _ids(tmp_path / "cde_data")
    assert set(ids.values()) == {"guide/nested.md", "cjk.txt", "notes.rst"}  # relative paths
    assert first["points"] == len(ids) > 3

    elsewhere = tmp_path / "elsewhere" / "deep"
    elsewhere.mkdir(parents=True)
    copy = shutil.copytree(docs, elsewhere / "docs")  # another checkout, another machine
    code, again, _ = _run(capsys, "ingest", str(copy), *MODEL, "--json", "-q")
    assert code == 0
    assert again["chunks"]["embedded"] == 0 and again["documents"]["unchanged"] == 3
    assert _ids(tmp_path / "cde_data") == ids  # same point ids, same count
    renamed = shutil.copytree(docs, elsewhere / "renamed")  # `root` metadata changes
    code, third, _ = _run(capsys, "ingest", str(renamed), *MODEL, "--json", "-q")
    assert code == 0 and third["documents"]["updated"] == 3 and third["chunks"]["removed"] == 0
    assert _ids(tmp_path / "cde_data") == ids  # still the same point ids and count


def test_edit_delete_and_prune_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = _folder(tmp_path)
    assert _run(capsys, "ingest", "docs", *MODEL, "-q")[0] == 0
    before = _ids(tmp_path / "cde_data")
    (docs / "notes.rst").write_text("Title\n=====\n\nAn edited note.", encoding="utf-8")
    (docs / "cjk.txt").unlink()
    code, out, _ = _run(capsys, "ingest", "docs", *MODEL, "--json", "-q")
    assert out["documents"] == {"added": 0, "updated": 1, "unchanged": 1, "removed": 0}
    assert out["chunks"]["embedded"] == 1
    assert "cjk.txt" in _ids(tmp_path / "cde_data").values()  # kept without --prune
    code, out, _ = _run(capsys, "ingest", "docs", *MODEL, "--prune", "--json", "-q")
    assert code == 0
    assert out["documents"]["removed"] == 1
    n_cjk = sum(1 for s in before.values() if s == "cjk.txt")
    assert out["chunks"]["removed"] == n_cjk
    after = _ids(tmp_path / "cde_data")
    assert "cjk.txt" not in after.values()
    assert len(after) == len(before) - n_cjk
    code, human, _ = _run(capsys, "ingest", "docs", *MODEL, "--prune", "-q")
    assert "documents: 0 added, 0 updated, 2 unchanged, 0 removed" in human


def test_human_output_shows_the_chunking(tmp_path: Path, run_cli: CliRunner) -> None:
    _folder(tmp_path)
    result = run_cli("ingest", "docs", *MODEL)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "synced 3 documents from 3 files" in out
    assert "chunks of at most 499 tokens (window 512)" in out
    assert "documents: 3 added, 0 updated, 0 unchanged, 0 removed" in out
    assert "skipped 2 files of unsupported types (.png: 1, .py: 1)" in result.stderr
    assert "Embedding" in result.stderr and "chunk/s" in result.stderr  # per-batch bar
    search = run_cli("search", "Topic 1.1", "-k", "2", "--filter", "source=guide/nested.md")
    assert "guide/nested.md (chunk " in search.stdout and "§ Handbook" in search.stdout


def test_a_fifo_is_skipped_not_read(tmp_path: Path, run_cli: CliRunner) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("a real note", encoding="utf-8")
    os.mkfifo(docs / "pipe.txt")  # opening it would block forever
    os.mkfifo(tmp_path / "named.jsonl")
    result = run_cli("ingest", "docs", "named.jsonl", *MODEL, "-q", timeout=120)
    assert result.returncode == 3, result.stderr
    assert "docs/pipe.txt: a FIFO; only regular files are read" in result.stderr
    assert "named.jsonl: not a regular file" in result.stderr
    assert "synced 1 documents" in result.stdout


def test_repeated_jsonl_ids_are_an_error_naming_both_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text('{"id": "k", "text": "one"}\n{"id": "j", "text": "two"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "x", "text": "three"}\n{"id": "k", "text": "4"}\n')
    code, _, err = _run(capsys, "ingest", "a.jsonl", "b.jsonl", *MODEL)
    assert code == 2
    assert "document id 'k' appears twice: a.jsonl:1 and b.jsonl:2" in err
    assert not (tmp_path / "cde_data").exists()  # nothing created


def test_bad_options_and_values_leave_no_collection_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("some text", encoding="utf-8")
    (tmp_path / "nan.jsonl").write_text(
        '{"id": "n", "text": "t", "score": NaN}\n{"id": "i", "text": "t", "x": 1e999}\n'
    )
    code, _, err = _run(capsys, "ingest", "a.txt", "--batch-size", "0", *MODEL)
    assert code == 2 and "--batch-size 0: expected a positive integer" in err
    code, _, err = _run(capsys, "ingest", "nan.jsonl", *MODEL)
    assert code == 3
    assert "nan.jsonl:1: NaN is not a JSON number" in err
    assert "nan.jsonl:2: metadata holds a non-finite number" in err
    assert not (tmp_path / "cde_data").exists()
    code, _, err = _run(capsys, "ingest", "a.txt", "--context-size", "17", *MODEL)
    assert code == 2 and "exceeds the 16 rows" in err
    code, _, err = _run(capsys, "ingest", "a.txt", "--chunk-size", "600", *MODEL)
    assert code == 2 and "does not fit the model window" in err
    client = QdrantClient(path=str(tmp_path / "cde_data"))
    try:
        assert client.get_collections().collections == []
    finally:
        client.close()


def _minimal_pdf(pages: list[str]) -> bytes:
    """A small valid PDF with one line of Helvetica text per page."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


HTML = """<html><head><title>Keys</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<article><h1>Rotating keys</h1>
<p>Rotate every API key at least every ninety days and never commit secrets to the repository.
Store them in the vault and let the deploy job read them at start.</p>
<h2>Revoking</h2><p>Revoke a leaked key at once, then rotate every key that shared its scope.</p>
</article><footer>Copyright footer text</footer></body></html>"""


def test_pdf_and_html_are_read_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "paper.pdf").write_bytes(_minimal_pdf(["First page about rivers", "Second page"]))
    (docs / "keys.html").write_text(HTML, encoding="utf-8")
    code, _out, err = _run(capsys, "ingest", "docs", *MODEL, "--json", "-q", "--chunk-size", "8")
    assert code == 0, err
    client = QdrantClient(path=str(tmp_path / "cde_data"))
    try:
        points, _ = client.scroll("documents", limit=100, with_payload=True)
    finally:
        client.close()
    by_source: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        payload = p.payload or {}
        by_source.setdefault(payload["metadata"]["source"], []).append(payload)
    for chunks in by_source.values():
        chunks.sort(key=lambda p: p["metadata"]["chunk_index"])
    pdf = " ".join(p["page_content"] for p in by_source["paper.pdf"])
    assert "First page about rivers" in pdf.replace("\n", " ")
    assert {p["metadata"]["page"] for p in by_source["paper.pdf"]} == {1, 2}
    html = " ".join(p["page_content"] for p in by_source["keys.html"])
    assert "Rotate every API key" in html
    assert "<p>" not in html and "Home" not in html  # main text, not markup or navigation
    assert any("Revoking" in p["metadata"]["headings"] for p in by_source["keys.html"])


@pytest.mark.parametrize(
    ("suffix", "module", "extra"), [(".pdf", "pypdf", "pdf"), (".html", "trafilatura", "html")]
)
def test_a_missing_extra_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, module: str, extra: str
) -> None:
    (tmp_path / f"doc{suffix}").write_bytes(b"x")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(OptionalDependencyError, match=rf"needs {module}.*cde-rag\[{extra}\]"):
        discover([tmp_path])
    assert documents_module.EXTRAS


def test_langchain_and_llamaindex_read_the_chunked_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_core.embeddings import FakeEmbeddings
    from langchain_qdrant import QdrantVectorStore as LCStore
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore as LIStore

    monkeypatch.chdir(tmp_path)
    _folder(tmp_path)
    assert _run(capsys, "ingest", "docs", *MODEL, "-q")[0] == 0
    client = QdrantClient(path=str(tmp_path / "cde_data"))
    try:
        points, _ = client.scroll("documents", limit=1, with_vectors=True, with_payload=True)
        vector = cast("list[float]", points[0].vector)  # one dense vector
        text = (points[0].payload or {})["page_content"]
        lc = LCStore(client=client, collection_name="documents", embedding=FakeEmbeddings(size=64))
        doc, score = lc.similarity_search_with_score_by_vector(vector, k=1)[0]
        assert doc.page_content == text and score == pytest.approx(1.0, abs=1e-5)
        assert doc.metadata["source"] == (points[0].payload or {})["metadata"]["source"]
        li = LIStore(client=client, collection_name="documents", text_key="page_content")
        result = li.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=1))
        assert result.nodes is not None
        assert result.nodes[0].get_content() == text
    finally:
        client.close()


def test_prune_waits_while_some_inputs_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("a note", encoding="utf-8")
    (docs / "data.jsonl").write_text('{"id": "r1", "text": "a record"}\n', encoding="utf-8")
    assert _run(capsys, "ingest", "docs", *MODEL, "-q")[0] == 0
    (docs / "data.jsonl").write_text('{"id": "r1", "text": "a rec\n', encoding="utf-8")  # broken
    code, out, err = _run(capsys, "ingest", "docs", *MODEL, "--prune", "--json")
    assert code == 3 and "not pruning: 1 inputs could not be read" in err
    assert out["documents"]["removed"] == 0
    assert "data.jsonl" in _ids(tmp_path / "cde_data").values()  # the record is kept

"""The ``cde-rag`` command, driven as a user would: subprocesses in a working directory.

Cheaper cases (exit codes, JSON shapes) call ``main()`` in-process from the same directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from cde_rag_qdrant import METADATA_KEY
from cde_rag_qdrant._store import alias_target
from cde_rag_qdrant.cli import EPILOG, main
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import CliRunner, cli_env

TEXTS = corpus_texts()
MODEL = ["--model", str(V2_TINY), "--device", "cpu"]


def _docs(folder: Path) -> Path:
    """A folder of notes: 6 .txt, 2 .md, and a .jsonl with 12 records."""
    docs = folder / "docs"
    (docs / "sub").mkdir(parents=True)
    for i, text in enumerate(TEXTS[:6]):
        (docs / f"note{i}.txt").write_text(text, encoding="utf-8")
    for i, text in enumerate(TEXTS[6:8]):
        (docs / "sub" / f"page{i}.md").write_text(f"# Page {i}\n\n{text}\n", encoding="utf-8")
    with (docs / "records.jsonl").open("w", encoding="utf-8") as f:
        for i, text in enumerate(TEXTS[8:]):
            record = {"id": f"r{i}", "text": text, "metadata": {"topic": f"t{i % 3}"}, "n": i}
            f.write(json.dumps(record) + "\n")
    (docs / ".hidden").mkdir()
    (docs / ".hidden" / "skip.txt").write_text("never read", encoding="utf-8")
    (docs / "image.png").write_bytes(b"\x89PNG")
    return docs


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in args and out.strip() else out
    return code, data, err


def test_ingest_search_info_as_a_user(tmp_path: Path, run_cli: CliRunner) -> None:
    _docs(tmp_path)
    ingest = run_cli("ingest", "docs", *MODEL)
    assert ingest.returncode == 0, ingest.stderr
    assert "synced 20 documents from 9 files" in ingest.stdout
    assert "20 added, 0 updated, 0 unchanged, 0 removed" in ingest.stdout
    assert "Embedding" in ingest.stderr  # progress bar on stderr
    assert "skipped 1 files of unsupported types (.png: 1)" in ingest.stderr
    assert (tmp_path / "cde_data" / "meta.json").is_file()  # the embedded default store

    search = run_cli("search", TEXTS[9], "--limit", "2", "--json", "-q")
    assert search.returncode == 0, search.stderr
    hits = json.loads(search.stdout)["hits"]
    assert len(hits) == 2
    assert hits[0]["text"] == TEXTS[9]
    meta = hits[0]["metadata"]
    assert {k: meta[k] for k in ("source", "root", "topic", "n", "document_id")} == {
        "source": "records.jsonl",  # relative to the folder given
        "root": "docs",
        "topic": "t1",
        "n": 1,
        "document_id": "r1",
    }
    assert (meta["chunk_index"], meta["chunk_count"], meta["start"]) == (0, 1, 0)
    assert meta["end"] == len(TEXTS[9])
    assert hits[0]["source"] == "records.jsonl"
    assert hits[0]["position"] == f"chunk 1/1, chars 0-{len(TEXTS[9])}"

    human = run_cli("search", "volcanic islands", "--filter", "topic=t2")
    assert human.returncode == 0, human.stderr
    assert "records.jsonl (chunk 1/1, chars 0-" in human.stdout and " 1. " in human.stdout
    page = run_cli("search", TEXTS[6], "-k", "1", "--filter", "source=sub/page0.md")
    assert "sub/page0.md (chunk 1/1, chars 0-" in page.stdout and "§ Page 0" in page.stdout

    info = run_cli("info")
    assert info.returncode == 0, info.stderr
    assert "20 searchable / 20 total" in info.stdout
    assert str(V2_TINY) in info.stdout


def test_cli_json_outputs_and_context_reuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = _docs(tmp_path)
    code, first, _ = _main(capsys, "ingest", str(docs / "sub"), *MODEL, "--json", "-q")
    assert code == 0
    assert first["context_created"] is True
    assert first["points"] == 2
    (tmp_path / "more.txt").write_text("An extra note about tomatoes.", encoding="utf-8")
    code, second, _ = _main(capsys, "ingest", "docs/sub", "more.txt", "--json", "-q")
    assert code == 0
    assert second["context_created"] is False
    assert second["fingerprint"] == first["fingerprint"]  # later ingests reuse the context
    assert second["documents"] == {"added": 1, "updated": 0, "unchanged": 2, "removed": 0}
    assert second["chunks"] == {"added": 1, "removed": 0, "unchanged": 2, "embedded": 1}
    assert second["points"] == 3
    assert second["drift"]["n_documents"] == 1  # measured on the new chunks only
    code, again, _ = _main(capsys, "ingest", "docs/sub", "more.txt", "--json", "-q")
    assert (code, again["points"], again["chunks"]["embedded"]) == (0, 3, 0)  # idempotent
    assert again["drift"] is None

    code, info, _ = _main(capsys, "info", "--json")
    assert code == 0
    assert info["fingerprint"] == first["fingerprint"]
    assert info["points"] == 3
    assert info["provenance"]["n_source_documents"] == 2

    code, check, _ = _main(capsys, "recontextualize", "--check", "--json", "-q")
    assert code == 0
    assert set(check) >= {"ratio", "recommended", "outlier_fraction"}
    code, recon, _ = _main(capsys, "recontextualize", "--json", "-q", "--seed", "3")
    assert code == 0
    assert recon["previous_fingerprint"] == first["fingerprint"]
    assert recon["fingerprint"] != first["fingerprint"]
    assert recon["points"] == 3
    assert recon["physical_name"] == "documents__cde_g2"
    code, found, _ = _main(capsys, "search", "An extra note about tomatoes.", "--json", "-k", "1")
    assert code == 0
    assert found["hits"][0]["text"] == "An extra note about tomatoes."


def test_bad_inputs_are_reported_and_the_rest_ingested(tmp_path: Path, run_cli: CliRunner) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text(TEXTS[0], encoding="utf-8")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02 binary \xff")
    (docs / "latin1.md").write_bytes("line one\ncaf\xe9 au lait\n".encode("latin-1"))
    (docs / "empty.txt").write_text("  \n", encoding="utf-8")
    lines = [
        json.dumps({"id": "a", "text": TEXTS[1]}),
        "{not json",
        json.dumps({"id": "b"}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "c", "text": TEXTS[2], "metadata": "oops"}),
        "",
        json.dumps({"id": "d", "text": TEXTS[3]}),
    ]
    (docs / "data.jsonl").write_bytes(
        ("\n".join(lines) + "\n").encode() + b'{"id": "e", "text": "caf\xe9"}\n'
    )
    result = run_cli("ingest", "docs", *MODEL, "-q")
    assert result.returncode == 3, result.stderr
    err = result.stderr
    assert "docs/binary.txt: binary file" in err
    assert "docs/latin1.md:2: not valid UTF-8 (byte 0xe9)" in err
    assert "docs/empty.txt: empty file" in err
    assert "docs/data.jsonl:2: malformed JSON" in err
    assert "docs/data.jsonl:3: no non-empty 'text'" in err
    assert "docs/data.jsonl:4: expected a JSON object" in err
    assert "docs/data.jsonl:5: 'metadata' must be a JSON object" in err
    assert "docs/data.jsonl:8: not valid UTF-8" in err
    assert "Traceback" not in err
    assert "synced 3 documents" in result.stdout
    assert "skipped 8 inputs" in result.stdout
    client = QdrantClient(path=str(tmp_path / "cde_data"))
    try:
        assert client.count("documents").count == 3
    finally:
        client.close()


def test_store_in_use_gives_a_clear_error(tmp_path: Path, run_cli: CliRunner) -> None:
    holder = QdrantClient(path=str(tmp_path / "cde_data"))  # another process holds the store
    try:
        result = run_cli("info")
    finally:
        holder.close()
    assert result.returncode == 5
    assert "in use by another client or process" in result.stderr
    assert "--qdrant-url" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_model_exits_4_without_traceback(tmp_path: Path, run_cli: CliRunner) -> None:
    (tmp_path / "a.txt").write_text("some text", encoding="utf-8")
    env = cli_env()
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: nothing to fall back to
    result = run_cli("ingest", "a.txt", env=env)
    assert result.returncode == 4
    assert "jxm/cde-small-v2" in result.stderr
    assert "--model PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _main(capsys, "ingest", "missing-dir", *MODEL)[0] == 2
    (tmp_path / "nothing").mkdir()
    assert _main(capsys, "ingest", "nothing", *MODEL)[0] == 2
    assert not (tmp_path / "cde_data").exists()  # nothing to do: no store created
    code, data, err = _main(capsys, "search", "q", *MODEL, "--json")
    assert code == 6 and "no embedded Qdrant store" in err
    assert data["error"]["exit_code"] == 6
    assert not (tmp_path / "cde_data").exists()  # search never creates a store
    (tmp_path / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    assert _main(capsys, "ingest", "a.txt", *MODEL, "-q")[0] == 0
    code, _, err = _main(capsys, "search", "q", "--collection", "other")
    assert code == 6 and "cde-rag ingest" in err
    code, _, err = _main(capsys, "search", "q", "--filter", "novalue")
    assert code == 2 and "KEY=VALUE" in err
    assert _main(capsys, "ingest", "a.txt", "--batch-size", "0", "-q")[0] == 2
    with pytest.raises(SystemExit) as usage:
        main(["search"])
    assert usage.value.code == 2
    capsys.readouterr()

    client = QdrantClient(path=str(tmp_path / "cde_data"))
    physical = alias_target(client, "documents")
    assert physical is not None
    metadata = client.get_collection("documents").config.metadata
    assert metadata is not None
    record = dict(metadata[METADATA_KEY])
    record["tensor_b64"] = record["tensor_b64"][:-8]
    client.update_collection(physical, metadata={METADATA_KEY: record})
    client.create_collection(
        "foreign", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    client.delete(physical, points_selector=models.FilterSelector(filter=models.Filter()))
    client.close()
    code, _, err = _main(capsys, "info")
    assert code == 7 and "truncated or edited" in err
    code, _, err = _main(capsys, "search", "q", *MODEL)
    assert code == 7
    code, _, err = _main(capsys, "info", "--collection", "foreign")
    assert code == 6 and "recontextualize" in err
    code, _, err = _main(capsys, "recontextualize", "--collection", "foreign", *MODEL)
    assert code == 6 and "no texts" in err


def test_search_on_an_empty_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    assert _main(capsys, "ingest", "a.txt", *MODEL, "-q")[0] == 0
    client = QdrantClient(path=str(tmp_path / "cde_data"))
    client.delete("documents", points_selector=models.FilterSelector(filter=models.Filter()))
    client.close()
    code, _, err = _main(capsys, "search", "anything")
    assert code == 6 and "is empty" in err


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for line in ("3    partial", "4    model", "5    the embedded store is in use"):
        assert line in out
    assert EPILOG.splitlines()[0] in out
    for command in ("ingest", "search", "info", "recontextualize"):
        assert command in out


def test_module_entry_point_runs(run_cli: CliRunner) -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("cde-rag ")

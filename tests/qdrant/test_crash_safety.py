"""kill -9 at named points of an ingest or a sync; a re-run ends with exactly the right points.

The kills are deterministic: ``CDE_RAG_TEST_CRASH_AT=<point>[:<n>]`` makes the process SIGKILL
itself the ``n``-th time it reaches a named point (``cde_rag_qdrant._testhooks``), so every
crash point is exercised on every run, whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from cde_rag_qdrant import FINGERPRINT_PAYLOAD_KEY, connect, read_context
from cde_rag_qdrant._testhooks import ENV
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import cli_env
from tests.qdrant.long_docs import LONG_DOCS

DRIVER = Path(__file__).with_name("ingest_driver.py")
N_DOCS = 60


def _write_corpus(folder: Path) -> dict[str, str]:
    base = corpus_texts()
    docs = {f"doc-{i}": f"{base[i % len(base)]} (variant {i})" for i in range(N_DOCS)}
    with (folder / "docs.jsonl").open("w", encoding="utf-8") as f:
        for key, text in docs.items():
            f.write(json.dumps({"id": key, "text": text, "n": int(key[4:])}) + "\n")
    return docs


def _points(store: Path, name: str) -> dict[str, dict[str, Any]] | None:
    """Point id -> payload, after checking every point's context (None: no collection)."""
    client = connect(store)  # also proves the killed process left no lock
    try:
        if not client.collection_exists(name):
            return None
        context = read_context(client, name)  # the record is intact whenever it exists
        points, _ = client.scroll(name, limit=10_000, with_payload=True)
        assert client.count(name, exact=True).count == len(points)
        for p in points:
            assert (p.payload or {})[FINGERPRINT_PAYLOAD_KEY] == context.fingerprint
        return {str(p.id): dict(p.payload or {}) for p in points}
    finally:
        client.close()


class _Zygote:
    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(V2_TINY)],
            cwd=cwd,
            env=cli_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "READY"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self, args: list[str], crash_at: str | None = None) -> int:
        """Run one ingest to its end (or its crash point); returns its wait status."""
        env = {ENV: crash_at} if crash_at else {}
        self._send(json.dumps({"args": args, "env": env}))
        kind, _ = self._line().split()
        assert kind == "PID"
        self._send("wait")
        kind, status = self._line().split()
        assert kind == "EXIT"
        return int(status)

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=30)


def _killed(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _ok(status: int) -> bool:
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _args(inputs: str, store: Path, collection: str, *extra: str) -> list[str]:
    return [
        "ingest",
        inputs,
        "--collection",
        collection,
        "--model",
        str(V2_TINY),
        "--qdrant-path",
        str(store),
        "--device",
        "cpu",
        "-q",
        *extra,
    ]


INGEST_POINTS = ["created", "upserted:1", "upserted:7", "upserted:20", "written"]


@pytest.mark.slow
def test_kill_9_during_a_new_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    docs = _write_corpus(tmp_path)
    zygote = _Zygote(tmp_path)
    try:
        assert _ok(zygote.run(_args("docs.jsonl", tmp_path / "ref", "crash", "--batch-size", "3")))
        expected = _points(tmp_path / "ref", "crash")
        assert expected is not None and len(expected) == N_DOCS
        for point in INGEST_POINTS:
            store = tmp_path / f"store-{point.replace(':', '-')}"
            args = _args("docs.jsonl", store, "crash", "--batch-size", "3")
            assert _killed(zygote.run(args, crash_at=point)), point  # the point was reached
            partial = _points(store, "crash")
            for pid, payload in (partial or {}).items():  # whatever is there is right
                assert payload == expected[pid]
                assert payload["page_content"] == docs[payload["metadata"]["document_id"]]
            assert _ok(zygote.run(args))  # the same ingest again, to completion
            assert _points(store, "crash") == expected, point
    finally:
        zygote.close()


def _write_folder(folder: Path, version: int) -> None:
    """Version 0: five files; version 1: two edited, one deleted, one added."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    texts = {
        "a.md": LONG_DOCS["nested.md"][:1500],
        "b.txt": LONG_DOCS["no-blank-lines.txt"][:1200],
        "c.txt": LONG_DOCS["cjk.txt"][:500],
        "d.md": LONG_DOCS["code.md"][:1200],
        "e.txt": LONG_DOCS["one-line.txt"][:1000],
    }
    if version == 1:
        texts["a.md"] = texts["a.md"].replace("Handbook", "Manual")
        texts["b.txt"] = "A new first line.\n" + texts["b.txt"][300:]
        del texts["c.txt"]
        texts["f.txt"] = LONG_DOCS["one-line.txt"][1000:1800]
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")


SYNC_POINTS = ["upserted:1", "upserted:4", "written", "deleted:1", "deleted:2", "pruned:1"]


@pytest.mark.slow
def test_kill_9_during_a_sync_of_changed_files_converges(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    opts = ("--chunk-size", "60", "--batch-size", "4", "--prune")
    zygote = _Zygote(tmp_path)
    try:
        _write_folder(docs, 0)
        assert _ok(zygote.run(_args("docs", tmp_path / "base", "kb", *opts)))
        old = _points(tmp_path / "base", "kb")
        _write_folder(docs, 1)
        shutil.copytree(tmp_path / "base", tmp_path / "ref")  # the same context
        assert _ok(zygote.run(_args("docs", tmp_path / "ref", "kb", *opts)))  # no crash
        expected = _points(tmp_path / "ref", "kb")
        assert old is not None and expected is not None and len(expected) > 20
        assert len(set(old) - set(expected)) > 5 and len(set(expected) - set(old)) > 5
        for point in SYNC_POINTS:
            store = tmp_path / f"store-{point.replace(':', '-')}"
            shutil.copytree(tmp_path / "base", store)
            args = _args("docs", store, "kb", *opts)
            assert _killed(zygote.run(args, crash_at=point)), point  # the point was reached
            partial = _points(store, "kb")
            assert partial is not None
            for pid, payload in partial.items():  # every point is an old or a new one
                assert payload in (old.get(pid), expected.get(pid)), point
            assert _ok(zygote.run(args))  # re-run: exactly the expected chunks
            assert _points(store, "kb") == expected, point
    finally:
        zygote.close()


@pytest.mark.parametrize("content", ["", '{"collections": {}, "ali'])
def test_store_cut_during_its_creation_opens_again(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    """qdrant-client writes the first meta.json non-atomically; a kill there left it cut."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "meta.json").write_text(content)
    with pytest.raises(json.JSONDecodeError):
        QdrantClient(path=str(store)).close()  # what qdrant-client alone does with it
    client = connect(store)
    try:
        assert client.get_collections().collections == []
    finally:
        client.close()
    assert "interrupted store creation" in caplog.text


def test_a_complete_meta_file_is_never_rewritten(tmp_path: Path) -> None:
    store = tmp_path / "store"
    client = connect(store)
    client.create_collection("c", vectors_config={})
    client.close()
    before = (store / "meta.json").read_bytes()
    connect(store).close()
    assert (store / "meta.json").read_bytes() == before

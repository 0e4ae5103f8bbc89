"""kill -9 of a running ingest at random points; a re-run ends with exactly the right points."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from cde_rag_qdrant import FINGERPRINT_PAYLOAD_KEY, connect, point_id, read_context
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import cli_env

DRIVER = Path(__file__).with_name("ingest_driver.py")
N_DOCS = 60
TRIALS = 12


def _write_corpus(folder: Path) -> dict[str, str]:
    base = corpus_texts()
    docs = {f"doc-{i}": f"{base[i % len(base)]} (variant {i})" for i in range(N_DOCS)}
    with (folder / "docs.jsonl").open("w", encoding="utf-8") as f:
        for key, text in docs.items():
            f.write(json.dumps({"id": key, "text": text, "n": int(key[4:])}) + "\n")
    return docs


def _check_store(store: Path, docs: dict[str, str]) -> int:
    """Check the store is consistent; returns its point count (-1: no collection yet)."""
    client = connect(store)  # also proves the killed process left no lock
    try:
        if not client.collection_exists("crash"):
            return -1
        context = read_context(client, "crash")  # the record is intact whenever it exists
        points, _ = client.scroll("crash", limit=1000, with_payload=True)
        by_id = {point_id(k): k for k in docs}
        ids = [str(p.id) for p in points]
        assert len(ids) == len(set(ids))
        for p in points:
            key = by_id[str(p.id)]  # no point outside the expected ids
            payload = p.payload or {}
            assert payload["page_content"] == docs[key]
            assert payload["metadata"]["n"] == int(key[4:])
            assert payload[FINGERPRINT_PAYLOAD_KEY] == context.fingerprint
        assert client.count("crash", exact=True).count == len(points)
        return len(points)
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

    def start(self, args: list[str]) -> None:
        self._send(json.dumps(args))
        kind, _ = self._line().split()
        assert kind == "PID"

    def wait(self, *, kill: bool = False) -> int:
        """SIGKILL the running ingest (``kill``) or let it finish; returns its wait status."""
        self._send("kill" if kill else "wait")
        kind, status = self._line().split()
        assert kind == "EXIT"
        return int(status)

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=30)


def _args(store: Path) -> list[str]:
    return [
        "ingest",
        "docs.jsonl",
        "--collection",
        "crash",
        "--model",
        str(V2_TINY),
        "--qdrant-path",
        str(store),
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "-q",
    ]


@pytest.mark.slow
def test_kill_9_during_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    docs = _write_corpus(tmp_path)
    rng = random.Random(1234)
    zygote = _Zygote(tmp_path)
    deadline = time.monotonic() + 120
    seen: list[int] = []
    try:
        # how long one undisturbed ingest takes here, to spread the kills over it
        start = time.monotonic()
        zygote.start(_args(tmp_path / "timing"))
        assert os.WEXITSTATUS(zygote.wait()) == 0
        span = time.monotonic() - start
        for trial in range(TRIALS):
            store = tmp_path / f"store{trial}"
            zygote.start(_args(store))
            time.sleep(rng.uniform(0.0, span))
            zygote.wait(kill=True)  # SIGKILL: no cleanup, no flush (may already be done)
            seen.append(_check_store(store, docs))
            zygote.start(_args(store))  # the same ingest again, to completion
            status = zygote.wait()
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
            assert _check_store(store, docs) == N_DOCS
            assert time.monotonic() < deadline, "crash trials took too long"
    finally:
        zygote.close()
    print("points found after each kill:", seen)
    assert sum(0 <= n < N_DOCS for n in seen) >= 3, f"too few kills landed mid-ingest: {seen}"


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

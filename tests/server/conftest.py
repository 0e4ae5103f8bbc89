"""A real ``cde-rag serve`` subprocess on loopback, over an embedded store and a context file."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant import ContextualCollection, connect
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import cli_env

API_KEY = "test-key-123"
TEXTS = corpus_texts()


@dataclass
class Served:
    """A running server and the contexts it holds."""

    url: str
    process: subprocess.Popen[str]
    notes: CorpusContext  # the collection "notes"
    kb: CorpusContext  # the context file served as "kb"
    query_prefix: str
    document_prefix: str

    def post(self, path: str, body: object = None, **kw: object) -> httpx.Response:
        """POST JSON with the API key."""
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.post(self.url + path, json=body, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


def start_server(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Run ``cde-rag serve ARGS --port 0`` and wait until it answers ``/ready``."""
    cmd = [sys.executable, "-m", "cde_rag_qdrant.cli", "serve", *args, "--port", "0"]
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()  # printed once the model and contexts are loaded
    if "http://" not in line:
        proc.kill()
        msg = f"server did not start: {line}{proc.stderr.read()[-3000:]}"
        raise AssertionError(msg)
    url = line.split("http://", 1)[1].split()[0]
    url = "http://" + url
    for _ in range(600):  # the socket listens already; uvicorn's startup follows
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    msg = f"server never became ready: {proc.stderr.read()[-3000:]}"
    raise AssertionError(msg)


def stop_server(proc: subprocess.Popen[str]) -> str:
    """SIGTERM and wait; returns stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture(scope="session")
def served(
    tmp_path_factory: pytest.TempPathFactory, v2_encoder_session: CDEEncoder
) -> Iterator[Served]:
    """``cde-rag serve`` with collection ``notes`` and context file ``kb``, API key required."""
    folder = tmp_path_factory.mktemp("serve")
    client = connect(folder / "store")
    col = ContextualCollection.create(
        client, "notes", v2_encoder_session, corpus=TEXTS, show_progress_bar=False
    )
    col.add(TEXTS, show_progress_bar=False)
    notes, prefixes = col.context, (col.record.query_prefix, col.record.document_prefix)
    client.close()
    kb = v2_encoder_session.build_context(TEXTS[:12], seed=3, show_progress_bar=False)
    kb.save(folder / "kb.safetensors")
    args = ["--qdrant-path", "store", "--context", "kb=kb.safetensors", "--model", str(V2_TINY)]
    args += ["--device", "cpu", "--api-key", API_KEY, "--max-inputs", "64", "-q"]
    args += ["--max-body-bytes", "200000", "--max-input-chars", "5000"]
    proc, url = start_server(args, folder)
    yield Served(url, proc, notes, kb, *prefixes)
    stop_server(proc)

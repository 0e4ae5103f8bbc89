"""Graceful shutdown of a real uvicorn server: accepted requests finish, new ones are refused."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.server import ContextRegistry, create_app
from tests.conftest import corpus_texts

WAIT = 60


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=5)
    except httpx.TransportError:
        return True
    return False


@pytest.mark.allow_hosts(["127.0.0.1"])
def test_shutdown_finishes_accepted_requests(v2_encoder: CDEEncoder) -> None:
    texts = corpus_texts()
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(
        client, "notes", v2_encoder, corpus=texts, show_progress_bar=False
    )
    entered, gate = threading.Event(), threading.Event()
    embed = v2_encoder.embed_queries

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert gate.wait(WAIT)
        return embed(*args, **kwargs)

    v2_encoder.embed_queries = held  # type: ignore[method-assign]
    app = create_app(v2_encoder, ContextRegistry.load(v2_encoder, client))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    runner = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    runner.start()
    _wait_for(lambda: server.started, "uvicorn to start")

    answers: dict[int, httpx.Response] = {}

    def ask(i: int) -> None:
        body = {"model": "notes:query", "input": [texts[i]], "encoding_format": "float"}
        answers[i] = httpx.post(url + "/v1/embeddings", json=body, timeout=WAIT)

    askers = [threading.Thread(target=ask, args=(0,))]
    askers[0].start()
    assert entered.wait(WAIT)  # the first request is inside the encoder
    askers += [threading.Thread(target=ask, args=(i,)) for i in (1, 2, 3)]
    for t in askers[1:]:
        t.start()
    batcher = app.state.batcher
    _wait_for(lambda: batcher.pending == 3, "three queued requests")

    server.should_exit = True  # what SIGTERM does
    _wait_for(lambda: _refused(url), "the listener to close")
    assert runner.is_alive()  # still finishing accepted work
    gate.set()
    for t in askers:
        t.join(WAIT)
    runner.join(WAIT)
    assert not runner.is_alive()
    assert not batcher.alive
    for i in range(4):
        assert answers[i].status_code == 200, answers[i].text
        got = np.array(answers[i].json()["data"][0]["embedding"])
        want = embed([texts[i]], col.context)[0]
        assert np.abs(got - want).max() <= 1e-6
    client.close()

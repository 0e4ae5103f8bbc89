"""With the collection on a Qdrant server, the Ray actors upsert their own points (issue 15).

No server runs here: a fake REST endpoint (``tests/ray/fake_qdrant.py``) forwards what the
actors upsert into the embedded store the driver uses, and ``server_options`` (the internal
override) makes the driver treat that store as the endpoint's server. The driver reads, plans,
deletes and checks through the embedded client; only the actors talk HTTP. The cases with a
real server run when ``QDRANT_URL`` is set.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.models import ExtendedPointId

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant import ContextualCollection, Document, worker_writes
from cde_rag_qdrant import _pipeline as pipeline
from cde_rag_qdrant._upload import DEFERRED_KEY, UploadOptions, point_bytes
from cde_rag_qdrant.errors import CollectionNotFoundError, QdrantUnavailableError
from cde_rag_qdrant.sparse import SPARSE_VECTOR_NAME as SPARSE
from tests.qdrant.conftest import NO_SERVER, QDRANT_URL, cleanup
from tests.qdrant.long_docs import LONG_DOCS
from tests.ray.conftest import ENV
from tests.ray.fake_qdrant import FakeQdrant, Upsert

pytest.importorskip("ray", reason="ray is in the test group: pip install -e '.[ray]'")

from cde_rag_ray import ModelSpec, RayEmbedder, RayOptions
from cde_rag_ray.worker import CRASH_ENV, CRASH_WRITTEN_ENV

pytestmark = [pytest.mark.slow, pytest.mark.enable_socket]

BATCH = 4
WINDOW = 8  # texts per window (instead of 512): several windows, so both actors write
Points = dict[str, tuple[Any, Any]]


def _documents(*, changed: bool = False) -> list[Document]:
    notes = "# Notes\n\nRotate the keys every 90 days." + (
        " Audit them monthly." if changed else ""
    )
    return [
        Document("guide/nested.md", LONG_DOCS["nested.md"][:6000], {"team": "a"}, "markdown"),
        Document("cjk.txt", LONG_DOCS["cjk.txt"][:2500]),
        Document("notes.md", notes, {"team": "b"}, "markdown"),
    ]


def _collection(encoder: CDEEncoder, context: CorpusContext) -> ContextualCollection:
    client = QdrantClient(":memory:")
    return ContextualCollection.create(client, "documents", encoder, context=context, hybrid=True)


def _points(col: ContextualCollection) -> Points:
    points, _ = col.client.scroll(col.name, limit=10_000, with_payload=True, with_vectors=True)
    return {str(p.id): (p.payload, p.vector) for p in points}


def _requests(n_points: int) -> int:
    """Upserts of ``n_points`` written in windows of WINDOW, BATCH per upsert."""
    full, rest = divmod(n_points, WINDOW)
    return full * math.ceil(WINDOW / BATCH) + math.ceil(rest / BATCH)


def _spy(
    monkeypatch: pytest.MonkeyPatch, client: QdrantClient, method: str, log: list[str]
) -> None:
    """Note in ``log`` each call of ``client.<method>`` (made by this process, the driver)."""
    real = getattr(client, method)

    def spy(*args: Any, **kwargs: Any) -> Any:
        log.append(method)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, method, spy)


def _treat_as_server(
    monkeypatch: pytest.MonkeyPatch, store: QdrantClient, options: dict[str, Any]
) -> None:
    """Let the workers connect to ``options`` whenever the driver's client is ``store``."""
    monkeypatch.setattr(
        worker_writes, "server_options", lambda client: options if client is store else None
    )


@pytest.fixture(autouse=True)
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "EMBED_WINDOW", WINDOW)


@pytest.fixture(scope="module")
def pool(
    ray_local: None, spec: ModelSpec, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> Iterator[RayEmbedder]:
    prefix = v2_encoder_session.document_prefix
    options = RayOptions(actors=2, cpus_per_actor=0.5)  # half the CPUs: room for another pool
    with RayEmbedder(spec, v2_context, options, prefix=prefix) as embedder:
        yield embedder


@pytest.fixture
def reference(v2_encoder: CDEEncoder, v2_context: CorpusContext) -> Points:
    """The points of the single-process sync of the documents (same context, same windows)."""
    col = _collection(v2_encoder, v2_context)
    col.sync(_documents(), batch_size=BATCH, show_progress_bar=False)
    return _points(col)


class Served:
    """A collection whose store the driver treats as the fake endpoint's server."""

    def __init__(self, col: ContextualCollection, fake: FakeQdrant) -> None:
        self.col = col
        self.fake = fake
        self.events: list[str] = []  # "write" by the actors, "upsert"/"delete" by the driver

    @property
    def driver_upserts(self) -> int:
        return self.events.count("upsert")


@pytest.fixture
def served(
    monkeypatch: pytest.MonkeyPatch, v2_encoder: CDEEncoder, v2_context: CorpusContext
) -> Iterator[Served]:
    col = _collection(v2_encoder, v2_context)
    store = col.client
    fake = FakeQdrant(store, on_upsert=lambda _: box.events.append("write"))
    box = Served(col, fake)
    _spy(monkeypatch, store, "upsert", box.events)  # after FakeQdrant took the real method
    _spy(monkeypatch, store, "delete", box.events)
    _treat_as_server(monkeypatch, store, {"url": fake.url, "timeout": 60})
    with fake:
        yield box


def test_workers_write_exactly_the_points_of_the_single_process_sync(
    pool: RayEmbedder,
    served: Served,
    reference: Points,
    v2_encoder: CDEEncoder,
    v2_context: CorpusContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    col, fake = served.col, served.fake
    with caplog.at_level(logging.INFO, logger="cde_rag_qdrant._pipeline"):
        report = col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert "the workers write their points to http://127.0.0.1:" in caplog.text
    got = _points(col)
    assert got.keys() == reference.keys() and len(got) > 2 * WINDOW
    for key, (payload, vectors) in reference.items():
        assert got[key][0] == payload
        assert got[key][1] == vectors  # dense floats and sparse vector, bit for bit
    assert report.chunks_added == len(got)
    # only the actors wrote: every point once, BATCH per upsert, the window's last one waits
    assert served.driver_upserts == 0 and fake.unexpected == []
    written = [i for u in fake.upserts for i in u.ids]
    assert sorted(written) == sorted(reference)
    assert len(fake.upserts) == _requests(len(reference))
    assert all(len(u.ids) <= BATCH for u in fake.upserts)
    assert sum(u.wait for u in fake.upserts) == math.ceil(len(reference) / WINDOW)
    pids = {u.pid for u in fake.upserts}
    assert None not in pids and os.getpid() not in pids and len(pids) == 2  # two actors

    # resumable: a re-run embeds and writes nothing; a lost point is embedded again
    again = col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert again.chunks_embedded == 0 and len(fake.upserts) == _requests(len(reference))
    lost: list[ExtendedPointId] = [*sorted(reference)[:3]]
    col.client.delete(col.name, points_selector=lost)
    healed = col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert healed.chunks_embedded == 3
    expected = _collection(v2_encoder, v2_context)  # the same resume in one process
    expected.sync(_documents(), batch_size=BATCH, show_progress_bar=False)
    expected.client.delete(expected.name, points_selector=lost)
    expected.sync(_documents(), batch_size=BATCH, show_progress_bar=False)
    assert _points(col) == _points(expected)
    assert served.driver_upserts == 0


def test_old_versions_are_deleted_only_after_the_workers_confirmed_the_new_chunks(
    pool: RayEmbedder, served: Served, v2_encoder: CDEEncoder, v2_context: CorpusContext
) -> None:
    expected = _collection(v2_encoder, v2_context)
    for docs in (_documents(), _documents(changed=True)):
        expected.sync(docs, batch_size=BATCH, prune=True, show_progress_bar=False)
    col = served.col
    col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    served.events.clear()
    report = col.sync(
        _documents(changed=True), batch_size=BATCH, prune=True, embedder=pool,
        show_progress_bar=False,
    )  # fmt: skip
    assert report.documents_updated == 1 and report.chunks_removed >= 1
    assert "delete" in served.events and "write" in served.events
    first_delete = served.events.index("delete")
    assert "write" not in served.events[first_delete:]  # new chunks written, then deletes
    assert _points(col) == _points(expected) and served.driver_upserts == 0


def test_the_collection_upload_rules_apply_to_the_workers(
    pool: RayEmbedder, served: Served, reference: Points
) -> None:
    col, fake = served.col, served.fake
    sizes = [
        point_bytes(models.PointStruct(id=k, vector=v, payload=p))
        for k, (p, v) in reference.items()
    ]  # the points as JSON, measured as the uploader measures them
    limit = int(2.5 * max(sizes)) * 2  # the budget (half) holds 2.5 of the largest points
    fake.refuse = 3  # the first three upserts get 503 Service Unavailable
    col.upload_options = UploadOptions(
        max_request_bytes=limit, backoff=0.01, backoff_max=0.02, defer_indexing=True
    )
    deferred: list[Any] = []

    def note(upsert: Upsert) -> None:  # the driver defers indexing around the actors' writes
        metadata = col.client.get_collection(col.name).config.metadata or {}
        deferred.append(metadata.get(DEFERRED_KEY, {}).get("active"))

    fake.on_upsert = note
    col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert fake.refused == 3  # retried by the actors' tenacity loop
    assert _points(col) == reference
    assert all(u.body_bytes <= limit // 2 for u in fake.upserts)  # split by size
    assert len(fake.upserts) > _requests(len(reference))
    assert sorted(i for u in fake.upserts for i in u.ids) == sorted(reference)
    assert deferred and set(deferred) == {True}
    restored = col.client.get_collection(col.name).config.metadata or {}
    assert restored[DEFERRED_KEY]["active"] is False


def test_a_server_that_stays_down_fails_the_sync_with_a_typed_error_and_deletes_nothing(
    pool: RayEmbedder, served: Served
) -> None:
    col, fake = served.col, served.fake
    col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    before = _points(col)
    fake.refuse = fake.refused + 10_000
    col.upload_options = UploadOptions(retries=2, backoff=0.01, backoff_max=0.01)
    served.events.clear()
    with pytest.raises(QdrantUnavailableError, match=r"HTTP 503 .* after 2 retries"):
        col.sync(
            _documents(changed=True), batch_size=BATCH, prune=True, embedder=pool,
            show_progress_bar=False,
        )  # fmt: skip
    assert "delete" not in served.events and _points(col) == before  # the old version stays


@pytest.mark.parametrize(
    ("hook", "call"),
    [
        pytest.param(CRASH_ENV, 2, id="before-writing-its-2nd-window"),
        pytest.param(CRASH_WRITTEN_ENV, 1, id="after-writing-part-of-its-1st-window"),
    ],
)
def test_an_actor_killed_mid_run_is_restarted_and_the_points_end_exactly_right(
    ray_local: None,
    spec: ModelSpec,
    served: Served,
    reference: Points,
    tmp_path: Path,
    hook: str,
    call: int,
) -> None:
    marker = tmp_path / "killed"
    env = {"env_vars": {**ENV, hook: f"{marker}:{call}"}}
    col = served.col
    options = RayOptions(actors=2, cpus_per_actor=0.5, runtime_env=env)
    with RayEmbedder(spec, col.context, options, prefix=col.record.document_prefix) as pool:
        report = col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert marker.exists(), "the kill hook never fired: nothing was tested"
    got = _points(col)
    assert got.keys() == reference.keys() and report.chunks_added == len(reference)
    writes = collections.Counter(i for u in served.fake.upserts for i in u.ids)
    for key, (payload, vectors) in reference.items():
        assert got[key][0] == payload and got[key][1][SPARSE] == vectors[SPARSE]
        assert writes[key] >= 1
        if writes[key] == 1:  # the restarted actor computes the very same bits
            assert np.array_equal(got[key][1][""], vectors[""])
        else:  # written twice: qdrant-client's local mode re-normalises an overwritten vector
            # with another rounding (up to 3e-8 here, also without Ray); the actors' bits match
            assert np.allclose(got[key][1][""], vectors[""], rtol=0, atol=1e-7)
    assert served.driver_upserts == 0
    pids = {u.pid for u in served.fake.upserts}
    assert len(pids) == 3  # two actors and the restarted one
    if hook == CRASH_WRITTEN_ENV:  # the window written in part is written again whole
        written = [i for u in served.fake.upserts for i in u.ids]
        assert len(written) == len(reference) + BATCH


def test_an_embedded_store_keeps_the_driver_the_single_writer(
    pool: RayEmbedder,
    reference: Points,
    v2_encoder: CDEEncoder,
    v2_context: CorpusContext,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    col = _collection(v2_encoder, v2_context)
    calls: list[str] = []
    _spy(monkeypatch, col.client, "upsert", calls)
    with caplog.at_level(logging.INFO, logger="cde_rag_qdrant._pipeline"):
        col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert "this process writes the points the workers embed (in-memory store)" in caplog.text
    assert len(calls) == _requests(len(reference)) and _points(col) == reference


def test_worker_writes_can_be_turned_off(
    pool: RayEmbedder, served: Served, reference: Points, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "worker_writes", False)  # as RayOptions(worker_writes=False)
    served.col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert served.fake.upserts == [] and served.driver_upserts > 0
    assert _points(served.col) == reference


@pytest.mark.server
@pytest.mark.skipif(QDRANT_URL is None, reason=NO_SERVER)
def test_on_a_real_server_the_workers_write_the_single_process_points(
    pool: RayEmbedder,
    reference: Points,
    v2_encoder: CDEEncoder,
    v2_context: CorpusContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = QdrantClient(url=QDRANT_URL, api_key=os.environ.get("QDRANT_API_KEY"))
    name = f"cdetest_{uuid.uuid4().hex[:10]}"
    calls: list[str] = []
    _spy(monkeypatch, client, "upsert", calls)
    try:
        col = ContextualCollection.create(client, name, v2_encoder, context=v2_context, hybrid=True)
        col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
        assert calls == []  # the actors wrote
        got = _points(col)
        assert got.keys() == reference.keys()
        for key, (payload, vectors) in reference.items():
            assert got[key][0] == payload
            assert got[key][1][SPARSE] == vectors[SPARSE]
            assert np.allclose(got[key][1][""], vectors[""], atol=1e-6)  # server normalises
        again = col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
        assert again.chunks_embedded == 0
    finally:
        cleanup(client, name)
        client.close()


def test_a_server_the_workers_cannot_reach_fails_before_any_window(
    pool: RayEmbedder,
    v2_encoder: CDEEncoder,
    v2_context: CorpusContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    col = _collection(v2_encoder, v2_context)
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {"url": f"http://127.0.0.1:{port}", "timeout": 5}
    _treat_as_server(monkeypatch, col.client, options)
    # the actors' first request (no retries), not a window's upserts after every retry
    with pytest.raises(QdrantUnavailableError, match=r"cannot reach .* every node") as info:
        col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
    assert "could not write" not in str(info.value)
    assert col.client.count(col.name).count == 0


def test_a_server_without_the_collection_fails_before_any_window(
    pool: RayEmbedder,
    v2_encoder: CDEEncoder,
    v2_context: CorpusContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    col = _collection(v2_encoder, v2_context)
    with FakeQdrant(QdrantClient(":memory:")) as other:  # a server that lacks the collection
        options = {"url": other.url, "timeout": 60}
        _treat_as_server(monkeypatch, col.client, options)
        with pytest.raises(CollectionNotFoundError, match="has no such collection"):
            col.sync(_documents(), batch_size=BATCH, embedder=pool, show_progress_bar=False)
        assert other.upserts == [] and other.unexpected == []

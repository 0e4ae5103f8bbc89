"""Robust bulk upload under injected failures: retries, request-size splitting, parallel streams,
deferred indexing (on every location, through a client wrapper that fails on chosen calls)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection, QdrantUnavailableError
from cde_rag_qdrant._upload import (
    DEFERRED_KEY,
    Uploader,
    UploadOptions,
    make_points,
    request_bytes,
    split_by_size,
)
from cde_rag_qdrant.errors import RequestTooLargeError
from tests.conftest import corpus_texts

TEXTS = corpus_texts()
NO_WAIT: dict[str, Any] = {"backoff": 0.0, "backoff_max": 0.0}


def http_error(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "injected", b"{}", {})  # type: ignore[arg-type]


def connection_error() -> ResponseHandlingException:
    return ResponseHandlingException(ConnectionError("injected: connection reset"))


class FlakyClient:
    """Delegates to a real client; ``upsert`` call number n fails as ``plan[n]`` says.

    ``("before", exc)`` raises without sending (connection refused); ``("after", exc)`` sends,
    then raises (the response was lost although the server applied the request).
    """

    def __init__(self, inner: QdrantClient, plan: dict[int, tuple[str, BaseException]]) -> None:
        self.inner = inner
        self.plan = plan
        self.upserts = 0
        self.request_sizes: list[int] = []
        self.updates: list[dict[str, Any]] = []

    def upsert(self, collection_name: str, points: Any, wait: bool = True, **kw: Any) -> Any:
        self.upserts += 1
        self.request_sizes.append(request_bytes(points))
        planned = self.plan.get(self.upserts)
        if planned is not None and planned[0] == "before":
            raise planned[1]
        result = self.inner.upsert(collection_name, points=points, wait=wait, **kw)
        if planned is not None and planned[0] == "after":
            raise planned[1]
        return result

    def update_collection(self, collection_name: str, **kw: Any) -> Any:
        self.updates.append(kw)
        return self.inner.update_collection(collection_name, **kw)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def _stored(client: QdrantClient, name: str) -> dict[str, str]:
    points, _ = client.scroll(name, limit=1000, with_payload=True)
    return {str(p.id): (p.payload or {})["page_content"] for p in points}


def test_transient_failures_lose_nothing_and_duplicate_nothing(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    flaky = FlakyClient(
        client,
        {
            2: ("before", connection_error()),
            3: ("after", http_error(503)),  # applied, but the answer was lost
            4: ("before", http_error(429)),
            6: ("after", connection_error()),
            7: ("after", connection_error()),  # the same request fails twice
        },
    )
    col = ContextualCollection.create(flaky, name, v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]
    col.upload_options = UploadOptions(retries=3, **NO_WAIT)
    ids = col.add(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))], batch_size=4)
    assert flaky.upserts == len(TEXTS) // 4 + 5  # every failed request was sent again
    assert _stored(client, name) == dict(zip(ids, TEXTS, strict=True))
    assert client.count(name, exact=True).count == len(TEXTS)
    assert col.count() == len(TEXTS)


def test_permanent_errors_are_not_retried_and_retries_end(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    flaky = FlakyClient(client, {1: ("before", http_error(400))})
    col = ContextualCollection.create(flaky, name, v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]
    col.upload_options = UploadOptions(retries=3, **NO_WAIT)
    with pytest.raises(UnexpectedResponse):
        col.add(TEXTS[:4])
    assert flaky.upserts == 1
    flaky.plan = {n: ("before", connection_error()) for n in range(2, 10)}
    with pytest.raises(QdrantUnavailableError, match="did not answer"):
        col.add(TEXTS[:4])
    assert flaky.upserts == 1 + 4  # first try + 3 retries
    assert client.count(name, exact=True).count == 0


def test_a_batch_over_the_request_limit_is_split(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    big = [f"{t} " + "lorem ipsum dolor " * 1500 for t in TEXTS]  # ~27 kB each
    flaky = FlakyClient(client, {})
    col = ContextualCollection.create(flaky, name, v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]
    limit = 100_000
    col.upload_options = UploadOptions(max_request_bytes=limit)
    assert request_bytes(make_points(["a"], [[0.0] * 64], [{"t": big[0]}])) * 10 > limit
    ids = col.add(big, batch_size=10)
    assert flaky.upserts >= len(big) * 27_000 // limit  # split into several requests
    assert max(flaky.request_sizes) <= limit
    assert _stored(client, name) == dict(zip(ids, big, strict=True))


def test_a_point_over_the_request_limit_is_refused() -> None:
    points = make_points(["a", "b"], [[0.0] * 4] * 2, [{"t": "x"}, {"t": "y" * 5000}])
    groups = split_by_size(points[:1] * 100, 2000)
    assert len(groups) > 1 and sum(len(g) for g in groups) == 100
    assert all(request_bytes(g) <= 2000 for g in groups)
    with pytest.raises(RequestTooLargeError, match="Split the document"):
        split_by_size(points, 2000)


class FakeServer:
    """Stands in for a server client (not local mode): stores upserts, meets a barrier."""

    _client = object()  # not QdrantLocal: the uploader may use parallel streams

    def __init__(self, parties: int) -> None:
        self.points: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(parties, timeout=30)
        self.waited: list[bool] = []

    def upsert(self, collection_name: str, points: Any, wait: bool) -> None:
        if not wait:
            self.barrier.wait()  # only passes when `parties` requests are in flight at once
        with self.lock:
            self.waited.append(wait)
            self.points.update({p.id: p for p in points})


def test_parallel_streams_on_a_server() -> None:
    fake = FakeServer(parties=3)
    uploader = Uploader(fake, "c", UploadOptions(parallel=3, max_request_bytes=2000))  # type: ignore[arg-type]
    points = make_points([f"p{i}" for i in range(36)], [[0.5] * 8] * 36, [{}] * 36)
    groups = split_by_size(points[:-1], UploadOptions(max_request_bytes=2000).budget)
    assert len(groups) % 3 == 0  # every group of three meets at the barrier
    uploader.send(points[:-1], wait_applied=False)
    uploader.send(points[-1:], wait_applied=True)
    uploader.close()
    assert set(fake.points) == {p.id for p in points}
    assert fake.waited[-1] is True and fake.waited.count(True) == 1  # the last one waits


def test_indexing_is_deferred_and_restored_even_on_error(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    flaky = FlakyClient(client, {})
    col = ContextualCollection.create(flaky, name, v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]
    before = client.get_collection(name).config.optimizer_config.indexing_threshold
    col.upload_options = UploadOptions(defer_indexing=True, **NO_WAIT)
    col.add(TEXTS[:6], batch_size=3)
    thresholds = [
        u["optimizers_config"].indexing_threshold for u in flaky.updates if "optimizers_config" in u
    ]
    assert thresholds == [0, before]
    assert client.get_collection(name).config.optimizer_config.indexing_threshold == before

    flaky.updates.clear()
    flaky.plan = {flaky.upserts + 2: ("before", http_error(400))}
    with pytest.raises(UnexpectedResponse):
        col.add(TEXTS[6:], batch_size=3)
    thresholds = [
        u["optimizers_config"].indexing_threshold for u in flaky.updates if "optimizers_config" in u
    ]
    assert thresholds == [0, before]  # restored although the ingest failed
    meta = client.get_collection(name).config.metadata or {}
    assert meta[DEFERRED_KEY] == {"active": False, "restore": before}


def test_an_ingest_killed_while_deferring_is_repaired_by_the_next(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=TEXTS)
    # what a killed ingest leaves: threshold 0 and the note of the value to restore
    client.update_collection(
        name,
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0),
        metadata={DEFERRED_KEY: {"active": True, "restore": 12345}},
    )
    flaky = FlakyClient(client, {})
    col.client = flaky  # type: ignore[assignment]
    col.upload_options = UploadOptions(defer_indexing=True)
    col.add(TEXTS[:2])
    restored = flaky.updates[-2]["optimizers_config"].indexing_threshold
    assert restored == 12345


def test_default_defers_only_large_ingests_on_servers(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, location: str
) -> None:
    flaky = FlakyClient(client, {})
    col = ContextualCollection.create(flaky, name, v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]
    col.upload_options = UploadOptions(defer_indexing_min=5)
    col.add(TEXTS[:6])
    deferred = any("optimizers_config" in u for u in flaky.updates)
    assert deferred == (location == "server")


def test_upload_options_are_validated() -> None:
    with pytest.raises(ValueError, match="parallel=0"):
        UploadOptions(parallel=0)
    with pytest.raises(ValueError, match="retries=-1"):
        UploadOptions(retries=-1)

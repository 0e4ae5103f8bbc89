"""Bulk upload: size limit, retries with backoff, parallel streams, deferred indexing.

The ingest pipeline hands finished points to :func:`upload_session`'s :class:`Uploader`:

- **Request size.** Each upsert is split so that its JSON body stays under
  ``UploadOptions.max_request_bytes`` (Qdrant servers refuse requests over 32 MB by default).
  A single point over the limit is refused with :class:`RequestTooLargeError`.
- **Retries.** Transient failures (connection errors, timeouts, HTTP 408/429/5xx, gRPC
  UNAVAILABLE) are retried with exponential backoff and jitter via ``tenacity``. Point ids are
  deterministic and upserts idempotent, so a retried request that had in fact been applied
  duplicates nothing. (qdrant-client's own ``upload_points(max_retries=...)`` retries every
  exception, without backoff or a size limit, and would replace the pipeline's batching.)
- **Parallel streams.** On a server, ``parallel`` requests are in flight at once; local mode
  stays on the calling thread (its SQLite connection belongs to it).
- **Deferred indexing.** On a server, a large ingest sets ``indexing_threshold=0`` (no HNSW
  building while points stream in) and restores the previous value at the end, also on error.
  The previous value is noted in the collection metadata first, so an ingest killed midway
  is repaired by the next one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant._qdrant_internals import is_local
from cde_rag_qdrant._store import qdrant_errors
from cde_rag_qdrant.errors import RequestTooLargeError
from cde_rag_qdrant.sparse import SparseEncoder

logger = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""Qdrant's default ``service.max_request_size_mb`` (32 MiB)."""
REQUEST_OVERHEAD_BYTES = 64 * 1024
"""Reserved per request for the envelope (``{"points": [...]}``, headers, separators)."""
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFERRED_KEY = "cde_rag_deferred_indexing"
"""Collection metadata key noting the indexing threshold to restore after an ingest."""
DEFAULT_INDEXING_THRESHOLD = 20_000
"""Qdrant's default ``indexing_threshold`` (kB), used when a server reports none."""


@dataclass(frozen=True)
class UploadOptions:
    """How points are sent to Qdrant.

    Attributes:
        max_request_bytes: Largest JSON request body (the server's limit).
        retries: Retries of a request after a transient failure (0: none).
        backoff: First retry delay in seconds (doubles each time, plus jitter).
        backoff_max: Longest delay between retries.
        parallel: Requests in flight at once on a server (1: sequential).
        defer_indexing: Pause HNSW indexing during the upload: True, False, or None for
            "on servers, when at least ``defer_indexing_min`` points are written".
        defer_indexing_min: Threshold for ``defer_indexing=None``.
    """

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    parallel: int = 1
    defer_indexing: bool | None = None
    defer_indexing_min: int = 10_000

    def __post_init__(self) -> None:
        """Validate the values."""
        problems = [
            f"{name}={value!r}"
            for name, value, ok in (
                ("max_request_bytes", self.max_request_bytes, self.max_request_bytes > 1024),
                ("retries", self.retries, self.retries >= 0),
                ("backoff", self.backoff, self.backoff >= 0),
                ("backoff_max", self.backoff_max, self.backoff_max >= 0),
                ("parallel", self.parallel, self.parallel >= 1),
                ("defer_indexing_min", self.defer_indexing_min, self.defer_indexing_min >= 0),
            )
            if not ok
        ]
        if problems:
            msg = (
                f"invalid upload options: {', '.join(problems)}; expected max_request_bytes > "
                "1024, retries >= 0, backoff >= 0, parallel >= 1, defer_indexing_min >= 0."
            )
            raise InvalidInputError(msg)

    @property
    def budget(self) -> int:
        """Bytes of points one request may carry."""
        return max(self.max_request_bytes - REQUEST_OVERHEAD_BYTES, self.max_request_bytes // 2)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the request may succeed (network trouble, overload, restarts)."""
    if isinstance(exc, ResponseHandlingException | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in TRANSIENT_STATUS
    try:
        import grpc  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - grpc ships with qdrant-client
        return False
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        return code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    return False


def point_bytes(point: models.PointStruct) -> int:
    """Size of a point in a JSON request body."""
    return len(point.model_dump_json(exclude_none=True).encode("utf-8")) + 1


def request_bytes(points: Sequence[models.PointStruct]) -> int:
    """Size of the JSON body of an upsert of ``points``."""
    body = {"points": [p.model_dump(mode="json", exclude_none=True) for p in points]}
    return len(json.dumps(body, separators=(",", ":")).encode("utf-8"))


def split_by_size(
    points: Sequence[models.PointStruct], budget: int
) -> list[list[models.PointStruct]]:
    """Split ``points`` into consecutive groups of at most ``budget`` JSON bytes each.

    Raises:
        RequestTooLargeError: One point alone is larger than ``budget``.
    """
    groups: list[list[models.PointStruct]] = []
    current: list[models.PointStruct] = []
    used = 0
    for point in points:
        size = point_bytes(point)
        if size > budget:
            msg = (
                f"point {point.id} is {size / 1e6:.1f} MB as JSON; one request may carry "
                f"{budget / 1e6:.1f} MB (the server's request limit less the envelope). Split "
                "the document into smaller chunks, store less metadata, or raise the server's "
                "service.max_request_size_mb and UploadOptions(max_request_bytes=...). Points "
                "before it were written; re-running writes each point once."
            )
            raise RequestTooLargeError(msg)
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append(point)
        used += size
    if current:
        groups.append(current)
    return groups


def _backoff(options: UploadOptions) -> wait_base:
    """Exponential backoff from ``options.backoff`` up to ``backoff_max``, plus jitter."""
    return wait_exponential(multiplier=options.backoff, max=options.backoff_max) + wait_random(
        0, options.backoff
    )


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    logger.warning(
        "upsert failed (%s: %s); retry %d in %.1fs",
        type(exc).__name__,
        exc,
        state.attempt_number,
        delay,
    )


class Uploader:
    """Sends points with size-aware splitting, retries and (on servers) parallel streams."""

    def __init__(self, client: QdrantClient, collection_name: str, options: UploadOptions) -> None:
        """Bind to one collection; use :func:`upload_session` to get one."""
        self.client = client
        self.collection_name = collection_name
        self.options = options
        streams = 1 if is_local(client) else options.parallel
        self._pool = (
            ThreadPoolExecutor(max_workers=streams, thread_name_prefix="cde-rag-upload")
            if streams > 1
            else None
        )
        self._streams = streams
        self._pending: set[Future[None]] = set()
        self.requests = 0

    def _upsert(self, points: list[models.PointStruct], *, wait_applied: bool) -> None:
        opts = self.options
        retrying = Retrying(
            stop=stop_after_attempt(opts.retries + 1),
            wait=_backoff(opts),
            retry=retry_if_exception(is_transient),
            before_sleep=_log_retry,
            reraise=True,
        )
        action = f"write {len(points)} points to collection {self.collection_name!r}"
        with qdrant_errors(self.client, action):
            for attempt in retrying:
                with attempt:
                    self.client.upsert(self.collection_name, points=points, wait=wait_applied)
        self.requests += 1
        logger.debug("upserted %d points into %s", len(points), self.collection_name)

    def _reap(self, *, block_until: int) -> None:
        """Wait until at most ``block_until`` requests are in flight; re-raise a failure."""
        while len(self._pending) > block_until:
            done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()

    def send(self, points: Sequence[models.PointStruct], *, wait_applied: bool) -> None:
        """Write ``points``; with ``wait_applied`` everything sent so far is searchable after.

        Raises:
            RequestTooLargeError: One point exceeds the request limit.
            QdrantUnavailableError: The server stayed unreachable through every retry.
        """
        groups = split_by_size(points, self.options.budget)
        for i, group in enumerate(groups):
            final = wait_applied and i == len(groups) - 1
            if self._pool is None or final:
                self.drain()
                self._upsert(group, wait_applied=final)
                continue
            self._reap(block_until=2 * self._streams - 1)
            self._pending.add(self._pool.submit(self._upsert, group, wait_applied=False))

    def drain(self) -> None:
        """Wait for every request in flight (re-raises the first failure)."""
        self._reap(block_until=0)

    def close(self) -> None:
        """Stop the streams (requests in flight are waited for)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _set_threshold(client: QdrantClient, name: str, value: int, options: UploadOptions) -> None:
    retrying = Retrying(
        stop=stop_after_attempt(options.retries + 1),
        wait=_backoff(options),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    with qdrant_errors(client, f"set the indexing threshold of {name!r}"):
        for attempt in retrying:
            with attempt:
                client.update_collection(
                    name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=value)
                )


@contextmanager
def deferred_indexing(
    client: QdrantClient, collection_name: str, options: UploadOptions
) -> Iterator[None]:
    """Disable HNSW indexing inside the block; restore the previous threshold after it."""
    with qdrant_errors(client, f"read collection {collection_name!r}"):
        info = client.get_collection(collection_name)
    noted: Any = (info.config.metadata or {}).get(DEFERRED_KEY)
    current = info.config.optimizer_config.indexing_threshold
    if isinstance(noted, dict) and noted.get("active") and isinstance(noted.get("restore"), int):
        previous = int(noted["restore"])  # an earlier ingest was killed while deferring
    else:
        previous = DEFAULT_INDEXING_THRESHOLD if current is None else int(current)
    if previous == 0:
        yield  # indexing is off by the user's choice: leave it so
        return
    with qdrant_errors(client, f"update collection {collection_name!r}"):
        client.update_collection(
            collection_name, metadata={DEFERRED_KEY: {"active": True, "restore": previous}}
        )
    _set_threshold(client, collection_name, 0, options)
    logger.info("indexing of %s deferred until the upload ends", collection_name)
    try:
        yield
    finally:
        _set_threshold(client, collection_name, previous, options)
        with qdrant_errors(client, f"update collection {collection_name!r}"):
            client.update_collection(
                collection_name, metadata={DEFERRED_KEY: {"active": False, "restore": previous}}
            )
        logger.info("indexing of %s restored (indexing_threshold=%d)", collection_name, previous)


@contextmanager
def upload_session(
    client: QdrantClient,
    collection_name: str,
    options: UploadOptions | None = None,
    *,
    total: int | None = None,
) -> Iterator[Uploader]:
    """An :class:`Uploader` for one ingest, with indexing deferred when the options say so.

    Args:
        client: The Qdrant client.
        collection_name: Where to write.
        options: Upload options (default: :class:`UploadOptions()`).
        total: Points about to be written, when known (for ``defer_indexing=None``).
    """
    opts = options or UploadOptions()
    uploader = Uploader(client, collection_name, opts)
    try:
        with indexing_paused(client, collection_name, opts, total=total):
            yield uploader
            uploader.drain()
    finally:
        uploader.close()


@contextmanager
def indexing_paused(
    client: QdrantClient, collection_name: str, options: UploadOptions, *, total: int | None
) -> Iterator[None]:
    """:func:`deferred_indexing` when ``options`` ask for it (on servers, for large loads).

    Used by :func:`upload_session` and, when workers write (Ray), by the driver around them.
    """
    defer = options.defer_indexing
    if defer is None:
        defer = not is_local(client) and total is not None and total >= options.defer_indexing_min
    if defer:
        with deferred_indexing(client, collection_name, options):
            yield
    else:
        yield


def make_points(
    ids: Sequence[models.ExtendedPointId],
    vectors: Sequence[Sequence[float]],
    payloads: Sequence[dict[str, Any]],
    sparse: tuple[str, Sequence[models.SparseVector]] | None = None,
) -> list[models.PointStruct]:
    """Points with the unnamed dense vector (and the named sparse one when ``sparse``)."""
    if sparse is None:
        return [
            models.PointStruct(id=i, vector=list(v), payload=p)
            for i, v, p in zip(ids, vectors, payloads, strict=True)
        ]
    name, sparse_vectors = sparse
    return [
        models.PointStruct(id=i, vector={"": list(v), name: s}, payload=p)
        for i, v, s, p in zip(ids, vectors, sparse_vectors, payloads, strict=True)
    ]


def batched_points(
    ids: Sequence[models.ExtendedPointId],
    texts: Sequence[str],
    vectors: npt.NDArray[np.float32],
    payloads: Sequence[dict[str, Any]],
    sparse: SparseEncoder | None,
    batch_size: int,
) -> Iterator[list[models.PointStruct]]:
    """The points of one embedded window, ``batch_size`` per upsert (see :func:`make_points`).

    The driver and a writing worker both build their points here, so either writes the same
    points in the same requests; ``sparse`` adds the lexical vectors of ``texts``.
    """
    lexical = None if sparse is None else sparse.embed_documents(texts)
    for start in range(0, len(ids), batch_size):
        stop = start + batch_size
        yield make_points(
            ids[start:stop],
            vectors[start:stop].tolist(),
            payloads[start:stop],
            None
            if sparse is None or lexical is None
            else (sparse.vector_name, lexical[start:stop]),
        )

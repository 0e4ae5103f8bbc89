"""Batched embed-and-upsert with one background thread: batch k+1 embeds while k uploads."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.progress import progress_enabled
from cde_rag_qdrant._qdrant_internals import describe
from cde_rag_qdrant._store import point_text
from cde_rag_qdrant._testhooks import crash_point
from cde_rag_qdrant._upload import (
    Uploader,
    UploadOptions,
    batched_points,
    indexing_paused,
    upload_session,
)
from cde_rag_qdrant.payload import FINGERPRINT_PAYLOAD_KEY
from cde_rag_qdrant.sparse import SparseEncoder
from cde_rag_qdrant.worker_writes import WriteTarget, write_target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingBatch:
    """Points to embed and write: ids, texts and their payloads (same order)."""

    ids: Sequence[models.ExtendedPointId]
    texts: list[str]
    payloads: list[dict[str, Any]]


EMBED_WINDOW = 512
"""Texts embedded per call: large enough for the encoder's length sorting to pay off."""


def restamped_batches(
    points: Iterable[models.Record], fingerprint: str, batch_size: int, *, skip_stamped: bool
) -> Iterator[PendingBatch]:
    """Stored points as batches to embed again: their text, their payload stamped anew.

    Points without text are passed over; with ``skip_stamped``, so are points whose payload
    already carries ``fingerprint`` (written by an interrupted earlier run).
    """
    ids: list[models.ExtendedPointId] = []  # int or UUID, as the source has them
    texts: list[str] = []
    payloads: list[dict[str, Any]] = []
    for point in points:
        payload = point.payload or {}
        text = point_text(point)
        if text is None or (skip_stamped and payload.get(FINGERPRINT_PAYLOAD_KEY) == fingerprint):
            continue
        ids.append(point.id)
        texts.append(text)
        payloads.append({**payload, FINGERPRINT_PAYLOAD_KEY: fingerprint})
        if len(ids) == batch_size:
            yield PendingBatch(ids, texts, payloads)
            ids, texts, payloads = [], [], []
    if ids:
        yield PendingBatch(ids, texts, payloads)


def _windows(batches: Iterable[PendingBatch], size: int) -> Iterator[PendingBatch]:
    """Regroup incoming batches into windows of ``size`` points (the last may be shorter)."""
    ids: list[models.ExtendedPointId] = []
    texts: list[str] = []
    payloads: list[dict[str, Any]] = []
    for batch in batches:
        ids.extend(batch.ids)
        texts.extend(batch.texts)
        payloads.extend(batch.payloads)
        while len(ids) >= size:
            yield PendingBatch(ids[:size], texts[:size], payloads[:size])
            del ids[:size], texts[:size], payloads[:size]
    if ids:
        yield PendingBatch(ids, texts, payloads)


class WindowEmbedder(Protocol):
    """Embeds windows of texts somewhere else (a Ray actor pool), yielding vectors in order."""

    def imap(self, windows: Iterable[Sequence[str]]) -> Iterator[npt.NDArray[np.float32]]:
        """The vectors of each window, in the order the windows were given."""
        ...


class WindowWriter(WindowEmbedder, Protocol):
    """An embedder whose workers can also write their windows to a Qdrant server."""

    worker_writes: bool
    """Whether to let the workers write when the collection lives on a server."""

    def imap_write(
        self,
        windows: Iterable[tuple[Sequence[Any], list[str], list[dict[str, Any]]]],
        target: WriteTarget,
    ) -> Iterator[int]:
        """Embed and upsert each ``(ids, texts, payloads)`` window; yield counts in order."""
        ...


def _worker_writes(
    embedder: WindowEmbedder, client: QdrantClient, collection_name: str, **target: Any
) -> tuple[WindowWriter, WriteTarget] | None:
    """The writer and target when workers should write (a server and a willing embedder)."""
    if not getattr(embedder, "worker_writes", False) or not hasattr(embedder, "imap_write"):
        return None
    found = write_target(client, collection_name, **target)
    return None if found is None else (embedder, found)  # type: ignore[return-value]


def _written_by_workers(
    windows: Iterator[PendingBatch], writer: WindowWriter, target: WriteTarget, bar: Any
) -> int:
    """Let the workers embed and write every window; count what they confirmed."""
    pending: deque[PendingBatch] = deque()

    def items() -> Iterator[tuple[Sequence[Any], list[str], list[dict[str, Any]]]]:
        for window in windows:
            pending.append(window)
            yield list(window.ids), window.texts, window.payloads

    written = 0
    for count in writer.imap_write(items(), target):
        window = pending.popleft()
        if count != len(window.ids):  # pragma: no cover - a worker bug, never silent
            msg = f"a worker wrote {count} of a window's {len(window.ids)} points"
            raise RuntimeError(msg)
        written += count
        bar.update(count)
    return written


def _local_pairs(
    windows: Iterator[PendingBatch],
    embed: Callable[[PendingBatch], npt.NDArray[np.float32]],
    pool: ThreadPoolExecutor,
) -> Iterator[tuple[PendingBatch, npt.NDArray[np.float32]]]:
    """Each window with its vectors; window k+1 embeds on ``pool`` while k is consumed."""
    current = next(windows, None)
    future = None if current is None else pool.submit(embed, current)
    while current is not None and future is not None:
        vectors = future.result()
        following = next(windows, None)
        future = None if following is None else pool.submit(embed, following)
        yield current, vectors
        current = following


def _engine_pairs(
    windows: Iterator[PendingBatch], embedder: WindowEmbedder, bar: Any
) -> Iterator[tuple[PendingBatch, npt.NDArray[np.float32]]]:
    """Each window with the vectors ``embedder`` made for it (windows are pulled lazily)."""
    pending: deque[PendingBatch] = deque()

    def texts() -> Iterator[list[str]]:
        for window in windows:
            pending.append(window)
            yield window.texts

    for vectors in embedder.imap(texts()):
        window = pending.popleft()
        bar.update(len(window.ids))
        yield window, vectors


def embed_and_upsert(
    client: QdrantClient,
    collection_name: str,
    encoder: CDEEncoder,
    context: CorpusContext,
    batches: Iterable[PendingBatch],
    *,
    document_prefix: str,
    batch_size: int,
    total: int | None,
    show_progress_bar: bool | None,
    desc: str = "Embedding",
    unit: str = "doc",
    embedder: WindowEmbedder | None = None,
    sparse: SparseEncoder | None = None,
    upload: UploadOptions | None = None,
) -> int:
    """Embed the points under ``context`` and upsert them; returns the number written.

    Points are embedded in windows of :data:`EMBED_WINDOW` texts, so the encoder can sort
    them by token length into its own forward batches (fixed-order chunks padded to their
    longest text waste much of the compute), and upserted in chunks of ``batch_size``.
    Embedding runs on one background thread (torch releases the GIL) while the calling thread
    talks to Qdrant, so the embedding of batch k+1 overlaps the upload of batch k. In local
    mode only the calling thread touches the client (its SQLite connection stays on its
    thread); on a server, ``upload.parallel`` requests may be in flight on worker threads.
    The progress bar moves after every forward pass of the encoder, not per window.
    With ``embedder`` (e.g. :class:`cde_rag_ray.RayEmbedder`), the windows are embedded there
    instead, several at once. On a server, an embedder with ``worker_writes`` also writes:
    each worker upserts the window it embedded (same points, same ``upload`` rules, see
    :mod:`cde_rag_qdrant.worker_writes`) and returns only its count; this process keeps the
    deferred indexing and the progress bar (per confirmed window) and returns once every
    window is confirmed. With an embedded store this thread stays the single writer.
    Intermediate upserts use ``wait=False`` (acknowledged once in the server's WAL, applied
    in order); the last one waits, so the points are searchable when this returns. Requests
    go through :mod:`cde_rag_qdrant._upload` (size limit, retries, parallel streams, deferred
    indexing: see ``upload``); ``sparse`` adds the lexical vector of hybrid collections.
    """
    show = progress_enabled(show_progress_bar)
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not show, smoothing=0.1)
    windows = _windows(batches, max(EMBED_WINDOW, batch_size))
    upload = upload or UploadOptions()
    if embedder is not None:
        workers = _worker_writes(
            embedder, client, collection_name, upload=upload, batch_size=batch_size, sparse=sparse
        )
        if workers is not None:
            writer, target = workers
            logger.info("the workers write their points to %s themselves", target.where)
            try:
                with indexing_paused(client, collection_name, upload, total=total):
                    return _written_by_workers(windows, writer, target, bar)
            finally:
                bar.close()
        logger.info("this process writes the points the workers embed (%s)", describe(client))
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cde-rag-embed")

    def embed(batch: PendingBatch) -> npt.NDArray[np.float32]:
        return encoder.embed_documents(
            batch.texts,
            context,
            show_progress_bar=False,
            prefix=document_prefix,
            progress_callback=bar.update,  # per forward pass: the bar moves, with an ETA
        )

    def send(uploader: Uploader, points: list[models.PointStruct], *, wait: bool) -> None:
        uploader.send(points, wait_applied=wait)
        crash_point("upserted")
        logger.debug("upserted %d points into %s", len(points), collection_name)

    written = 0
    pairs = (
        _local_pairs(windows, embed, pool)
        if embedder is None
        else _engine_pairs(windows, embedder, bar)
    )
    held: list[models.PointStruct] | None = None  # the latest chunk: sent when the next exists
    try:
        with upload_session(client, collection_name, upload, total=total) as uploader:
            for window, vectors in pairs:
                for points in batched_points(
                    window.ids, window.texts, vectors, window.payloads, sparse, batch_size
                ):
                    if held is not None:
                        send(uploader, held, wait=False)
                        written += len(held)
                    held = points
            if held is not None:
                send(uploader, held, wait=True)
                written += len(held)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return written

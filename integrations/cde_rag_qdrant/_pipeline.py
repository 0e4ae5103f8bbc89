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
from cde_rag_qdrant._testhooks import crash_point
from cde_rag_qdrant._upload import Uploader, UploadOptions, make_points, upload_session
from cde_rag_qdrant.sparse import SparseEncoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingBatch:
    """Points to embed and write: ids, texts and their payloads (same order)."""

    ids: Sequence[models.ExtendedPointId]
    texts: list[str]
    payloads: list[dict[str, Any]]


EMBED_WINDOW = 512
"""Texts embedded per call: large enough for the encoder's length sorting to pay off."""


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
    instead, several at once, and this thread stays the single writer.
    Intermediate upserts use ``wait=False`` (acknowledged once in the server's WAL, applied
    in order); the last one waits, so the points are searchable when this returns. Requests
    go through :mod:`cde_rag_qdrant._upload` (size limit, retries, parallel streams, deferred
    indexing: see ``upload``); ``sparse`` adds the lexical vector of hybrid collections.
    """
    show = progress_enabled(show_progress_bar)
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not show, smoothing=0.1)
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
    windows = _windows(batches, max(EMBED_WINDOW, batch_size))
    pairs = (
        _local_pairs(windows, embed, pool)
        if embedder is None
        else _engine_pairs(windows, embedder, bar)
    )
    held: list[models.PointStruct] | None = None  # the latest chunk: sent when the next exists
    try:
        with upload_session(client, collection_name, upload, total=total) as uploader:
            for window, vectors in pairs:
                lexical = None if sparse is None else sparse.embed_documents(window.texts)
                for start in range(0, len(window.ids), batch_size):
                    stop = start + batch_size
                    if held is not None:
                        send(uploader, held, wait=False)
                        written += len(held)
                    held = make_points(
                        window.ids[start:stop],
                        vectors[start:stop].tolist(),
                        window.payloads[start:stop],
                        None
                        if sparse is None or lexical is None
                        else (sparse.vector_name, lexical[start:stop]),
                    )
            if held is not None:
                send(uploader, held, wait=True)
                written += len(held)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return written

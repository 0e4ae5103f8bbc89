"""Batched embed-and-upsert with one background thread: batch k+1 embeds while k uploads."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.progress import progress_enabled
from cde_rag_qdrant._upload import UploadOptions, make_points, upload_session
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
    desc: str = "Ingest",
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
    Intermediate upserts use ``wait=False`` (acknowledged once in the server's WAL, applied
    in order); the last one waits, so the points are searchable when this returns. Requests
    go through :mod:`cde_rag_qdrant._upload` (size limit, retries, parallel streams, deferred
    indexing: see ``upload``); ``sparse`` adds the lexical vector of hybrid collections.
    """
    show = progress_enabled(show_progress_bar)
    bar = tqdm(total=total, desc=desc, unit="doc", disable=not show)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cde-rag-embed")

    def embed(
        batch: PendingBatch,
    ) -> tuple[npt.NDArray[np.float32], list[models.SparseVector] | None]:
        dense = encoder.embed_documents(
            batch.texts, context, show_progress_bar=False, prefix=document_prefix
        )
        return dense, None if sparse is None else sparse.embed_documents(batch.texts)

    written = 0
    iterator = _windows(batches, max(EMBED_WINDOW, batch_size))
    try:
        with upload_session(client, collection_name, upload, total=total) as uploader:
            current = next(iterator, None)
            future = None if current is None else pool.submit(embed, current)
            while current is not None and future is not None:
                vectors, sparse_vectors = future.result()
                following = next(iterator, None)
                future = None if following is None else pool.submit(embed, following)
                for start in range(0, len(current.ids), batch_size):
                    stop = start + batch_size
                    last = following is None and stop >= len(current.ids)
                    points = make_points(
                        current.ids[start:stop],
                        vectors[start:stop].tolist(),
                        current.payloads[start:stop],
                        None
                        if sparse is None or sparse_vectors is None
                        else (sparse.vector_name, sparse_vectors[start:stop]),
                    )
                    uploader.send(points, wait_applied=last)
                    written += len(points)
                    bar.update(len(points))
                current = following
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return written

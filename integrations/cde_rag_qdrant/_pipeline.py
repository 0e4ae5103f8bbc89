"""Batched embed-and-upsert with one background thread: batch k+1 embeds while k uploads."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant._store import qdrant_errors

logger = logging.getLogger(__name__)


def progress_default(show_progress_bar: bool | None) -> bool:
    """``None`` means: on when the ``cde_rag`` logger is at INFO or DEBUG."""
    if show_progress_bar is not None:
        return show_progress_bar
    return logging.getLogger("cde_rag").getEffectiveLevel() <= logging.INFO


@dataclass(frozen=True)
class PendingBatch:
    """Points to embed and write: ids, texts and their payloads (same order)."""

    ids: list[str]
    texts: list[str]
    payloads: list[dict[str, Any]]


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
) -> int:
    """Embed each batch under ``context`` and upsert it; returns the number of points written.

    Embedding runs on one background thread (torch releases the GIL) while the calling thread
    talks to Qdrant, so the embedding of batch k+1 overlaps the upload of batch k. Only the
    calling thread touches the client (local mode's SQLite connection stays on its thread).
    Intermediate upserts use ``wait=False`` (acknowledged once in the server's WAL, applied
    in order); the last one waits, so the points are searchable when this returns.
    """
    show = progress_default(show_progress_bar)
    bar = tqdm(total=total, desc=desc, unit="doc", disable=not show)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cde-rag-embed")

    def embed(batch: PendingBatch) -> npt.NDArray[np.float32]:
        return encoder.embed_documents(
            batch.texts,
            context,
            batch_size=batch_size,
            show_progress_bar=False,
            prefix=document_prefix,
        )

    written = 0
    iterator = iter(batches)
    try:
        current = next(iterator, None)
        future = None if current is None else pool.submit(embed, current)
        while current is not None and future is not None:
            vectors = future.result()
            following = next(iterator, None)
            future = None if following is None else pool.submit(embed, following)
            with qdrant_errors(client, f"write to collection {collection_name!r}"):
                client.upsert(
                    collection_name,
                    points=models.Batch(
                        ids=list(current.ids),
                        vectors=vectors.tolist(),
                        payloads=current.payloads,
                    ),
                    wait=following is None,
                )
            written += len(current.ids)
            bar.update(len(current.ids))
            logger.debug("upserted %d points into %s", len(current.ids), collection_name)
            current = following
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return written

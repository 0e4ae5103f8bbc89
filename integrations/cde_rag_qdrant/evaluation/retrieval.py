"""Ranking: exact cosine over embedded vectors (local path), or search in a Qdrant collection.

Corpus ids of collection points (see :func:`collection_run`): the payload's
``metadata[id_key]`` (``_id`` by default, which ``cde-rag ingest corpus.jsonl`` stores for a BEIR
corpus), else the point id, translated back to the corpus id when it is the point id
``cde-rag``/``ContextualCollection.add(ids=...)`` derives from a qrels corpus id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cde_rag_qdrant.evaluation.cache import Vectors
from cde_rag_qdrant.evaluation.metrics import RUN_DEPTH, Run

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)

BLOCK_SCORES = 1 << 24
"""Most query x document scores held at once (64 MiB of float32)."""
QUERY_BATCH = 64
"""Queries per batched request to Qdrant."""


def exact_run(
    documents: Vectors,
    queries: Vectors,
    doc_ids: Sequence[str],
    query_ids: Sequence[str],
    *,
    depth: int = RUN_DEPTH,
) -> Run:
    """Top ``depth`` documents per query by dot product (cosine for unit vectors).

    Queries are scored in blocks of at most :data:`BLOCK_SCORES` scores to bound memory.
    """
    if documents.shape[0] != len(doc_ids) or queries.shape[0] != len(query_ids):
        msg = (
            f"{documents.shape[0]} document vectors for {len(doc_ids)} ids, "
            f"{queries.shape[0]} query vectors for {len(query_ids)} ids"
        )
        raise ValueError(msg)
    n_docs = documents.shape[0]
    k = min(depth, n_docs)
    block = max(1, BLOCK_SCORES // max(n_docs, 1))
    run: Run = {}
    for start in range(0, len(query_ids), block):
        scores = queries[start : start + block] @ documents.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n_docs else None
        for row in range(scores.shape[0]):
            picks = np.arange(n_docs) if top is None else top[row]
            run[query_ids[start + row]] = [
                (doc_ids[i], float(scores[row, i])) for i in picks.tolist()
            ]
    return run


def collection_run(
    client: QdrantClient,
    collection_name: str,
    queries: Vectors,
    query_ids: Sequence[str],
    fingerprint: str,
    known_ids: Sequence[str],
    *,
    id_key: str = "_id",
    depth: int = RUN_DEPTH,
) -> tuple[Run, int]:
    """Search ``collection_name``; returns the run and the number of hits without ``id_key``.

    Only points of the context ``fingerprint`` are searched. ``known_ids`` (the judged corpus
    ids) lets point ids be translated back (see the module docstring).
    """
    from qdrant_client import models

    from cde_rag_qdrant import _store
    from cde_rag_qdrant.payload import METADATA_PAYLOAD_KEY, fingerprint_condition, point_id

    by_point = {point_id(d): d for d in known_ids}
    flt = models.Filter(must=[fingerprint_condition(fingerprint)])
    run: Run = {}
    keyless = 0
    for start in range(0, len(query_ids), QUERY_BATCH):
        requests = [
            models.QueryRequest(
                query=vector.tolist(),
                filter=flt,
                limit=depth,
                with_payload=[METADATA_PAYLOAD_KEY],
            )
            for vector in queries[start : start + QUERY_BATCH]
        ]
        with _store.qdrant_errors(client, f"search {collection_name!r}"):
            responses = client.query_batch_points(collection_name, requests=requests)
        for qid, response in zip(query_ids[start : start + QUERY_BATCH], responses, strict=True):
            ranking = []
            for point in response.points:
                meta: Any = (point.payload or {}).get(METADATA_PAYLOAD_KEY) or {}
                doc = meta.get(id_key) if isinstance(meta, dict) else None
                if doc is None:
                    keyless += 1
                    doc = by_point.get(str(point.id), str(point.id))
                ranking.append((str(doc), float(point.score)))
            run[qid] = ranking
    return run, keyless

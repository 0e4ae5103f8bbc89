"""Ranking through a Qdrant collection: the ``@hybrid``/``@sparse``/``@int8``/``@binary`` modifiers.

The condition's cached document vectors (nothing is embedded again) are written, with the
corpus texts, into a fresh in-memory collection created by
:meth:`ContextualCollection.create` with the condition's context and the matching options
(``hybrid=True``, ``CollectionOptions(quantization=...)``). Queries use their cached vectors
and the same request :meth:`ContextualCollection.search` builds (context filter, Qdrant's RRF
fusion for hybrid, rescoring with 2x oversampling for quantized collections).

Note: the in-memory (local) Qdrant ignores quantization and searches exactly, so ``@int8`` and
``@binary`` only change results against a Qdrant server; ``@hybrid`` changes ranking everywhere.
"""

from __future__ import annotations

import logging
import warnings

from cde_rag_qdrant.evaluation.beir import RetrievalData
from cde_rag_qdrant.evaluation.conditions import ContextCondition
from cde_rag_qdrant.evaluation.embedders import ConditionVectors
from cde_rag_qdrant.evaluation.metrics import RUN_DEPTH, Run

logger = logging.getLogger(__name__)

UPSERT_BATCH = 256
"""Points per upsert into the evaluation collection."""
OVERSAMPLING = 2.0
"""Candidates fetched per result before rescoring, for quantized collections."""
COLLECTION_NAME = "cde_eval"


def indexed_run(
    condition: ContextCondition,
    vectors: ConditionVectors,
    data: RetrievalData,
    *,
    depth: int = RUN_DEPTH,
) -> Run:
    """Top ``depth`` documents per query from a collection configured as ``condition`` says.

    Args:
        condition: Its ``mode`` and ``quantization`` choose the collection and the search.
        vectors: The condition's (cached) vectors, with the encoder and context that made them.
        data: The data set (corpus ids and texts are stored; sparse vectors come from texts).
        depth: Hits per query.

    Raises:
        ValueError: ``vectors`` carry no encoder or context, or do not match ``data``.
    """
    from qdrant_client import QdrantClient, models

    from cde_rag_qdrant._upload import make_points
    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.options import CollectionOptions, search_params
    from cde_rag_qdrant.payload import (
        METADATA_PAYLOAD_KEY,
        build_payload,
        fingerprint_condition,
        point_id,
    )
    from cde_rag_qdrant.query import query_kwargs

    encoder, context = vectors.encoder, vectors.context
    documents, queries = vectors.documents, vectors.queries
    doc_ids, doc_texts = data.doc_ids, data.doc_texts
    query_ids, query_texts = data.query_ids, data.query_texts
    if encoder is None or context is None:
        msg = f"condition {condition.name!r}: its vectors carry no encoder or context to index"
        raise ValueError(msg)
    if documents.shape[0] != len(doc_ids) or queries.shape[0] != len(query_ids):
        msg = (
            f"{documents.shape[0]} document vectors for {len(doc_ids)} ids, "
            f"{queries.shape[0]} query vectors for {len(query_ids)} ids"
        )
        raise ValueError(msg)
    client = QdrantClient(":memory:")
    try:
        col = ContextualCollection.create(
            client,
            COLLECTION_NAME,
            encoder,
            context=context,
            hybrid=condition.mode != "dense",
            options=CollectionOptions(quantization=condition.quantization),
        )
        sparse = col.sparse
        for start in range(0, len(doc_ids), UPSERT_BATCH):
            stop = start + UPSERT_BATCH
            texts = list(doc_texts[start:stop])
            points = make_points(
                [point_id(d) for d in doc_ids[start:stop]],
                documents[start:stop].tolist(),
                [build_payload(t, {"_id": d}, col.fingerprint) for t, d in
                 zip(texts, doc_ids[start:stop], strict=True)],
                None if sparse is None else (sparse.vector_name, sparse.embed_documents(texts)),
            )  # fmt: skip
            client.upsert(col.name, points=points, wait=True)
        logger.debug("indexed %d documents into %s", len(doc_ids), condition.name)
        quantized = condition.quantization is not None
        params = search_params(
            rescore=True if quantized else None,
            oversampling=OVERSAMPLING if quantized else None,
            hnsw_ef=None,
        )
        flt = models.Filter(must=[fingerprint_condition(col.fingerprint)])
        limit = min(depth, len(doc_ids))
        run: Run = {}
        for qid, vector, text in zip(query_ids, queries, query_texts, strict=True):
            request = query_kwargs(
                mode=condition.mode,
                fusion="rrf",
                dense=vector.tolist(),
                sparse_vector=None if sparse is None else sparse.embed_query(text),
                sparse_name=None if sparse is None else sparse.vector_name,
                limit=limit,
                query_filter=flt,
                search_params=params,
            )
            with warnings.catch_warnings():  # local mode: "search_params has no effect" (known)
                warnings.filterwarnings("ignore", message="Local mode performs exact")
                response = client.query_points(
                    col.name, limit=limit, with_payload=[METADATA_PAYLOAD_KEY], **request
                )
            run[qid] = [
                (str((p.payload or {})[METADATA_PAYLOAD_KEY]["_id"]), float(p.score))
                for p in response.points
            ]
        return run
    finally:
        client.close()

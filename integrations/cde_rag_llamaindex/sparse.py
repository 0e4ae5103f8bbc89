"""Lexical sparse encoders for LlamaIndex's hybrid mode (``enable_hybrid=True``).

LlamaIndex's ``QdrantVectorStore`` takes ``sparse_doc_fn`` / ``sparse_query_fn`` callables
(texts -> (indices, values)) and a ``sparse_vector_name``. :func:`hybrid_defaults` fills them
from a hybrid cde-rag collection, so LlamaIndex writes and searches the same sparse vectors as
``ContextualCollection`` (``cde_rag_qdrant.sparse.SparseEncoder``; no model download).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qdrant_client import QdrantClient

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.sparse import SparseEncoder
from cde_rag_qdrant.store import read_sparse

SparseFn = Callable[[list[str]], tuple[list[list[int]], list[list[float]]]]


def sparse_fns(encoder: SparseEncoder) -> tuple[SparseFn, SparseFn]:
    """``(sparse_doc_fn, sparse_query_fn)`` for LlamaIndex, computing ``encoder``'s vectors."""

    def docs(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        vectors = encoder.embed_documents(texts)
        return [v.indices for v in vectors], [v.values for v in vectors]

    def queries(texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        vectors = [encoder.embed_query(t) for t in texts]
        return [v.indices for v in vectors], [v.values for v in vectors]

    return docs, queries


def hybrid_defaults(
    client: QdrantClient | None, collection_name: str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` plus the collection's sparse functions and vector name when hybrid is on.

    Raises:
        InvalidInputError: ``fastembed_sparse_model`` (a download), or hybrid on a collection
            without a sparse vector.
    """
    if kwargs.get("fastembed_sparse_model"):
        msg = (
            "fastembed_sparse_model downloads a model; cde-rag collections carry their own "
            "offline sparse vectors: pass enable_hybrid=True only."
        )
        raise InvalidInputError(msg)
    if not kwargs.get("enable_hybrid"):
        return kwargs
    if client is None:
        msg = (
            "enable_hybrid=True on a cde-rag collection needs client=QdrantClient(...) (its "
            "sparse vector settings are read when the store opens)."
        )
        raise InvalidInputError(msg)
    encoder = read_sparse(client, collection_name)
    if encoder is None:
        msg = (
            f"collection {collection_name!r} has no sparse vector, so enable_hybrid=True cannot "
            "work. Create it with create_qdrant_store(..., enable_hybrid=True) or `cde-rag "
            "ingest --hybrid`."
        )
        raise InvalidInputError(msg)
    docs, queries = sparse_fns(encoder)
    out = dict(kwargs)
    out.setdefault("sparse_doc_fn", docs)
    out.setdefault("sparse_query_fn", queries)
    out.setdefault("sparse_vector_name", encoder.vector_name)
    return out

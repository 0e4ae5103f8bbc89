"""Lexical sparse embeddings for ``langchain_qdrant``'s ``RetrievalMode.HYBRID`` / ``SPARSE``.

:class:`CDESparseEmbeddings` produces the same sparse vectors as a hybrid cde-rag collection
(``cde_rag_qdrant.sparse.SparseEncoder``: stemmed terms, BM25 term weights, IDF applied by
Qdrant), so LangChain and cde-rag write and search the same sparse vector.
"""

from __future__ import annotations

from typing import Any

from langchain_qdrant import QdrantVectorStore, RetrievalMode, SparseEmbeddings, SparseVector
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.errors import CollectionConfigError
from cde_rag_qdrant.query import query_kwargs
from cde_rag_qdrant.sparse import SparseEncoder
from cde_rag_qdrant.store import read_sparse

_MODES = {RetrievalMode.DENSE: "dense", RetrievalMode.SPARSE: "sparse"}
_MODES[RetrievalMode.HYBRID] = "hybrid"


class CDESparseEmbeddings(SparseEmbeddings):
    """``SparseEmbeddings`` computing cde-rag's offline lexical vectors.

    Args:
        encoder: The collection's sparse encoder (default settings when None).

    Example:
        >>> CDESparseEmbeddings().embed_query("ERR_CONN_4012").indices  # doctest: +SKIP
        [...]
    """

    def __init__(self, encoder: SparseEncoder | None = None) -> None:
        """Wrap ``encoder``."""
        self.encoder = encoder or SparseEncoder()

    @classmethod
    def from_qdrant(cls, client: QdrantClient, collection_name: str) -> CDESparseEmbeddings:
        """The sparse embeddings a hybrid cde-rag collection was written with.

        Raises:
            CollectionConfigError: The collection has no sparse vector.
        """
        encoder = read_sparse(client, collection_name)
        if encoder is None:
            msg = (
                f"collection {collection_name!r} has no sparse vector, so it cannot be "
                "searched in RetrievalMode.HYBRID or SPARSE. Create it with "
                "create_qdrant_vector_store(..., retrieval_mode=RetrievalMode.HYBRID) or "
                "`cde-rag ingest --hybrid`."
            )
            raise CollectionConfigError(msg)
        return cls(encoder)

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        """BM25 term weights of each text (IDF is applied by Qdrant)."""
        return [
            SparseVector(indices=v.indices, values=v.values)
            for v in self.encoder.embed_documents(texts)
        ]

    def embed_query(self, text: str) -> SparseVector:
        """Weight 1 per distinct query term."""
        v = self.encoder.embed_query(text)
        return SparseVector(indices=v.indices, values=v.values)


def is_lexical(kwargs: dict[str, Any]) -> bool:
    """Whether ``QdrantVectorStore`` options ask for hybrid or sparse retrieval."""
    return kwargs.get("retrieval_mode") in (RetrievalMode.HYBRID, RetrievalMode.SPARSE)


def with_sparse_defaults(
    client: QdrantClient | AsyncQdrantClient, collection_name: str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """``kwargs`` plus the collection's sparse embeddings and vector name (lexical modes).

    Raises:
        InvalidInputError: A lexical mode with an ``AsyncQdrantClient``.
        CollectionConfigError: A lexical mode on a collection without a sparse vector.
    """
    if not is_lexical(kwargs):
        return kwargs
    if isinstance(client, AsyncQdrantClient):
        msg = (
            "RetrievalMode.HYBRID / SPARSE on cde-rag collections needs a QdrantClient (the "
            "sparse vector is read from the collection when the store opens)."
        )
        raise InvalidInputError(msg)
    if kwargs.get("sparse_embedding") is None:
        sparse = CDESparseEmbeddings.from_qdrant(client, collection_name)
        kwargs = {**kwargs, "sparse_embedding": sparse}
    else:
        sparse = kwargs["sparse_embedding"]
    if isinstance(sparse, CDESparseEmbeddings):
        kwargs.setdefault("sparse_vector_name", sparse.encoder.vector_name)
    return kwargs


def lexical_request(
    store: QdrantVectorStore,
    query: str,
    dense: list[float] | None,
    limit: int,
    query_filter: models.Filter,
    search_params: models.SearchParams | None,
    fusion: models.FusionQuery | None,
) -> dict[str, Any]:
    """``query_points`` arguments for the store's retrieval mode (dense, sparse or hybrid).

    Hybrid search fuses the dense CDE branch and the sparse branch in Qdrant (RRF unless
    ``fusion`` says otherwise); both branches carry ``query_filter``.
    """
    mode = _MODES[store.retrieval_mode]
    sparse_vector = None
    if mode != "dense":
        v = store.sparse_embeddings.embed_query(query)
        sparse_vector = models.SparseVector(indices=v.indices, values=v.values)
    request = query_kwargs(
        mode=mode,
        fusion="rrf",
        dense=dense,
        sparse_vector=sparse_vector,
        sparse_name=store.sparse_vector_name if mode != "dense" else None,
        limit=limit,
        query_filter=query_filter,
        search_params=search_params,
    )
    if mode == "hybrid" and fusion is not None:
        request["query"] = fusion
    return request

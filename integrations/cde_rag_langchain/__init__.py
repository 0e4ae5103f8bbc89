"""LangChain adapter for cde-rag: ``CDEEmbeddings`` and Qdrant vector-store glue.

Example:
    >>> from cde_rag_langchain import CDEEmbeddings, qdrant_vector_store
    >>> store = qdrant_vector_store(client, "notes")  # doctest: +SKIP
    >>> store.similarity_search("who wrote it?", k=3)  # doctest: +SKIP
"""

from __future__ import annotations

from cde_rag.errors import OptionalDependencyError

try:
    import langchain_core.embeddings  # noqa: F401
    import langchain_qdrant  # noqa: F401
except ImportError as exc:
    msg = f"cde_rag_langchain needs langchain-core and langchain-qdrant ({exc.name} is missing)."
    raise OptionalDependencyError(msg, extra="langchain") from exc

from cde_rag_langchain.embeddings import CDEEmbeddings
from cde_rag_langchain.helpers import create_qdrant_vector_store, qdrant_vector_store
from cde_rag_langchain.sparse import CDESparseEmbeddings
from cde_rag_langchain.vectorstore import CDEQdrantVectorStore

__all__ = [
    "CDEEmbeddings",
    "CDEQdrantVectorStore",
    "CDESparseEmbeddings",
    "create_qdrant_vector_store",
    "qdrant_vector_store",
]

"""LlamaIndex adapter for cde-rag: ``CDEEmbedding`` and Qdrant vector-store glue.

Example:
    >>> from cde_rag_llamaindex import open_qdrant_store
    >>> from llama_index.core import VectorStoreIndex
    >>> store, embed_model = open_qdrant_store(client, "notes")  # doctest: +SKIP
    >>> index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)  # doctest: +SKIP
"""

from __future__ import annotations

from cde_rag.errors import OptionalDependencyError

try:
    import llama_index.core
    import llama_index.vector_stores.qdrant  # noqa: F401
except ImportError as exc:
    msg = (
        "cde_rag_llamaindex needs llama-index-core and llama-index-vector-stores-qdrant "
        f"({exc.name} is missing)."
    )
    raise OptionalDependencyError(msg, extra="llamaindex") from exc

from cde_rag_llamaindex.embedding import CDEEmbedding
from cde_rag_llamaindex.helpers import create_qdrant_store, open_qdrant_store
from cde_rag_llamaindex.nodes import read_nodes
from cde_rag_llamaindex.vector_store import CDEQdrantVectorStore

__all__ = [
    "CDEEmbedding",
    "CDEQdrantVectorStore",
    "create_qdrant_store",
    "open_qdrant_store",
    "read_nodes",
]

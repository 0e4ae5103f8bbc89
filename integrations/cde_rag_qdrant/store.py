"""Public helpers over a Qdrant store that the framework adapters use.

Collection existence and removal (aliases followed) and the lexical encoder of a hybrid
collection; the implementations live in :mod:`cde_rag_qdrant._store`.
"""

from __future__ import annotations

from cde_rag_qdrant._store import drop_collection, exists, read_sparse

__all__ = ["drop_collection", "exists", "read_sparse"]

"""cde-rag on Qdrant: collections that store their corpus context in the collection metadata.

Example:
    >>> from qdrant_client import QdrantClient
    >>> from cde_rag import CDEEncoder
    >>> from cde_rag_qdrant import ContextualCollection
    >>> encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2")  # doctest: +SKIP
    >>> client = QdrantClient(path="./cde_data")  # doctest: +SKIP
    >>> col = ContextualCollection.create(client, "notes", encoder, corpus=docs)  # doctest: +SKIP
    >>> col.add(docs)  # doctest: +SKIP
    >>> col.search("who wrote it?", limit=3)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cde_rag_qdrant.errors import (
    ClientTypeError,
    CollectionConfigError,
    CollectionEmptyError,
    CollectionExistsError,
    CollectionNotFoundError,
    ContextMissingError,
    DuplicateDocumentError,
    QdrantUnavailableError,
    RequestTooLargeError,
    StoreLockedError,
    StoreUnusableError,
    TenantContextMissingError,
)

if TYPE_CHECKING:
    from cde_rag_qdrant._store import connect, read_context, read_record
    from cde_rag_qdrant._upload import UploadOptions
    from cde_rag_qdrant.async_collection import AsyncContextualCollection
    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.documents import Document, DocumentSource
    from cde_rag_qdrant.options import CollectionOptions
    from cde_rag_qdrant.payload import (
        CONTENT_PAYLOAD_KEY,
        FINGERPRINT_PAYLOAD_KEY,
        METADATA_PAYLOAD_KEY,
        build_payload,
        point_id,
    )
    from cde_rag_qdrant.record import METADATA_KEY, ContextRecord
    from cde_rag_qdrant.results import CollectionSummary, DriftReport, SearchHit
    from cde_rag_qdrant.sparse import SparseEncoder
    from cde_rag_qdrant.sync import SyncReport

# qdrant-client and torch load on first use, so the `cde-rag` command starts fast.
_LAZY = {
    "connect": "cde_rag_qdrant._store",
    "read_context": "cde_rag_qdrant._store",
    "read_record": "cde_rag_qdrant._store",
    "ContextualCollection": "cde_rag_qdrant.collection",
    "Document": "cde_rag_qdrant.documents",
    "DocumentSource": "cde_rag_qdrant.documents",
    "SyncReport": "cde_rag_qdrant.sync",
    "AsyncContextualCollection": "cde_rag_qdrant.async_collection",
    "CONTENT_PAYLOAD_KEY": "cde_rag_qdrant.payload",
    "FINGERPRINT_PAYLOAD_KEY": "cde_rag_qdrant.payload",
    "METADATA_PAYLOAD_KEY": "cde_rag_qdrant.payload",
    "build_payload": "cde_rag_qdrant.payload",
    "point_id": "cde_rag_qdrant.payload",
    "METADATA_KEY": "cde_rag_qdrant.record",
    "ContextRecord": "cde_rag_qdrant.record",
    "CollectionSummary": "cde_rag_qdrant.results",
    "DriftReport": "cde_rag_qdrant.results",
    "SearchHit": "cde_rag_qdrant.results",
    "CollectionOptions": "cde_rag_qdrant.options",
    "SparseEncoder": "cde_rag_qdrant.sparse",
    "UploadOptions": "cde_rag_qdrant._upload",
}


def __getattr__(name: str) -> object:
    """Import the qdrant-backed names on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'cde_rag_qdrant' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTENT_PAYLOAD_KEY",
    "FINGERPRINT_PAYLOAD_KEY",
    "METADATA_KEY",
    "METADATA_PAYLOAD_KEY",
    "AsyncContextualCollection",
    "ClientTypeError",
    "CollectionConfigError",
    "CollectionEmptyError",
    "CollectionExistsError",
    "CollectionNotFoundError",
    "CollectionOptions",
    "CollectionSummary",
    "ContextMissingError",
    "ContextRecord",
    "ContextualCollection",
    "Document",
    "DocumentSource",
    "DriftReport",
    "DuplicateDocumentError",
    "QdrantUnavailableError",
    "RequestTooLargeError",
    "SearchHit",
    "SparseEncoder",
    "StoreLockedError",
    "StoreUnusableError",
    "SyncReport",
    "TenantContextMissingError",
    "UploadOptions",
    "build_payload",
    "connect",
    "point_id",
    "read_context",
    "read_record",
]

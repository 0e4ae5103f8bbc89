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

from cde_rag_qdrant._store import connect, read_context, read_record
from cde_rag_qdrant._upload import UploadOptions
from cde_rag_qdrant.collection import ContextualCollection
from cde_rag_qdrant.errors import (
    CollectionConfigError,
    CollectionEmptyError,
    CollectionExistsError,
    CollectionNotFoundError,
    ContextMissingError,
    QdrantUnavailableError,
    RequestTooLargeError,
    StoreLockedError,
    TenantContextMissingError,
)
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

__all__ = [
    "CONTENT_PAYLOAD_KEY",
    "FINGERPRINT_PAYLOAD_KEY",
    "METADATA_KEY",
    "METADATA_PAYLOAD_KEY",
    "CollectionConfigError",
    "CollectionEmptyError",
    "CollectionExistsError",
    "CollectionNotFoundError",
    "CollectionOptions",
    "CollectionSummary",
    "ContextMissingError",
    "ContextRecord",
    "ContextualCollection",
    "DriftReport",
    "QdrantUnavailableError",
    "RequestTooLargeError",
    "SearchHit",
    "SparseEncoder",
    "StoreLockedError",
    "TenantContextMissingError",
    "UploadOptions",
    "build_payload",
    "connect",
    "point_id",
    "read_context",
    "read_record",
]

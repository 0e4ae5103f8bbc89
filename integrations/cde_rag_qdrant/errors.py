"""Qdrant-specific errors; each subclasses a ``cde_rag.errors`` class (and thus a builtin)."""

from __future__ import annotations

from cde_rag.errors import CDERagError, ContextError, InvalidInputError

__all__ = [
    "ClientTypeError",
    "CollectionConfigError",
    "CollectionEmptyError",
    "CollectionExistsError",
    "CollectionNotFoundError",
    "ContextMissingError",
    "DatasetFormatError",
    "QdrantUnavailableError",
    "RequestTooLargeError",
    "StoreLockedError",
    "StoreUnusableError",
    "TenantContextMissingError",
]


class ContextMissingError(ContextError):
    """A collection exists but holds no cde-rag context record (made by another tool)."""


class CollectionNotFoundError(CDERagError, LookupError):
    """No collection or alias of that name exists."""


class CollectionEmptyError(CDERagError, LookupError):
    """A collection holds no documents for an operation that needs some."""


class CollectionConfigError(CDERagError, ValueError):
    """A collection's vector configuration cannot hold this model's vectors."""


class CollectionExistsError(CollectionConfigError):
    """``create`` was asked for a name that already exists; nothing is overwritten."""


class StoreLockedError(CDERagError, RuntimeError):
    """An embedded (local-mode) Qdrant store is already open in another client or process."""


class QdrantUnavailableError(CDERagError, ConnectionError):
    """A Qdrant server could not be reached or answered with an unexpected error."""


class RequestTooLargeError(CDERagError, ValueError):
    """One point is larger than a Qdrant request may be (the server's size limit)."""


class TenantContextMissingError(ContextMissingError):
    """A tenant of a collection has no context of its own yet."""


class DatasetFormatError(InvalidInputError):
    """An evaluation data set (BEIR layout: corpus, queries, qrels) is missing or malformed."""


class ClientTypeError(CDERagError, TypeError):
    """A sync API was given an ``AsyncQdrantClient`` (or the reverse)."""


class StoreUnusableError(CDERagError, OSError):
    """An embedded store path is a file, read-only, or cannot be created."""

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
    "DuplicateDocumentError",
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


class DuplicateDocumentError(InvalidInputError):
    """One sync or ingest got two documents with the same id; nothing was written.

    Attributes:
        document_id: The repeated id.
        first: Where it was first seen (``file:line``, a path, or ``documents[i]``).
        second: Where it was seen again.
    """

    def __init__(self, document_id: str, first: str, second: str) -> None:
        """Name the id and both places."""
        self.document_id, self.first, self.second = document_id, first, second
        super().__init__(
            f"document id {document_id!r} appears twice: {first} and {second}; ids must be "
            "unique in one ingest (give one of them another id, or remove the copy)."
        )

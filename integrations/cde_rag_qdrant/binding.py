"""Binding of a framework adapter to a cde-rag collection, and stale-context detection.

Shared by ``cde_rag_langchain`` and ``cde_rag_llamaindex`` (which never import each other).

A collection name may be an alias. ``cde-rag`` re-contextualizes a collection by writing a new
collection and swapping the alias onto it, so an adapter bound before the swap holds the old
context. The cheap check resolves the alias on every call (one small request) and re-reads the
stored context only when the alias target changed; :func:`stored_fingerprint` always re-reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from qdrant_client import QdrantClient

from cde_rag import CorpusContext
from cde_rag.errors import ContextMismatchError
from cde_rag_qdrant._store import alias_target, collection_info, read_record
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.tenants import tenant_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionBinding:
    """Where a bound context came from.

    Attributes:
        client: The Qdrant client it was read with.
        collection_name: The name (or alias) given by the user.
        target: The physical collection the name resolved to when bound.
        fingerprint: Fingerprint of the context stored there when bound.
        query_prefix: Prefix the collection's queries are embedded with (from its record).
        document_prefix: Prefix its documents are embedded with (from its record).
        tenant: The tenant whose context is bound (its own record), or None.
    """

    client: QdrantClient
    collection_name: str
    target: str
    fingerprint: str
    query_prefix: str
    document_prefix: str
    tenant: str | None = None


def resolve_target(client: QdrantClient, name: str) -> str:
    """The collection an alias points to, or ``name`` itself when it is not an alias."""
    return alias_target(client, name) or name


def _record(client: QdrantClient, collection_name: str, tenant: str | None) -> ContextRecord:
    if tenant is None:
        return read_record(client, collection_name)
    metadata = collection_info(client, collection_name).config.metadata
    return tenant_record(metadata, collection_name, tenant)


def bind(
    client: QdrantClient, collection_name: str, tenant: str | None = None
) -> tuple[CorpusContext, CollectionBinding]:
    """Read the stored context of ``collection_name`` and remember where it came from.

    Like ``ContextualCollection``, the adapters embed with the prefixes the record stores.

    Args:
        client: The Qdrant client.
        collection_name: Collection or alias.
        tenant: Bind this tenant's own context instead of the collection's.

    Raises:
        CollectionNotFoundError: No such collection or alias.
        ContextMissingError: The collection has no cde-rag context record.
        TenantContextMissingError: ``tenant`` has no context.
        ContextCorruptError: The stored record does not decode or validate.
    """
    target = resolve_target(client, collection_name)
    record = _record(client, collection_name, tenant)
    context = record.to_context(collection_name)
    binding = CollectionBinding(
        client,
        collection_name,
        target,
        context.fingerprint,
        record.query_prefix,
        record.document_prefix,
        tenant,
    )
    logger.info(
        "bound context %s of collection %r (-> %r)",
        context.fingerprint[:12],
        collection_name,
        target,
    )
    return context, binding


def stored_fingerprint(binding: CollectionBinding, *, full: bool) -> str:
    """Fingerprint of the context the collection holds now.

    Args:
        binding: The binding to check.
        full: Always re-read the stored record. Otherwise re-read it only when the alias
            target changed since binding (the cheap check).
    """
    if not full and resolve_target(binding.client, binding.collection_name) == binding.target:
        return binding.fingerprint
    return _record(binding.client, binding.collection_name, binding.tenant).fingerprint


def stale_error(binding: CollectionBinding, now: str, fix: str) -> ContextMismatchError:
    """The error raised when a bound context no longer matches its collection.

    Args:
        binding: The stale binding.
        now: Fingerprint the collection holds now.
        fix: What to do, e.g. "call .rebind()".
    """
    msg = (
        f"collection {binding.collection_name!r} now holds context {now[:12]}…, but this was "
        f"bound to {binding.fingerprint[:12]}… (the collection was re-contextualized or "
        f"replaced after binding). Vectors under different contexts are not comparable: {fix}."
    )
    return ContextMismatchError(msg)


def choose_context(
    given: CorpusContext | None, held: CorpusContext | None, holder: str
) -> CorpusContext | None:
    """The context to create a collection with: ``given``, else the one an adapter ``held``.

    Raises:
        ContextMismatchError: Both are set and differ.
    """
    if given is not None and held is not None and held != given:
        msg = (
            f"context {given.fingerprint[:12]}… differs from the one held by the {holder} "
            f"({held.fingerprint[:12]}…); pass one of them."
        )
        raise ContextMismatchError(msg)
    return given if given is not None else held

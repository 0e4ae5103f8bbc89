"""The binding core every consumer of a cde-rag collection shares.

A :class:`BoundContext` is the context a consumer embeds with, and, when it was read from a
collection, where it came from (client, name, alias target, record) and what to do when the
collection moves on (the stale policy). The LangChain and LlamaIndex adapters keep only host
glue around it; :class:`cde_rag_qdrant.embedder.ContextEmbedder` is their shared
embedding engine.

Stale contexts. A collection name is an alias; ``recontextualize`` builds a new physical
collection and moves the alias. Detection costs no extra request on the common query path:
searches filter by the bound fingerprint (:meth:`BoundContext.scoped`), so a search under a
replaced context finds none of the new points and comes back short; only then
(:meth:`BoundContext.after_search`) is the alias resolved, and the record re-read when it
moved. A full result proves that the collection still holds points of the bound context, and
those are exactly the points the query vector may be compared with. Writes always re-read the
record first (:meth:`BoundContext.before_write`), so no point is ever written under a context
the collection no longer holds.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal, cast

from qdrant_client import AsyncQdrantClient, QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, ContextNotSetError, InvalidInputError
from cde_rag_qdrant import _astore
from cde_rag_qdrant._store import alias_target, collection_info
from cde_rag_qdrant.payload import fingerprint_condition
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.tenants import tenant_condition, tenant_record, tenant_stamp

logger = logging.getLogger(__name__)

StalePolicy = Literal["raise", "rebind"]
STALE_POLICIES = ("raise", "rebind")


class BoundContext:
    """A corpus context, optionally tied to the collection it was read from.

    Shared by reference: a store and the embeddings it pairs with hold the same object, so a
    rebind is seen by both at once.

    Attributes:
        context: The bound context.
        record: The collection's record (None for a free-standing context).
        client: Sync or async Qdrant client (None for a free-standing context).
        collection_name: The name (or alias) given by the user.
        target: The physical collection the name resolved to when bound.
        on_stale: ``"raise"`` or ``"rebind"`` when the collection holds another context now.
        tenant: The tenant whose own context is bound (its points only), or None.
    """

    def __init__(
        self,
        context: CorpusContext,
        record: ContextRecord | None = None,
        *,
        client: QdrantClient | AsyncQdrantClient | None = None,
        collection_name: str | None = None,
        target: str | None = None,
        on_stale: StalePolicy = "raise",
        tenant: str | None = None,
    ) -> None:
        """Bind ``context``; pass ``record``, ``client`` and names for a collection binding."""
        if on_stale not in STALE_POLICIES:
            msg = f"on_stale={on_stale!r}; expected 'raise' or 'rebind'."
            raise InvalidInputError(msg)
        self.context = context
        self.record = record
        self.client = client
        self.collection_name = collection_name
        self.target = target
        self.on_stale: StalePolicy = on_stale
        self.tenant = tenant
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        """Short description."""
        where = f" of {self.collection_name!r}" if self.collection_name else ""
        return f"BoundContext({self.fingerprint[:12]}…{where})"

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the bound context."""
        return self.context.fingerprint

    @property
    def from_collection(self) -> bool:
        """Whether the context was read from a collection (and is checked against it)."""
        return self.client is not None and self.collection_name is not None

    def prefixes(self, encoder: CDEEncoder) -> tuple[str, str]:
        """``(query_prefix, document_prefix)``: the record's, else the encoder's."""
        if self.record is not None:
            return self.record.query_prefix, self.record.document_prefix
        return encoder.query_prefix, encoder.document_prefix

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        client: QdrantClient,
        collection_name: str,
        *,
        on_stale: StalePolicy = "raise",
        tenant: str | None = None,
    ) -> BoundContext:
        """Read and validate the stored context of ``collection_name`` (or of its ``tenant``).

        Raises:
            CollectionNotFoundError: No such collection or alias.
            ContextMissingError: The collection has no cde-rag context record.
            TenantContextMissingError: ``tenant`` has no context of its own.
            ContextCorruptError: The stored record does not decode or validate.
        """
        if isinstance(cast(object, client), AsyncQdrantClient):
            msg = "BoundContext.open needs a QdrantClient; use `await BoundContext.aopen(...)`."
            raise InvalidInputError(msg)
        target = alias_target(client, collection_name) or collection_name
        record = _record(collection_info(client, collection_name), collection_name, tenant)
        return cls._bind(record, client, collection_name, target, on_stale, tenant)

    @classmethod
    async def aopen(
        cls,
        client: AsyncQdrantClient,
        collection_name: str,
        *,
        on_stale: StalePolicy = "raise",
        tenant: str | None = None,
    ) -> BoundContext:
        """:meth:`open` with an ``AsyncQdrantClient``."""
        target = await _astore.alias_target(client, collection_name) or collection_name
        info = await _astore.collection_info(client, collection_name)
        record = _record(info, collection_name, tenant)
        return cls._bind(record, client, collection_name, target, on_stale, tenant)

    @classmethod
    def _bind(
        cls,
        record: ContextRecord,
        client: QdrantClient | AsyncQdrantClient,
        collection_name: str,
        target: str,
        on_stale: StalePolicy,
        tenant: str | None,
    ) -> BoundContext:
        """The binding of a validated ``record`` (decoded here, bit for bit)."""
        bound = cls(
            record.to_context(collection_name),
            record,
            client=client,
            collection_name=collection_name,
            target=target,
            on_stale=on_stale,
            tenant=tenant,
        )
        logger.info(
            "bound context %s of %r (-> %r)", bound.fingerprint[:12], collection_name, target
        )
        return bound

    # -- filters -------------------------------------------------------------------------

    def scoped(self, query_filter: models.Filter | None = None) -> models.Filter:
        """``query_filter`` AND "made with this context" (AND "of this tenant", if any)."""
        must: list[models.Condition] = [fingerprint_condition(self.fingerprint)]
        if self.tenant is not None:
            must.append(tenant_condition(self.tenant))
        if query_filter is not None:
            must.append(query_filter)
        return models.Filter(must=must)

    def tenant_filter(self) -> models.Filter:
        """Every point this binding may delete: all, or its tenant's."""
        return models.Filter(must=None if self.tenant is None else [tenant_condition(self.tenant)])

    def stamp(self) -> dict[str, str]:
        """Payload entries every point written through this binding carries (its tenant)."""
        return tenant_stamp(self.tenant)

    # -- stale checks --------------------------------------------------------------------

    def _apply(self, record: ContextRecord, target: str, fix: str) -> bool:
        """Adopt ``record`` if it holds another context (policy permitting); True if moved."""
        with self._lock:
            if record.fingerprint == self.fingerprint:
                self.target = target
                return False
            if self.on_stale == "raise":  # target kept: every later call raises too
                raise self.stale_error(record.fingerprint, fix)
            self.target = target
            old = self.fingerprint
            self.context = record.to_context(str(self.collection_name))
            self.record = record
            logger.warning(
                "collection %r now holds context %s (was %s): rebinding",
                self.collection_name,
                record.fingerprint[:12],
                old[:12],
            )
            return True

    def verify(self, *, full: bool, fix: str = "reopen it") -> bool:
        """Check that the collection still holds the bound context.

        Args:
            full: Re-read the record. Otherwise only resolve the alias, and re-read the record
                when its target moved.
            fix: What to do, named in the error.

        Returns:
            True when the context was rebound (``on_stale="rebind"``): redo the work.

        Raises:
            ContextMismatchError: The collection holds another context (``on_stale="raise"``).
        """
        client, name = self.client, self.collection_name
        if client is None or name is None:
            return False
        if isinstance(client, AsyncQdrantClient):
            msg = "this binding uses an AsyncQdrantClient; use the async methods."
            raise InvalidInputError(msg)
        target = alias_target(client, name) or name
        if not full and target == self.target and self.tenant is None:
            return False
        record = _record(collection_info(client, name), name, self.tenant)
        return self._apply(record, target, fix)

    async def averify(self, *, full: bool, fix: str = "reopen it") -> bool:
        """:meth:`verify` for an ``AsyncQdrantClient`` binding (a sync one works too)."""
        client, name = self.client, self.collection_name
        if client is None or name is None:
            return False
        if not isinstance(client, AsyncQdrantClient):
            return self.verify(full=full, fix=fix)
        target = await _astore.alias_target(client, name) or name
        if not full and target == self.target and self.tenant is None:
            return False
        info = await _astore.collection_info(client, name)
        return self._apply(_record(info, name, self.tenant), target, fix)

    def before_write(self, fix: str = "reopen it") -> None:
        """Full check before writing points stamped with this fingerprint.

        A rebind (``on_stale="rebind"``) is fine here: the caller embeds after this returns.
        """
        self.verify(full=True, fix=fix)

    def after_search(self, n_hits: int, limit: int, fix: str = "reopen it") -> bool:
        """Stale check from a search result: only a short result costs a request.

        Returns:
            True when the context was rebound: embed the query again and repeat the search.
        """
        if n_hits >= limit:
            return False
        return self.verify(full=False, fix=fix)

    async def aafter_search(self, n_hits: int, limit: int, fix: str = "reopen it") -> bool:
        """:meth:`after_search` for async clients."""
        if n_hits >= limit:
            return False
        return await self.averify(full=False, fix=fix)

    def stale_error(self, now: str, fix: str) -> ContextMismatchError:
        """The error raised when the collection no longer holds the bound context."""
        msg = (
            f"collection {self.collection_name!r} now holds context {now[:12]}…, but this was "
            f"bound to {self.fingerprint[:12]}… (the collection was re-contextualized or "
            f"replaced after binding). Vectors under different contexts are not comparable: "
            f"{fix} (or pass on_stale='rebind')."
        )
        return ContextMismatchError(msg)


def _record(info: models.CollectionInfo, name: str, tenant: str | None) -> ContextRecord:
    """The collection's record, or ``tenant``'s own (a tenant recontextualizes in place)."""
    if tenant is None:
        return ContextRecord.from_metadata(info.config.metadata, name)
    return tenant_record(info.config.metadata, name, tenant)


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


def require_same(held: BoundContext | None, stored: BoundContext, what: str, fix: str) -> None:
    """Refuse a consumer (``what``) whose bound context is not the collection's.

    Raises:
        ContextNotSetError: ``held`` is None.
        ContextMismatchError: Another context.
    """
    name = stored.collection_name
    if held is None:
        msg = f"the {what} has no context; collection {name!r} needs its own. {fix}."
        raise ContextNotSetError(msg)
    if held.fingerprint != stored.fingerprint:
        msg = (
            f"the {what} is bound to context {held.fingerprint[:12]}…, but collection {name!r} "
            f"stores context {stored.fingerprint[:12]}…. Vectors under different contexts are "
            f"not comparable: {fix}."
        )
        raise ContextMismatchError(msg)


__all__ = [
    "STALE_POLICIES",
    "BoundContext",
    "StalePolicy",
    "choose_context",
    "require_same",
]

"""Tenants of one collection, each with its own corpus context.

Layout (all in the collection metadata, next to the single-context ``cde_rag`` record, which
stays as it is, so single-context collections read unchanged):

- ``cde_rag_tenants``: ``{"format": "cde-rag-tenants", "version": 1, "payload_key": "tenant"}``
  marks a collection with tenants;
- ``cde_rag_tenant:{tenant}``: that tenant's context record (a ``cde_rag`` record, version 1);
- ``cde_rag_tenant_next:{tenant}``: a context being rolled out by a tenant's recontextualize
  (so a rerun after a crash finishes the same rollout instead of starting another).

Each tenant has its own top-level key because Qdrant merges metadata updates key by key:
writers registering different tenants never overwrite each other. Every point of a tenant
carries ``tenant`` in its payload (a keyword index with ``is_tenant=True`` on servers, so
Qdrant stores each tenant's points together), and every tenant search filters on the tenant
AND the tenant's context fingerprint, so vectors of different tenants are never compared.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag.sampling import SamplingStrategy
from cde_rag_qdrant import _store
from cde_rag_qdrant._pipeline import embed_and_upsert, restamped_batches
from cde_rag_qdrant._qdrant_internals import is_local
from cde_rag_qdrant._upload import UploadOptions
from cde_rag_qdrant.errors import (
    CollectionEmptyError,
    CollectionExistsError,
    TenantContextMissingError,
)
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.sparse import SparseEncoder

logger = logging.getLogger(__name__)

TENANT_PAYLOAD_KEY = "tenant"
"""Payload key holding a point's tenant."""
TENANTS_METADATA_KEY = "cde_rag_tenants"
TENANTS_FORMAT = "cde-rag-tenants"
TENANTS_VERSION = 1
_RECORD_PREFIX = "cde_rag_tenant:"
_NEXT_PREFIX = "cde_rag_tenant_next:"
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_TENANT_NAMESPACE = uuid.UUID("0b7c9a52-4f3e-4d7a-9e1d-5c2a1f0cde02")


def check_tenant(tenant: object) -> str:
    """Validate a tenant name: 1 to 128 printable characters.

    Raises:
        InvalidInputError: Anything else.
    """
    if not isinstance(tenant, str) or not tenant.strip() or not _NAME.match(tenant):
        msg = f"tenant={tenant!r}; expected a non-blank str of 1 to 128 printable characters."
        raise InvalidInputError(msg)
    return tenant


def tenant_point_id(tenant: str, point: str) -> str:
    """Point id of a tenant's point (tenants may reuse ids and texts without colliding)."""
    return str(uuid.uuid5(_TENANT_NAMESPACE, f"{tenant}\x00{point}"))


def tenant_condition(tenant: str) -> models.FieldCondition:
    """Filter condition matching the points of ``tenant``."""
    return models.FieldCondition(key=TENANT_PAYLOAD_KEY, match=models.MatchValue(value=tenant))


def tenant_stamp(tenant: str | None) -> dict[str, str]:
    """Payload entries marking a point as ``tenant``'s (none without a tenant)."""
    return {} if tenant is None else {TENANT_PAYLOAD_KEY: tenant}


def untenanted_condition() -> models.IsEmptyCondition:
    """Filter condition matching points that belong to no tenant."""
    return models.IsEmptyCondition(is_empty=models.PayloadField(key=TENANT_PAYLOAD_KEY))


def read_scope(tenant: str | None, has_tenants: bool) -> list[models.Condition]:
    """Conditions a view's reads add: its tenant's points, or the points of no tenant."""
    if tenant is not None:
        return [tenant_condition(tenant)]
    return [untenanted_condition()] if has_tenants else []


def has_tenants(metadata: Mapping[str, Any] | None) -> bool:
    """Whether a collection's metadata marks it as having tenants."""
    return TENANTS_METADATA_KEY in (metadata or {})


def list_tenants(metadata: Mapping[str, Any] | None) -> list[str]:
    """Tenants with a context, sorted."""
    return sorted(
        k[len(_RECORD_PREFIX) :] for k in (metadata or {}) if k.startswith(_RECORD_PREFIX)
    )


def tenant_record(
    metadata: Mapping[str, Any] | None, collection_name: str, tenant: str
) -> ContextRecord:
    """The validated context record of ``tenant``.

    Raises:
        TenantContextMissingError: The tenant has no context in this collection.
        ContextCorruptError: Its record is invalid.
    """
    raw = (metadata or {}).get(_RECORD_PREFIX + check_tenant(tenant))
    if raw is None:
        known = ", ".join(repr(t) for t in list_tenants(metadata)) or "none"
        msg = (
            f"tenant {tenant!r} has no context in collection {collection_name!r} (tenants "
            f"with one: {known}). Give it one from its documents: "
            f"ContextualCollection.open(client, name, encoder).add_tenant({tenant!r}, "
            f"corpus=docs), or `cde-rag ingest PATH --collection {collection_name} "
            f"--tenant {tenant}`."
        )
        raise TenantContextMissingError(msg)
    where = f"{collection_name}[tenant {tenant}]"
    return ContextRecord.from_metadata({"cde_rag": raw}, where)


def delete_selector(
    tenant: str | None,
    has_tenants: bool,
    *,
    ids: list[models.ExtendedPointId] | None = None,
    query_filter: models.Filter | None = None,
) -> models.PointsSelector:
    """What a delete by ``ids`` (your ids or returned point ids) or filter may touch.

    A tenant deletes only its own points; without a tenant, a collection with tenants deletes
    only points of no tenant.
    """
    scope: list[models.Condition] = []
    if tenant is not None:
        scope.append(tenant_condition(tenant))
        if ids is not None:
            ids = ids + [tenant_point_id(tenant, str(p)) for p in ids]
    elif has_tenants:
        scope.append(untenanted_condition())
    if not scope:
        if ids is not None:
            return models.PointIdsList(points=ids)
        return models.FilterSelector(filter=query_filter or models.Filter())
    last: models.Condition = (
        models.HasIdCondition(has_id=ids) if ids is not None else query_filter or models.Filter()
    )
    return models.FilterSelector(filter=models.Filter(must=[*scope, last]))


def check_current(
    client: QdrantClient, name: str, tenant: str, fingerprint: str, note: str = ""
) -> None:
    """After an empty search: refuse a tenant context replaced since it was opened.

    Raises:
        ContextMismatchError: The tenant's stored context is no longer ``fingerprint``.
    """
    now = tenant_record(_store.collection_info(client, name).config.metadata, name, tenant)
    if now.fingerprint != fingerprint:
        msg = (
            f"tenant {tenant!r} of {name!r} now has context {now.fingerprint[:12]}… but this "
            f"object was opened with {fingerprint[:12]}…;{note} reopen it with "
            "ContextualCollection.open(..., tenant=...)."
        )
        raise ContextMismatchError(msg)


def require_current(client: QdrantClient, name: str, tenant: str, fingerprint: str) -> None:
    """Before a write: refuse when ``tenant``'s stored context is no longer ``fingerprint``.

    Raises:
        ContextMismatchError: The tenant was re-contextualized since it was opened.
    """
    note = " its points would never be searched. Nothing was written:"
    check_current(client, name, tenant, fingerprint, note)


def _record_meta(key: str, record: ContextRecord) -> dict[str, Any]:
    return {key: record.to_metadata()["cde_rag"]}


def store_tenant(client: QdrantClient, name: str, tenant: str, record: ContextRecord) -> None:
    """Register ``tenant`` with ``record`` (and the tenant index on servers).

    Raises:
        CollectionExistsError: The tenant already has a context (nothing is overwritten).
    """
    info = _store.collection_info(client, name)
    if _RECORD_PREFIX + tenant in (info.config.metadata or {}):
        msg = (
            f"tenant {tenant!r} of collection {name!r} already has a context; it is never "
            "overwritten. Open it with ContextualCollection.open(..., tenant=...), or rebuild "
            f"it with `cde-rag recontextualize --collection {name} --tenant {tenant}`."
        )
        raise CollectionExistsError(msg)
    marker = {"format": TENANTS_FORMAT, "version": TENANTS_VERSION, "payload_key": "tenant"}
    with _store.qdrant_errors(client, f"update collection {name!r}"):
        if not is_local(client) and not has_tenants(info.config.metadata):
            client.create_payload_index(
                name,
                field_name=TENANT_PAYLOAD_KEY,
                field_schema=models.KeywordIndexParams(
                    type=models.KeywordIndexType.KEYWORD, is_tenant=True
                ),
                wait=True,
            )
        client.update_collection(
            name,
            metadata={
                TENANTS_METADATA_KEY: marker,
                **_record_meta(_RECORD_PREFIX + tenant, record),
            },
        )
    logger.info("tenant %s of %s has context %s", tenant, name, record.fingerprint[:12])


def _tenant_points(
    client: QdrantClient, name: str, tenant: str, page_size: int = 256
) -> Iterator[models.Record]:
    flt = models.Filter(must=[tenant_condition(tenant)])
    return _store.iter_points(client, name, scroll_filter=flt, page_size=page_size)


def recontextualize_tenant(
    client: QdrantClient,
    name: str,
    encoder: CDEEncoder,
    tenant: str,
    *,
    sparse: SparseEncoder | None,
    size: int | None = None,
    seed: int = 0,
    strategy: SamplingStrategy = "uniform",
    batch_size: int = 64,
    upload: UploadOptions | None = None,
    show_progress_bar: bool | None = None,
) -> tuple[ContextRecord, CorpusContext]:
    """Build a new context for ``tenant`` from its texts and re-embed only its points, in place.

    The new record is noted first (``cde_rag_tenant_next:``), then the tenant's points are
    overwritten with vectors under the new context (same ids), then the record is switched.
    A rerun after a crash resumes the noted context and skips points already re-embedded.
    Other tenants' points are neither read nor written. While it runs, the tenant's searches
    see only points not yet re-embedded: pause its writers and readers.

    Returns:
        The tenant's new record (as stored) and context.

    Raises:
        TenantContextMissingError: The tenant has no context.
        CollectionEmptyError: The tenant has no texts.
    """
    info = _store.collection_info(client, name)
    metadata = info.config.metadata or {}
    old = tenant_record(metadata, name, tenant)
    pending_raw = metadata.get(_NEXT_PREFIX + tenant)
    pending = (
        ContextRecord.from_metadata({"cde_rag": pending_raw}, f"{name}[tenant {tenant}, next]")
        if isinstance(pending_raw, Mapping) and pending_raw
        else None
    )
    if pending is not None:
        context = pending.to_context(name)
        logger.warning("resuming the interrupted recontextualize of tenant %s", tenant)
    else:
        texts = [
            t for t in (_store.point_text(p) for p in _tenant_points(client, name, tenant)) if t
        ]
        if not texts:
            msg = f"tenant {tenant!r} of {name!r} holds no texts to build a context from."
            raise CollectionEmptyError(msg)
        context = encoder.build_context(
            texts, size=size, seed=seed, strategy=strategy, show_progress_bar=show_progress_bar
        )
        pending = ContextRecord.from_context(context, encoder, generation=old.generation + 1)
        with _store.qdrant_errors(client, f"update collection {name!r}"):
            client.update_collection(name, metadata=_record_meta(_NEXT_PREFIX + tenant, pending))

    points = _tenant_points(client, name, tenant, page_size=batch_size)
    batches = restamped_batches(points, context.fingerprint, batch_size, skip_stamped=True)

    written = embed_and_upsert(
        client,
        name,
        encoder,
        context,
        batches,
        document_prefix=pending.document_prefix,
        batch_size=batch_size,
        total=None,
        show_progress_bar=show_progress_bar,
        desc=f"Re-embed {tenant}",
        sparse=sparse,
        upload=upload,
    )
    with _store.qdrant_errors(client, f"update collection {name!r}"):
        client.update_collection(
            name,
            metadata={**_record_meta(_RECORD_PREFIX + tenant, pending), _NEXT_PREFIX + tenant: {}},
        )
    logger.info(
        "tenant %s of %s: %d points re-embedded with context %s",
        tenant,
        name,
        written,
        context.fingerprint[:12],
    )
    return pending, context

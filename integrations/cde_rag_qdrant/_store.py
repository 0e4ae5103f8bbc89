"""Thin helpers over qdrant-client: connecting, resolving aliases, checking vector configs.

Every Qdrant failure that a user can act on is translated here into a typed error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import cast

from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from cde_rag import CorpusContext
from cde_rag.errors import ContextMismatchError
from cde_rag_qdrant._qdrant_internals import describe as describe  # re-exported
from cde_rag_qdrant._qdrant_internals import is_local, open_local
from cde_rag_qdrant.errors import (
    ClientTypeError,
    CollectionConfigError,
    CollectionExistsError,
    CollectionNotFoundError,
    QdrantUnavailableError,
)
from cde_rag_qdrant.options import CollectionOptions, options_of
from cde_rag_qdrant.payload import (
    CONTENT_PAYLOAD_KEY,
    FINGERPRINT_PAYLOAD_KEY,
    fingerprint_condition,
)
from cde_rag_qdrant.record import METADATA_KEY, ContextRecord
from cde_rag_qdrant.results import CollectionSummary
from cde_rag_qdrant.sparse import SparseEncoder

logger = logging.getLogger(__name__)

GENERATION_SEPARATOR = "__cde_g"
"""Physical collections are named ``{name}__cde_g{generation}``; ``name`` is an alias."""


def physical_name(name: str, generation: int) -> str:
    """Name of the physical collection behind alias ``name`` at ``generation``."""
    return f"{name}{GENERATION_SEPARATOR}{generation}"


def connect(
    path: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    location: str | None = None,
    timeout: int | None = None,
) -> QdrantClient:
    """Open a Qdrant client: an embedded store (``path``), ``:memory:``, or a server ``url``.

    Local mode allows one client per store folder. A second client (in this or another
    process) gets :class:`StoreLockedError` instead of qdrant-client's bare RuntimeError.

    Args:
        path: Folder of an embedded (local-mode) store; created when missing.
        url: Server URL such as ``http://localhost:6333``.
        api_key: Server API key.
        location: ``":memory:"`` for a throw-away in-process store.
        timeout: Server request timeout in seconds.

    Returns:
        The client. Close it with ``client.close()`` to release an embedded store.

    Raises:
        StoreLockedError: The embedded store is open in another client or process.
        StoreUnusableError: ``path`` is a file, read-only, or cannot be created.
        ValueError: More than one of ``path``, ``url``, ``location`` given, or none.
    """
    given = [x is not None for x in (path, url, location)]
    if sum(given) != 1:
        msg = (
            "pass exactly one of path= (embedded store), url= (server) or "
            f"location=':memory:'; got path={path!r}, url={url!r}, location={location!r}."
        )
        raise ValueError(msg)
    if path is not None:
        return open_local(os.fspath(path))
    if location is not None:
        return QdrantClient(location=location)
    return QdrantClient(url=url, api_key=api_key, timeout=timeout)


@contextmanager
def qdrant_errors(client: QdrantClient, action: str) -> Iterator[None]:
    """Translate transport failures of a server call into :class:`QdrantUnavailableError`."""
    try:
        yield
    except ResponseHandlingException as exc:
        msg = (
            f"could not {action}: {describe(client)} did not answer ({exc.source!r}). Check "
            "that the server runs (docker compose up -d), the URL and the API key."
        )
        raise QdrantUnavailableError(msg) from exc
    except UnexpectedResponse as exc:
        if exc.status_code in (401, 403):
            msg = (
                f"could not {action}: {describe(client)} refused the request "
                f"(HTTP {exc.status_code}); pass the right API key (--api-key or "
                "QDRANT_API_KEY)."
            )
            raise QdrantUnavailableError(msg) from exc
        raise


def exists(client: QdrantClient, name: str) -> bool:
    """Whether a collection or alias called ``name`` exists.

    Raises:
        ClientTypeError: ``client`` is an ``AsyncQdrantClient`` (its calls return coroutines).
    """
    if isinstance(cast(object, client), AsyncQdrantClient):
        msg = (
            "got an AsyncQdrantClient where a QdrantClient is needed. Use "
            "cde_rag_qdrant.AsyncContextualCollection (await AsyncContextualCollection.open("
            "client, name, encoder)), or pass a QdrantClient."
        )
        raise ClientTypeError(msg)
    with qdrant_errors(client, f"check collection {name!r}"):
        return bool(client.collection_exists(name))


def alias_target(client: QdrantClient, name: str) -> str | None:
    """The collection that alias ``name`` points to, or None when ``name`` is no alias."""
    with qdrant_errors(client, "list aliases"):
        aliases = client.get_aliases().aliases
    return next((a.collection_name for a in aliases if a.alias_name == name), None)


def aliases_of(client: QdrantClient, collection: str) -> list[str]:
    """Aliases pointing at ``collection``."""
    with qdrant_errors(client, "list aliases"):
        aliases = client.get_aliases().aliases
    return [a.alias_name for a in aliases if a.collection_name == collection]


def collection_info(client: QdrantClient, name: str) -> models.CollectionInfo:
    """``get_collection`` (follows aliases).

    Raises:
        CollectionNotFoundError: No collection or alias called ``name``.
    """
    if not exists(client, name):
        msg = (
            f"no collection or alias {name!r} in {describe(client)}. Create it with "
            "ContextualCollection.create(client, name, encoder, corpus=...) or "
            f"`cde-rag ingest PATH --collection {name}`."
        )
        raise CollectionNotFoundError(msg)
    with qdrant_errors(client, f"read collection {name!r}"):
        return client.get_collection(name)


def check_vectors(info: models.CollectionInfo, name: str, dim: int) -> None:
    """Refuse a collection whose default vector is not ``dim``-wide cosine.

    Named sparse vectors beside the unnamed dense one (hybrid collections, also LangChain's
    and LlamaIndex's hybrid layouts) are accepted.

    Raises:
        CollectionConfigError: Named dense vectors only, wrong size or wrong distance.
    """
    vectors = info.config.params.vectors
    if isinstance(vectors, dict):
        if "" not in vectors:
            found = ", ".join(repr(k) for k in vectors) or "none"
            msg = (
                f"collection {name!r} has named vectors ({found}) but no unnamed dense default "
                "vector; cde-rag (like LangChain's and LlamaIndex's Qdrant stores) uses the "
                f"unnamed vector with size {dim} and cosine distance (sparse vectors may sit "
                "beside it). Use another collection name."
            )
            raise CollectionConfigError(msg)
        vectors = vectors[""]
    if vectors is None:
        msg = f"collection {name!r} has no dense vector config; use another collection name."
        raise CollectionConfigError(msg)
    if vectors.size != dim:
        msg = (
            f"collection {name!r} stores {vectors.size}-dimensional vectors but this model "
            f"makes {dim}-dimensional ones. Use the model the collection was built with, or "
            "another collection name."
        )
        raise CollectionConfigError(msg)
    if vectors.distance != models.Distance.COSINE:
        msg = (
            f"collection {name!r} uses {vectors.distance.value} distance; cde-rag vectors are "
            "compared by cosine. Use another collection name."
        )
        raise CollectionConfigError(msg)


def vector_params(dim: int) -> models.VectorParams:
    """The unnamed default vector config for a ``dim``-wide model."""
    return models.VectorParams(size=dim, distance=models.Distance.COSINE)


def create_physical(
    client: QdrantClient,
    target: str,
    dim: int,
    record: ContextRecord,
    options: CollectionOptions | None = None,
    *,
    extra_metadata: Mapping[str, str] | None = None,
) -> None:
    """Create a physical collection holding ``record`` (plus a fingerprint index on servers).

    ``options`` (quantization, on-disk, HNSW, shards, hybrid) are applied and recorded;
    ``extra_metadata`` is stored next to them.
    """
    opts = options or CollectionOptions()
    metadata = {**record.to_metadata(), **opts.to_metadata(), **(extra_metadata or {})}
    with qdrant_errors(client, f"create collection {target!r}"):
        client.create_collection(target, **opts.create_kwargs(dim), metadata=metadata)
        if not is_local(client):
            client.create_payload_index(
                target,
                field_name=FINGERPRINT_PAYLOAD_KEY,
                field_schema=models.PayloadSchemaType.KEYWORD,
                wait=True,
            )


def drop_unpublished(client: QdrantClient, target: str) -> None:
    """Remove ``target`` if an interrupted create/recontextualize left it with no alias.

    Raises:
        CollectionExistsError: ``target`` exists and is published under an alias.
    """
    with qdrant_errors(client, "list collections"):
        names = {c.name for c in client.get_collections().collections}
    if target in names:
        aliases = aliases_of(client, target)
        if aliases:
            msg = (
                f"collection {target!r} exists and is published as {aliases}; refusing to "
                "replace it. Delete it yourself if it is no longer needed."
            )
            raise CollectionExistsError(msg)
        logger.warning("removing %s, left unpublished by an interrupted build", target)
        with qdrant_errors(client, f"delete collection {target!r}"):
            client.delete_collection(target)


def drop_collection(client: QdrantClient, name: str) -> None:
    """Delete alias ``name`` and the collection behind it (or collection ``name``)."""
    target = alias_target(client, name)
    with qdrant_errors(client, f"delete collection {name!r}"):
        if target is None:
            client.delete_collection(name)
            return
        client.update_collection_aliases(
            change_aliases_operations=[
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name))
            ]
        )
        client.delete_collection(target)


def read_record(client: QdrantClient, collection_name: str) -> ContextRecord:
    """The validated context record of a collection (tensor not decoded).

    Raises:
        CollectionNotFoundError: No such collection or alias.
        ContextMissingError: No record.
        ContextCorruptError: Invalid record.
    """
    info = collection_info(client, collection_name)
    return ContextRecord.from_metadata(info.config.metadata, collection_name)


def read_context(client: QdrantClient, collection_name: str) -> CorpusContext:
    """Decode and validate the context stored in a collection (follows aliases).

    Args:
        client: Any QdrantClient.
        collection_name: Collection or alias name.

    Returns:
        The stored context, bit-exact (fingerprint verified).

    Raises:
        CollectionNotFoundError: No such collection or alias.
        ContextMissingError: The collection has no context record.
        ContextCorruptError: The record was modified, truncated or is unreadable.
    """
    return read_record(client, collection_name).to_context(collection_name)


def summarize(
    client: QdrantClient,
    name: str,
    record: ContextRecord | None = None,
    *,
    scope: Sequence[models.Condition] = (),
    tenant: str | None = None,
    tenants: Sequence[str] = (),
) -> CollectionSummary:
    """Counts, vector width, options and context provenance of a collection (no model needed).

    Args:
        client: Any QdrantClient.
        name: Collection or alias.
        record: The context record to report (default: the collection's own).
        scope: Extra conditions on the counted points (a tenant's, or the untenanted ones).
        tenant: The tenant reported on, if any.
        tenants: The collection's tenants.

    Raises:
        CollectionNotFoundError: No such collection or alias.
        ContextMissingError: No record.
        ContextCorruptError: Invalid record.
    """
    from cde_rag_qdrant.orphans import find_orphans  # imports this module

    info = collection_info(client, name)
    record = record or ContextRecord.from_metadata(info.config.metadata, name)
    sparse = SparseEncoder.from_metadata(info.config.metadata, name)
    only_current = models.Filter(must=[fingerprint_condition(record.fingerprint), *scope])
    with qdrant_errors(client, f"count {name!r}"):
        total = int(client.count(name, exact=True).count)
        current = int(client.count(name, count_filter=only_current, exact=True).count)
        unstamped = int(client.count(name, count_filter=UNSTAMPED, exact=True).count)
    if unstamped:
        logger.warning(
            "collection %s has %d points without a context fingerprint (written around "
            "cde-rag); they are never searched. %s",
            name,
            unstamped,
            UNSTAMPED_FIX,
        )
    return CollectionSummary(
        name=name,
        physical_name=alias_target(client, name) or name,
        points=current,
        points_total=total,
        dim=record.shape[1],
        fingerprint=record.fingerprint,
        context_shape=record.shape,
        model_id=record.model_id,
        weights_hash=record.weights_hash,
        revision=record.revision,
        model_version=record.model_version,
        query_prefix=record.query_prefix,
        document_prefix=record.document_prefix,
        generation=record.generation,
        record_version=record.record_version,
        provenance=record.context_provenance(),
        location=describe(client),
        options=options_of(info, sparse).as_dict(),
        tenant=tenant,
        tenants=list(tenants),
        points_unstamped=unstamped,
        orphans=tuple(find_orphans(client, name)),
    )


UNSTAMPED = models.Filter(
    must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=FINGERPRINT_PAYLOAD_KEY))]
)
"""Points without a context fingerprint (written by a tool other than cde-rag)."""
UNSTAMPED_FIX = (
    "Their context is unknown, so cde-rag never compares them with its vectors: re-embed them "
    "with `cde-rag recontextualize` (or ContextualCollection.recontextualize()), or write "
    "through cde-rag / its LangChain and LlamaIndex stores."
)


def require_current(client: QdrantClient, name: str, fingerprint: str) -> None:
    """Before a write: refuse when the collection no longer stores context ``fingerprint``.

    Raises:
        ContextMismatchError: The collection was re-contextualized (or its record replaced).
    """
    stored = _stored_fingerprint(collection_info(client, name))
    if stored != fingerprint:
        msg = (
            f"collection {name!r} now stores context {str(stored)[:12]}… but this object was "
            f"opened with {fingerprint[:12]}… (it was recontextualized since); its points would "
            "never be searched. Nothing was written: reopen it with ContextualCollection.open()."
        )
        raise ContextMismatchError(msg)


def _stored_fingerprint(info: models.CollectionInfo) -> str | None:
    stored = (info.config.metadata or {}).get(METADATA_KEY)
    fingerprint = stored.get("fingerprint") if isinstance(stored, Mapping) else None
    return str(fingerprint) if fingerprint is not None else None


def attach_record(client: QdrantClient, name: str, record: ContextRecord) -> None:
    """Store ``record`` on a collection that has none.

    Raises:
        CollectionExistsError: The collection already has a record (nothing is overwritten).
    """
    info = collection_info(client, name)
    if METADATA_KEY in (info.config.metadata or {}):
        msg = (
            f"collection {name!r} already has a context record (fingerprint "
            f"{str(_stored_fingerprint(info))[:12]}…); attach_context never overwrites one. "
            "Use ContextualCollection.open(), or recontextualize() to rebuild it."
        )
        raise CollectionExistsError(msg)
    with qdrant_errors(client, f"update collection {name!r}"):
        client.update_collection(name, metadata=record.to_metadata())


def check_current(client: QdrantClient, name: str, fingerprint: str) -> None:
    """After an empty search: refuse a replaced context, warn about an empty collection.

    Raises:
        ContextMismatchError: The stored context is no longer ``fingerprint``.
    """
    info = collection_info(client, name)
    stored = _stored_fingerprint(info)
    if stored != fingerprint:
        msg = (
            f"collection {name!r} now stores context {str(stored)[:12]}… but this object was "
            f"opened with {fingerprint[:12]}… (it was recontextualized or its record replaced "
            "since). Reopen it with ContextualCollection.open()."
        )
        raise ContextMismatchError(msg)
    if not info.points_count:
        logger.warning("collection %s is empty: add documents before searching", name)


def read_sparse(client: QdrantClient, name: str) -> SparseEncoder | None:
    """The sparse encoder of a hybrid collection (None for a dense-only one).

    Raises:
        CollectionNotFoundError: No such collection or alias.
        CollectionConfigError: An unreadable sparse encoder record.
    """
    return SparseEncoder.from_metadata(collection_info(client, name).config.metadata, name)


def iter_points(
    client: QdrantClient,
    name: str,
    *,
    scroll_filter: models.Filter | None = None,
    with_payload: bool | Sequence[str] = True,
    page_size: int = 256,
) -> Iterator[models.Record]:
    """Every point of ``name`` matching ``scroll_filter`` (payload, no vectors), page by page.

    ``with_payload`` may name the payload keys to read (``["metadata.document_id"]``).
    """
    payload: bool | models.PayloadSelectorInclude = (
        with_payload
        if isinstance(with_payload, bool)
        else models.PayloadSelectorInclude(include=list(with_payload))
    )
    offset: models.ExtendedPointId | None = None
    while True:
        with qdrant_errors(client, f"read points of {name!r}"):
            points, offset = client.scroll(
                name,
                scroll_filter=scroll_filter,
                limit=page_size,
                offset=offset,
                with_payload=payload,
                with_vectors=False,
            )
        yield from points
        if offset is None:
            return


def point_text(point: models.Record) -> str | None:
    """The ``page_content`` of a point, or None when it has no usable text."""
    text = (point.payload or {}).get(CONTENT_PAYLOAD_KEY)
    return text if isinstance(text, str) and text.strip() else None

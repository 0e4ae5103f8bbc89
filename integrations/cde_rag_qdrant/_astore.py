"""The few Qdrant look-ups the binding core needs, for an ``AsyncQdrantClient``."""

from __future__ import annotations

from qdrant_client import AsyncQdrantClient, models

from cde_rag_qdrant._store import qdrant_errors
from cde_rag_qdrant.errors import CollectionNotFoundError
from cde_rag_qdrant.record import ContextRecord


async def exists(client: AsyncQdrantClient, name: str) -> bool:
    """Whether a collection or alias called ``name`` exists."""
    with qdrant_errors(client, f"check collection {name!r}"):  # type: ignore[arg-type]
        return bool(await client.collection_exists(name))


async def alias_target(client: AsyncQdrantClient, name: str) -> str | None:
    """The collection alias ``name`` points to, or None when ``name`` is no alias."""
    with qdrant_errors(client, "list aliases"):  # type: ignore[arg-type]
        aliases = (await client.get_aliases()).aliases
    return next((a.collection_name for a in aliases if a.alias_name == name), None)


async def collection_info(client: AsyncQdrantClient, name: str) -> models.CollectionInfo:
    """``get_collection`` (follows aliases).

    Raises:
        CollectionNotFoundError: No collection or alias called ``name``.
    """
    if not await exists(client, name):
        msg = (
            f"no collection or alias {name!r} in this Qdrant. Create it with "
            "AsyncContextualCollection.create(client, name, encoder, corpus=...) or "
            f"`cde-rag ingest PATH --collection {name}`."
        )
        raise CollectionNotFoundError(msg)
    with qdrant_errors(client, f"read collection {name!r}"):  # type: ignore[arg-type]
        return await client.get_collection(name)


async def read_record(client: AsyncQdrantClient, name: str) -> ContextRecord:
    """The validated context record of a collection (tensor not decoded)."""
    info = await collection_info(client, name)
    return ContextRecord.from_metadata(info.config.metadata, name)

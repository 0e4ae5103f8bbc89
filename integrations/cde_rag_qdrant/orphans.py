"""Physical collections that a killed rebuild left behind, found and removed.

A collection ``name`` is an alias of ``{name}__cde_g{n}``. Two kinds of leftovers are orphans:

* a generation **newer** than the published one and not aliased: a create or rebuild killed
  before its alias switch (partial);
* the generation the published one **retires**: a rebuild killed after the alias switch but
  before it dropped the old collection (full, and never read again). The new collection's
  metadata names it under :data:`RETIRE_KEY`; a rebuild with ``keep_old`` names none, so kept
  collections are never taken for orphans.
"""

from __future__ import annotations

import logging
import re

from qdrant_client import QdrantClient

from cde_rag_qdrant._store import GENERATION_SEPARATOR, alias_target, qdrant_errors

logger = logging.getLogger(__name__)

RETIRE_KEY = "cde_rag_retire"
"""Collection metadata key: the physical collection this one replaces and will drop."""


def _generation(collection: str, name: str) -> int | None:
    match = re.fullmatch(re.escape(name + GENERATION_SEPARATOR) + r"(\d+)", collection)
    return int(match.group(1)) if match else None


def find_orphans(client: QdrantClient, name: str) -> list[str]:
    """Unpublished physical collections of alias ``name`` that no reader can reach.

    Args:
        client: Any QdrantClient.
        name: The alias users pass.

    Returns:
        Their names, oldest first; empty when ``name`` is not a cde-rag alias.
    """
    current = alias_target(client, name)
    current_generation = None if current is None else _generation(current, name)
    if current is None or current_generation is None:
        return []
    with qdrant_errors(client, "list collections"):
        names = {c.name for c in client.get_collections().collections}
        aliased = {a.collection_name for a in client.get_aliases().aliases}
        metadata = client.get_collection(current).config.metadata or {}
    retired = metadata.get(RETIRE_KEY)
    orphans = []
    for collection in names - aliased:
        generation = _generation(collection, name)
        if generation is None:
            continue
        if generation > current_generation or collection == retired:
            orphans.append((generation, collection))
    return [collection for _, collection in sorted(orphans)]


def drop_orphans(client: QdrantClient, name: str) -> list[str]:
    """Delete what :func:`find_orphans` reports; returns the names deleted."""
    orphans = find_orphans(client, name)
    for collection in orphans:
        logger.warning("removing %s, left behind by an interrupted rebuild of %s", collection, name)
        with qdrant_errors(client, f"delete collection {collection!r}"):
            client.delete_collection(collection)
    return orphans

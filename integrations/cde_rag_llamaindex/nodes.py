"""Reading points back as LlamaIndex nodes, whichever library wrote them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node
from qdrant_client import QdrantClient

from cde_rag_qdrant import CONTENT_PAYLOAD_KEY, METADATA_PAYLOAD_KEY


def node_from_cde_payload(point: Any) -> TextNode | None:
    """A node for a point written by cde-rag or LangChain (no ``_node_content``), else None."""
    payload = point.payload or {}
    if "_node_content" in payload or CONTENT_PAYLOAD_KEY not in payload:
        return None
    metadata = payload.get(METADATA_PAYLOAD_KEY)
    vector = point.vector
    embedding = vector.get("") if isinstance(vector, dict) else vector
    return TextNode(
        id_=str(point.id),
        text=str(payload[CONTENT_PAYLOAD_KEY]),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        embedding=embedding if isinstance(embedding, list) else None,
    )


def read_nodes(client: QdrantClient, collection_name: str, ids: Sequence[str]) -> list[BaseNode]:
    """The nodes of points ``ids`` (e.g. ``SearchHit.id`` from ``ContextualCollection.search``).

    Works for points in LlamaIndex's layout (the full node, relationships included) and in
    cde-rag's / LangChain's (a ``TextNode`` from ``page_content`` and ``metadata``).

    Args:
        client: The Qdrant client.
        collection_name: Collection or alias.
        ids: Point ids.

    Returns:
        The nodes, in the order of ``ids`` (missing ids, and points in neither layout, are
        skipped).
    """
    records = client.retrieve(collection_name, ids=list(ids), with_payload=True)
    by_id: dict[str, BaseNode] = {}
    for record in records:
        payload = record.payload or {}
        node = node_from_cde_payload(record)
        if node is not None:
            by_id[str(record.id)] = node
        elif "_node_content" in payload:
            by_id[str(record.id)] = metadata_dict_to_node(payload)
    return [by_id[str(i)] for i in ids if str(i) in by_id]

"""LangChain documents <-> cde-rag points: ids, payloads, and opening clients like LangChain."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.documents import Document
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from cde_rag.errors import InvalidInputError
from cde_rag.validation import validate_texts
from cde_rag_qdrant import connect
from cde_rag_qdrant.payload import (
    CONTENT_PAYLOAD_KEY,
    FINGERPRINT_PAYLOAD_KEY,
    METADATA_PAYLOAD_KEY,
    check_metadatas,
    point_id,
)

ID_PAYLOAD_KEY = "cde_id"
"""Payload key holding the caller's document id (Qdrant point ids must be UUIDs or ints)."""

CLIENT_OPTIONS: tuple[str, ...] = (
    "location",
    "url",
    "path",
    "api_key",
    "host",
    "port",
    "https",
    "prefix",
)
CLIENT_OPTIONS += ("timeout", "grpc_port", "prefer_grpc")


def document_ids(ids: Sequence[str | int | None] | None, n: int) -> list[str]:
    """The caller's ids as strings, with a fresh UUID for each missing one."""
    if ids is None:
        return [str(uuid.uuid4()) for _ in range(n)]
    if isinstance(ids, str | bytes):
        msg = "ids must be a list of ids, not a single string; wrap it: [id]."
        raise InvalidInputError(msg)
    items = list(ids)
    if len(items) != n:
        msg = f"got {len(items)} ids for {n} texts; pass one id per text (or none)."
        raise InvalidInputError(msg)
    return [str(uuid.uuid4()) if i is None or i == "" else str(i) for i in items]


def prepare(
    texts: Iterable[str],
    metadatas: Sequence[dict[Any, Any] | None] | None,
    ids: Sequence[str | int | None] | None,
) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """Validate an ``add_texts`` call: texts (a bare string is refused), metadatas, ids."""
    items = validate_texts(texts)
    return items, check_metadatas(metadatas, len(items)), document_ids(ids, len(items))


def build_points(
    keys: list[str],
    texts: list[str],
    metas: list[dict[str, Any]],
    vectors: list[list[float]],
    fingerprint: str,
    *,
    stamp: dict[str, str] | None = None,
    sparse: tuple[str, list[models.SparseVector]] | None = None,
) -> list[models.PointStruct]:
    """Points in cde-rag's layout plus the caller's id.

    ``stamp`` adds payload entries (a tenant's); ``sparse`` adds the named lexical vector of
    a hybrid collection, one per text.
    """
    sparse_vectors: list[models.SparseVector | None] = (
        [None] * len(keys) if sparse is None else list(sparse[1])
    )
    points = []
    for key, text, meta, vector, lexical in zip(
        keys, texts, metas, vectors, sparse_vectors, strict=True
    ):
        payload = {
            CONTENT_PAYLOAD_KEY: text,
            METADATA_PAYLOAD_KEY: meta,
            FINGERPRINT_PAYLOAD_KEY: fingerprint,
            ID_PAYLOAD_KEY: key,
            **(stamp or {}),
        }
        vec: models.VectorStruct = (
            vector if sparse is None or lexical is None else {"": vector, sparse[0]: lexical}
        )
        points.append(models.PointStruct(id=point_id(key), vector=vec, payload=payload))
    return points


def to_document(point: Any) -> Document:
    """A ``Document`` (with ``id``) from a point written by cde-rag or LangChain."""
    payload = point.payload or {}
    metadata = payload.get(METADATA_PAYLOAD_KEY)
    return Document(
        id=str(payload.get(ID_PAYLOAD_KEY) or point.id),
        page_content=str(payload.get(CONTENT_PAYLOAD_KEY, "")),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
    )


def point_ids(ids: Sequence[str | int]) -> list[models.ExtendedPointId]:
    """Point ids of the caller's ids."""
    if isinstance(ids, str | bytes):
        msg = "ids must be a list of ids, not a single string; wrap it: [id]."
        raise InvalidInputError(msg)
    return [point_id(str(i)) for i in ids]


def in_order(ids: Sequence[str | int], records: Iterable[Any]) -> list[Document]:
    """Documents of ``records`` in the order of ``ids``; missing ids are skipped."""
    by_point = {str(r.id): to_document(r) for r in records}
    return [by_point[str(p)] for p in point_ids(ids) if str(p) in by_point]


def open_client(client: QdrantClient | AsyncQdrantClient | None, options: dict[str, Any]) -> Any:
    """``client``, else one opened from LangChain's ``url=`` / ``path=`` / ``location=`` options.

    Raises:
        InvalidInputError: Both a client and connection options, or neither.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if client is not None:
        if given:
            msg = f"pass client= or connection options ({', '.join(given)}), not both."
            raise InvalidInputError(msg)
        return client
    if not {"location", "url", "path", "host"} & set(given):
        msg = (
            "where is the Qdrant store? Pass client=QdrantClient(...), url=..., path=... or "
            "location=':memory:'."
        )
        raise InvalidInputError(msg)
    if set(given) == {"path"}:
        return connect(given["path"])
    if set(given) == {"location"}:
        return connect(location=given["location"])
    return QdrantClient(**given)

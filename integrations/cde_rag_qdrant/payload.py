"""Point layout: deterministic ids, LangChain-compatible payloads, filters, input checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import models

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.results import SearchHit

FINGERPRINT_PAYLOAD_KEY = "cde_context"
"""Payload key on every point: fingerprint of the context its vector was made with."""
CONTENT_PAYLOAD_KEY = "page_content"
"""Payload key of the text (LangChain's layout)."""
METADATA_PAYLOAD_KEY = "metadata"
"""Payload key of the metadata dict (LangChain's layout)."""

_ID_NAMESPACE = uuid.UUID("6f1c1b52-5d55-4b8e-9c5a-2b6c3f0cde01")
_TEXT_NAMESPACE = uuid.uuid5(_ID_NAMESPACE, "text")


def point_id(key: str) -> str:
    """Deterministic Qdrant point id for a caller's id.

    A UUID string is used as is (so ids returned by :meth:`ContextualCollection.add` map to
    themselves); any other string becomes its UUIDv5.
    """
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(_ID_NAMESPACE, key))


def text_point_id(text: str) -> str:
    """Deterministic point id of a text added without an id (UUIDv5 of the text)."""
    return str(uuid.uuid5(_TEXT_NAMESPACE, text))


def build_payload(
    text: str, metadata: Mapping[str, Any] | None, fingerprint: str
) -> dict[str, Any]:
    """Payload of one point: LangChain's layout plus the context fingerprint."""
    return {
        CONTENT_PAYLOAD_KEY: text,
        METADATA_PAYLOAD_KEY: dict(metadata or {}),
        FINGERPRINT_PAYLOAD_KEY: fingerprint,
    }


def fingerprint_condition(fingerprint: str) -> models.FieldCondition:
    """Filter condition matching points made with the context ``fingerprint``."""
    return models.FieldCondition(
        key=FINGERPRINT_PAYLOAD_KEY, match=models.MatchValue(value=fingerprint)
    )


def metadata_filter(query_filter: models.Filter | Mapping[str, Any] | None) -> models.Filter | None:
    """A Qdrant filter, or the shorthand ``{"key": value}`` on ``metadata.key``.

    A list value matches any of its items. Keys already starting with ``metadata.`` are kept.
    """
    given: Any = query_filter
    if given is None or isinstance(given, models.Filter):
        return given
    if not isinstance(given, Mapping):
        msg = (
            f"query_filter must be a qdrant_client.models.Filter or a dict of metadata "
            f"values; got {type(query_filter).__name__}."
        )
        raise InvalidInputError(msg)
    must: list[models.Condition] = []
    for key, value in given.items():
        path = (
            key if key.startswith(f"{METADATA_PAYLOAD_KEY}.") else f"{METADATA_PAYLOAD_KEY}.{key}"
        )
        match: models.MatchValue | models.MatchAny = (
            models.MatchAny(any=list(value))
            if isinstance(value, list | tuple)
            else models.MatchValue(value=value)
        )
        must.append(models.FieldCondition(key=path, match=match))
    return models.Filter(must=must)


def check_metadatas(
    metadatas: Sequence[Mapping[str, Any] | None] | None, n: int
) -> list[dict[str, Any]]:
    """Validate metadatas (one JSON-able dict or None per text); ``{}`` for None."""
    if metadatas is None:
        return [{} for _ in range(n)]
    items = list(metadatas)
    if len(items) != n:
        msg = f"got {len(items)} metadatas for {n} texts; pass one dict per text (or none)."
        raise InvalidInputError(msg)
    out: list[dict[str, Any]] = []
    for i, given in enumerate(items):
        meta: Any = given
        if meta is None:
            out.append({})
            continue
        if not isinstance(meta, Mapping):
            msg = f"metadatas[{i}] is a {type(meta).__name__}; expected a dict (or None)."
            raise InvalidInputError(msg)
        try:
            json.dumps(dict(meta), allow_nan=False)
        except (TypeError, ValueError) as exc:
            msg = f"metadatas[{i}] is not JSON-serialisable ({exc}); Qdrant stores JSON."
            raise InvalidInputError(msg) from exc
        out.append(dict(meta))
    return out


def check_ids(ids: Sequence[str] | None, texts: list[str]) -> list[str]:
    """Point ids for ``ids`` (or for the texts when None), validated."""
    if ids is None:
        return [text_point_id(t) for t in texts]
    items = list(ids)
    if len(items) != len(texts):
        msg = f"got {len(items)} ids for {len(texts)} texts; pass one id per text (or none)."
        raise InvalidInputError(msg)
    for i, key in enumerate(items):
        if not isinstance(key, str) or not key:
            msg = f"ids[{i}] = {key!r}; expected a non-empty str."
            raise InvalidInputError(msg)
    return [point_id(k) for k in items]


def hit_from_point(point: models.ScoredPoint) -> SearchHit:
    """A :class:`SearchHit` from a scored point with LangChain's payload layout."""
    payload = point.payload or {}
    metadata = payload.get(METADATA_PAYLOAD_KEY)
    return SearchHit(
        id=str(point.id),
        score=float(point.score),
        text=str(payload.get(CONTENT_PAYLOAD_KEY, "")),
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
    )

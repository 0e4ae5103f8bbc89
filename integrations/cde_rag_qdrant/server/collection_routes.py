"""``POST /collections/{name}/search`` and ``POST /collections/{name}/documents``.

Both run on the batcher's worker thread (the model is never used by two threads at once) and
first re-read the collection's context if it was re-contextualized.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from qdrant_client import models

from cde_rag_qdrant.payload import metadata_filter
from cde_rag_qdrant.server.errors import ApiError
from cde_rag_qdrant.server.schemas import (
    DocumentIn,
    DocumentsRequest,
    DocumentsResponse,
    SearchRequest,
    SearchResponse,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.server.batcher import Batcher
    from cde_rag_qdrant.server.registry import ContextRegistry, ModelEntry
    from cde_rag_qdrant.server.settings import ServerSettings

_FILTER_KEYS = {"must", "should", "must_not", "min_should"}


def _upsert_documents(collection: ContextualCollection, docs: list[DocumentIn]) -> list[str]:
    """Store ``docs`` in ``collection`` the way the CLI ingests them.

    The one place the documents route writes. It calls ``ContextualCollection.add`` for now;
    when ``ContextualCollection.sync(documents)`` (chunking and incremental sync, shared with
    ``cde-rag ingest``) lands, this switches to it; the request schema stays the same.
    """
    return collection.add(
        [d.text for d in docs],
        ids=[d.id for d in docs],
        metadatas=[d.metadata for d in docs],
        show_progress_bar=False,
    )


def parse_filter(given: dict[str, Any] | None) -> models.Filter | None:
    """A Qdrant filter object, or the ``{"key": value}`` shorthand on metadata.

    Raises:
        ApiError: 400 when it is neither.
    """
    if not given:
        return None
    try:
        if set(given) <= _FILTER_KEYS:
            return models.Filter.model_validate(given)
        return metadata_filter(given)
    except (ValidationError, ValueError) as exc:
        msg = (
            f"'filter' is not a metadata filter ({{\"key\": value or [values]}} with string, "
            f"integer or boolean values) nor a Qdrant filter object: {exc}"
        )
        raise ApiError(400, msg.splitlines()[0], param="filter", code="invalid_filter") from exc


def add_collection_routes(
    app: FastAPI,
    registry: ContextRegistry,
    batcher: Batcher,
    settings: ServerSettings,
    dependencies: list[Any],
) -> None:
    """Register the collection routes on ``app``."""

    def collection(name: str) -> tuple[ModelEntry, ContextualCollection]:
        entry = registry.entries.get(name)
        if entry is None or entry.collection is None:
            known = sorted(n for n, e in registry.entries.items() if e.collection is not None)
            what = "a context file, not a collection" if entry is not None else "not served here"
            served = ", ".join(known) or "none"
            msg = f"collection {name!r} is {what}; collections served: {served}."
            raise ApiError(404, msg, param="name", code="collection_not_found")
        return entry, entry.collection

    def current(entry: ModelEntry) -> ContextualCollection:
        entry.refresh()
        assert entry.collection is not None  # noqa: S101 (type narrowing of an invariant): collection entries keep one
        return entry.collection

    @app.post("/collections/{name}/search", dependencies=dependencies)
    async def search(name: str, body: SearchRequest) -> SearchResponse:
        entry, _ = collection(name)
        if body.limit > settings.max_search_limit:
            msg = f"'limit' is {body.limit}; at most {settings.max_search_limit}."
            raise ApiError(400, msg, param="limit", code="invalid_value")
        flt = parse_filter(body.filter)

        def run() -> SearchResponse:
            col = current(entry)
            hits = col.search(
                body.query, limit=body.limit, score_threshold=body.score_threshold,
                query_filter=flt,
            )  # fmt: skip
            data = [
                {"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in hits
            ]
            return SearchResponse.model_validate(
                {"collection": name, "fingerprint": col.fingerprint, "hits": data}
            )

        return await batcher.call(run)

    @app.post("/collections/{name}/documents", dependencies=dependencies)
    async def upsert(name: str, body: DocumentsRequest) -> DocumentsResponse:
        entry, _ = collection(name)
        if len(body.documents) > settings.max_inputs:
            msg = (
                f"'documents' has {len(body.documents)} items; at most {settings.max_inputs} "
                "per request (cde-rag serve --max-inputs)."
            )
            raise ApiError(400, msg, param="documents", code="too_many_inputs")

        def run() -> DocumentsResponse:
            col = current(entry)
            ids = _upsert_documents(col, body.documents)
            return DocumentsResponse(
                collection=name,
                fingerprint=col.fingerprint,
                upserted=len(ids),
                point_ids=ids,
                points=col.count(),
            )

        return await batcher.call(run)

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
    from cde_rag_qdrant.sync import SyncReport

_FILTER_KEYS = {"must", "should", "must_not", "min_should"}


def _upsert_documents(collection: ContextualCollection, docs: list[DocumentIn]) -> SyncReport:
    """Store ``docs`` in ``collection`` the way ``cde-rag ingest`` does: chunk and sync.

    Each document is chunked to fit the model window; a re-sent unchanged document embeds
    nothing, a changed one replaces its chunks (never pruned: other documents stay).
    """
    from cde_rag_qdrant.documents import Document

    documents = [Document(d.id, d.text, dict(d.metadata)) for d in docs]
    return collection.sync(documents, show_progress_bar=False)


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
            r = _upsert_documents(col, body.documents)
            documents = {
                "added": r.documents_added,
                "updated": r.documents_updated,
                "unchanged": r.documents_unchanged,
            }
            chunks = {
                "added": r.chunks_added,
                "removed": r.chunks_removed,
                "unchanged": r.chunks_unchanged,
                "embedded": r.chunks_embedded,
            }
            return DocumentsResponse(
                collection=name,
                fingerprint=col.fingerprint,
                documents=documents,
                chunks=chunks,
                points=col.count(),
            )

        return await batcher.call(run)

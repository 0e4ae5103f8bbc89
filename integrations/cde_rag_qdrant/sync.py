"""Chunk documents and keep a collection in step with them (``ContextualCollection.sync``).

Every chunk point carries, under ``metadata``, its ``document_id``, ``chunk_index``,
``chunk_count``, ``start``/``end`` (character offsets in the document text), ``headings``
(Markdown heading path), ``page`` (PDF, 1-based page of its start), the document's
``content_hash`` (SHA-256 of its text) and ``version``: a hash of the content hash, the
metadata, the text format and the chunker settings. A chunk's point id is the UUIDv5 of
``(document id, version, chunk index)``, so the same inputs give the same ids anywhere.

One sync, in this order (nothing is written before every input was read and checked):

1. plan: read each document, hash it, compare with the stored versions. A document stored
   complete (every chunk of its current version, nothing else) is unchanged: nothing is
   chunked or embedded. Others are chunked; only their chunks not yet stored are embedded.
2. write the new chunks (deterministic ids: a re-run rewrites the same points);
3. delete each changed document's chunks of other versions;
4. prune (if asked): delete documents of the scope that were not in this sync.

A crash at any point leaves old and/or new complete-or-partial versions; the next sync sees
the current version incomplete or other versions present, writes what is missing and deletes
the rest, so it converges to exactly the current chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from qdrant_client import models
from tqdm.auto import tqdm

from cde_rag.errors import InvalidInputError
from cde_rag.progress import progress_enabled
from cde_rag_qdrant import _store
from cde_rag_qdrant import tenants as _tenants
from cde_rag_qdrant._pipeline import PendingBatch, WindowEmbedder, embed_and_upsert
from cde_rag_qdrant._testhooks import crash_point
from cde_rag_qdrant.chunking import Chunker, ChunkSpan
from cde_rag_qdrant.documents import DocumentReadError, DocumentSource, LoadedText, Skipped
from cde_rag_qdrant.errors import DuplicateDocumentError
from cde_rag_qdrant.payload import build_payload, fingerprint_condition, metadata_filter

if TYPE_CHECKING:
    from cde_rag_qdrant.collection import ContextualCollection

__all__ = ["RESERVED_METADATA_KEYS", "SyncReport", "chunk_point_id", "sync_documents"]

logger = logging.getLogger(__name__)

RESERVED_METADATA_KEYS = frozenset(
    {
        "document_id",
        "chunk_index",
        "chunk_count",
        "start",
        "end",
        "headings",
        "page",
        "content_hash",
        "chunking",
        "version",
    }
)
"""Metadata keys sync writes on every chunk; documents may not set them."""

_CHUNK_NAMESPACE = uuid.UUID("0b5c8f0e-7a0c-4c55-9d1e-c0de00c4a9b1")
_SCROLL_PAGE = 1024
_DELETE_BATCH = 256


def chunk_point_id(
    document_id: str, chunking_key: str, index: int, tenant: str | None = None
) -> str:
    """Point id of chunk ``index`` of a document's chunking (UUIDv5).

    ``chunking_key`` hashes the text, its format and the chunker settings (not the
    metadata), so a metadata-only change rewrites the same points in place. A tenant's chunks
    get ids of their own (tenants may hold documents with the same ids).
    """
    point = str(uuid.uuid5(_CHUNK_NAMESPACE, f"{document_id}\x1f{chunking_key}\x1f{index}"))
    return point if tenant is None else _tenants.tenant_point_id(tenant, point)


def _in_scope(col: ContextualCollection, flt: models.Filter) -> models.Filter:
    """``flt`` limited to the points of the view: its tenant's, or those of no tenant."""
    scope = _tenants.read_scope(col.tenant, col.has_tenants)
    return models.Filter(must=[flt, *scope]) if scope else flt


@dataclass(frozen=True)
class SyncReport:
    """What a sync did.

    Attributes:
        documents_added: Documents new to the collection.
        documents_updated: Documents whose stored chunks were replaced (or completed).
        documents_unchanged: Documents already stored complete: nothing embedded.
        documents_removed: Documents pruned.
        chunks_added: Chunk points written.
        chunks_removed: Chunk points deleted (stale versions and pruned documents).
        chunks_unchanged: Chunk points of unchanged documents.
        chunks_embedded: Texts embedded (the compute spent).
        skipped: Documents that could not be read, with the reason.
        changed_ids: Ids of the added and updated documents.
    """

    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_removed: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    chunks_embedded: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    changed_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["skipped"] = [s.as_dict() for s in self.skipped]
        return data


@dataclass
class _Tally:
    documents_unchanged: int = 0
    chunks_unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass
class _Plan:
    source: DocumentSource
    content_hash: str
    chunking_key: str
    version: str
    spans: list[ChunkSpan]
    page_starts: tuple[int, ...]
    missing: list[int]
    stale: int
    added: bool
    aborted: bool = False  # changed while syncing: its stored chunks stay as they are


# document id -> version -> (point ids, chunk_count)
_State = dict[str, dict[str, tuple[set[str], int]]]


def _scroll(
    col: ContextualCollection, flt: models.Filter, keys: list[str]
) -> Iterator[models.Record]:
    return _store.iter_points(
        col.client,
        col.name,
        scroll_filter=_in_scope(col, flt),
        with_payload=keys,
        page_size=_SCROLL_PAGE,
    )


def _no_doc_id() -> models.IsEmptyCondition:
    return models.IsEmptyCondition(is_empty=models.PayloadField(key="metadata.document_id"))


def _metadata(point: models.Record) -> dict[str, Any]:
    meta = (point.payload or {}).get("metadata")
    return meta if isinstance(meta, dict) else {}


def stored_state(col: ContextualCollection) -> _State:
    """Which versions of which documents the collection holds (current context only)."""
    flt = models.Filter(must=[fingerprint_condition(col.fingerprint)], must_not=[_no_doc_id()])
    state: _State = {}
    keys = ["metadata.document_id", "metadata.version", "metadata.chunk_count"]
    for point in _scroll(col, flt, keys):
        meta = _metadata(point)
        doc, version, count = meta.get("document_id"), meta.get("version"), meta.get("chunk_count")
        if not isinstance(doc, str) or not isinstance(version, str):
            continue
        ids, _ = state.setdefault(doc, {}).get(version, (set(), 0))
        ids.add(str(point.id))
        state[doc][version] = (ids, count if isinstance(count, int) else -1)
    return state


def _prune_targets(
    col: ContextualCollection, scope: models.Filter | None, seen: set[str]
) -> dict[str, int]:
    """Documents in ``scope`` (any context) not in ``seen``: id -> number of points."""
    flt = models.Filter(must=[scope] if scope is not None else None, must_not=[_no_doc_id()])
    gone: dict[str, int] = {}
    for point in _scroll(col, flt, ["metadata.document_id"]):
        doc = _metadata(point).get("document_id")
        if isinstance(doc, str) and doc not in seen:
            gone[doc] = gone.get(doc, 0) + 1
    return gone


def _check_metadata(source: DocumentSource, where: str) -> dict[str, Any]:
    meta: Any = source.metadata
    if not isinstance(meta, Mapping):
        msg = f"{where}: metadata is a {type(meta).__name__}; expected a dict."
        raise InvalidInputError(msg)
    clash = sorted(RESERVED_METADATA_KEYS & set(meta))
    if clash:
        msg = (
            f"{where}: metadata key(s) {', '.join(map(repr, clash))} are reserved for chunk "
            "positions; rename them in your metadata."
        )
        raise InvalidInputError(msg)
    try:
        json.dumps(dict(meta), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        msg = f"{where}: metadata is not JSON-serialisable ({exc}); Qdrant stores JSON."
        raise InvalidInputError(msg) from exc
    return dict(meta)


def _chunking_key(content_hash: str, text_format: str, chunker: Chunker) -> str:
    """What decides the chunk texts: the text, its format and the chunker settings."""
    key = json.dumps([content_hash, text_format, chunker.signature])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _version(chunking_key: str, meta: dict[str, Any]) -> str:
    """The chunk texts and the metadata: what the stored points must match."""
    key = json.dumps([chunking_key, meta], sort_keys=True, allow_nan=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _plan(
    col: ContextualCollection,
    documents: Iterable[DocumentSource],
    chunker: Chunker,
    state: _State,
    report: _Tally,
    seen: dict[str, str],
    show: bool,
) -> list[_Plan]:
    plans: list[_Plan] = []
    bar = tqdm(documents, desc="Reading", unit="doc", disable=not show)
    for i, source in enumerate(bar):
        where = source.origin or f"documents[{i}]"
        doc_id: Any = source.id
        if not isinstance(doc_id, str) or not doc_id:
            msg = f"{where}: document id {doc_id!r}; expected a non-empty str."
            raise InvalidInputError(msg)
        if doc_id in seen:
            raise DuplicateDocumentError(doc_id, seen[doc_id], where)
        seen[doc_id] = where
        meta = _check_metadata(source, where)
        try:
            loaded = source.load()
        except DocumentReadError as exc:
            report.skipped.append(exc.skipped)
            continue
        if not loaded.text.strip():
            report.skipped.append(Skipped(where, None, "empty text"))
            continue
        content_hash = _content_hash(loaded.text)
        chunking_key = _chunking_key(content_hash, source.text_format, chunker)
        version = _version(chunking_key, meta)
        stored = state.get(doc_id, {})
        ids, count = stored.get(version, (set(), -1))
        if set(stored) == {version} and len(ids) == count:
            report.documents_unchanged += 1
            report.chunks_unchanged += count
            continue
        spans = chunker.spans(loaded.text, text_format=source.text_format)
        new_ids = [chunk_point_id(doc_id, chunking_key, k, col.tenant) for k in range(len(spans))]
        missing = [k for k, pid in enumerate(new_ids) if pid not in ids]
        fresh = set(new_ids)  # points of other versions with these ids get overwritten
        stale = sum(len(p - fresh) for v, (p, _) in stored.items() if v != version)
        plans.append(
            _Plan(
                source=source,
                content_hash=content_hash,
                chunking_key=chunking_key,
                version=version,
                spans=spans,
                page_starts=loaded.page_starts,
                missing=missing,
                stale=stale,
                added=not stored,
            )
        )
    return plans


def _page(page_starts: tuple[int, ...], offset: int) -> int:
    lo, hi = 0, len(page_starts)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if page_starts[mid] <= offset:
            lo = mid
        else:
            hi = mid
    return lo + 1


def _chunk_metadata(plan: _Plan, meta: dict[str, Any], k: int) -> dict[str, Any]:
    span = plan.spans[k]
    out = {
        **meta,
        "document_id": plan.source.id,
        "chunk_index": k,
        "chunk_count": len(plan.spans),
        "start": span.start,
        "end": span.end,
        "headings": list(span.headings),
        "content_hash": plan.content_hash,
        "chunking": plan.chunking_key,
        "version": plan.version,
    }
    if plan.page_starts:
        out["page"] = _page(plan.page_starts, span.start)
    return out


def _batches(
    col: ContextualCollection, plans: list[_Plan], batch_size: int, report: _Tally
) -> Iterator[PendingBatch]:
    ids: list[str] = []
    texts: list[str] = []
    payloads: list[dict[str, Any]] = []
    for plan in plans:
        if not plan.missing:
            continue
        loaded: LoadedText = plan.source.load()
        if _content_hash(loaded.text) != plan.content_hash:
            where = plan.source.origin or plan.source.id
            report.skipped.append(Skipped(where, None, "changed while syncing; run again"))
            plan.missing, plan.stale, plan.aborted = [], 0, True
            continue
        meta = dict(plan.source.metadata)
        for k in plan.missing:
            span = plan.spans[k]
            text = loaded.text[span.start : span.end]
            ids.append(chunk_point_id(plan.source.id, plan.chunking_key, k, col.tenant))
            texts.append(text)
            payload = build_payload(text, _chunk_metadata(plan, meta, k), col.fingerprint)
            payloads.append({**payload, **_tenants.tenant_stamp(col.tenant)})
            if len(ids) >= batch_size:
                yield PendingBatch(ids, texts, payloads)
                ids, texts, payloads = [], [], []
    if ids:
        yield PendingBatch(ids, texts, payloads)


def _delete(col: ContextualCollection, flt: models.Filter) -> None:
    with _store.qdrant_errors(col.client, f"delete points of {col.name!r}"):
        selector = models.FilterSelector(filter=_in_scope(col, flt))
        col.client.delete(col.name, points_selector=selector, wait=True)


def _doc_is(doc_ids: list[str]) -> models.FieldCondition:
    return models.FieldCondition(key="metadata.document_id", match=models.MatchAny(any=doc_ids))


def sync_documents(
    col: ContextualCollection,
    documents: Iterable[DocumentSource],
    chunker: Chunker,
    *,
    prune: bool | models.Filter | Mapping[str, Any] = False,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
    embedder: WindowEmbedder | None = None,
) -> SyncReport:
    """Chunk ``documents`` and bring the collection in step with them (see module docs)."""
    show = progress_enabled(show_progress_bar)
    report = _Tally()
    scope: models.Filter | None = None
    if prune is not False and prune is not True:
        scope = metadata_filter(prune)
    state = stored_state(col)
    seen: dict[str, str] = {}
    plans = _plan(col, documents, chunker, state, report, seen, show)
    gone = _prune_targets(col, scope, set(seen)) if prune is not False else {}

    total = sum(len(p.missing) for p in plans)
    written = 0
    if total:
        written = embed_and_upsert(
            col.client,
            col.name,
            col.encoder,
            col.context,
            _batches(col, plans, batch_size, report),
            document_prefix=col.record.document_prefix,
            batch_size=batch_size,
            total=total,
            show_progress_bar=show,
            unit="chunk",
            embedder=embedder,
            sparse=col.sparse,
            upload=col.upload_options,
        )
    crash_point("written")
    removed = 0
    for plan in plans:
        if plan.aborted:
            continue
        if plan.stale or any(v != plan.version for v in state.get(plan.source.id, {})):
            keep = models.FieldCondition(
                key="metadata.version", match=models.MatchValue(value=plan.version)
            )
            _delete(col, models.Filter(must=[_doc_is([plan.source.id])], must_not=[keep]))
            removed += plan.stale
            crash_point("deleted")
    doomed = sorted(gone)
    for start in range(0, len(doomed), _DELETE_BATCH):
        _delete(col, models.Filter(must=[_doc_is(doomed[start : start + _DELETE_BATCH])]))
        crash_point("pruned")
    removed += sum(gone.values())
    changed = [p for p in plans if (p.missing or p.stale) and not p.aborted]
    return SyncReport(
        documents_added=sum(1 for p in changed if p.added),
        documents_updated=sum(1 for p in changed if not p.added),
        documents_unchanged=report.documents_unchanged
        + sum(1 for p in plans if not (p.missing or p.stale or p.aborted)),
        documents_removed=len(gone),
        chunks_added=written,
        chunks_removed=removed,
        chunks_unchanged=report.chunks_unchanged,
        chunks_embedded=written,
        skipped=report.skipped,
        changed_ids=[p.source.id for p in changed],
    )


def sample_chunk_texts(
    documents: Iterable[DocumentSource], chunker: Chunker, *, limit: int, seed: int = 0
) -> tuple[list[str], int]:
    """A seeded uniform sample (reservoir) of at most ``limit`` chunk texts, and the total.

    With ``limit`` or fewer chunks in all, every chunk is returned, in document order. Used to
    build a new collection's context from chunks (the unit stage 2 embeds) without holding
    every chunk in memory. Unreadable documents are passed over (sync reports them).
    """
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for source in documents:
        try:
            loaded = source.load()
        except DocumentReadError:
            continue
        for span in chunker.spans(loaded.text, text_format=source.text_format):
            seen += 1
            text = loaded.text[span.start : span.end]
            if len(sample) < limit:
                sample.append(text)
            else:
                j = rng.randrange(seen)
                if j < limit:
                    sample[j] = text
    return sample, seen


def sample_changed_texts(col: ContextualCollection, doc_ids: list[str], limit: int) -> list[str]:
    """Up to ``limit`` chunk texts of the given documents (e.g. to measure their drift)."""
    if not doc_ids:
        return []
    flt = models.Filter(must=[_doc_is(doc_ids), fingerprint_condition(col.fingerprint)])
    with _store.qdrant_errors(col.client, f"read {col.name!r}"):
        points, _ = col.client.scroll(
            col.name, scroll_filter=_in_scope(col, flt), limit=limit, with_payload=["page_content"]
        )
    texts = [(p.payload or {}).get("page_content") for p in points]
    return [t for t in texts if isinstance(t, str) and t.strip()]

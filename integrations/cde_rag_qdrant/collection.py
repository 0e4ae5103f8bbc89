"""ContextualCollection: a Qdrant collection whose vectors share one stored corpus context.

The context record lives in the collection's metadata (see :mod:`cde_rag_qdrant.record`); every
point carries LangChain's payload layout (``page_content``, ``metadata``) plus the fingerprint of
the context its vector was made with (``cde_context``). The name users pass is a Qdrant alias
over a physical collection ``{name}__cde_g{generation}``, so :meth:`recontextualize` can switch
to a rebuilt collection atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag.sampling import SamplingStrategy
from cde_rag.validation import validate_text, validate_texts
from cde_rag_qdrant import _store, recontextualize
from cde_rag_qdrant._pipeline import PendingBatch, embed_and_upsert
from cde_rag_qdrant._store import read_context, read_record
from cde_rag_qdrant.errors import CollectionEmptyError, CollectionExistsError
from cde_rag_qdrant.names import check_collection_name
from cde_rag_qdrant.payload import (
    CONTENT_PAYLOAD_KEY,
    FINGERPRINT_PAYLOAD_KEY,
    METADATA_PAYLOAD_KEY,
    build_payload,
    check_ids,
    check_metadatas,
    fingerprint_condition,
    hit_from_point,
    metadata_filter,
    point_id,
)
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.results import CollectionSummary, DriftReport, SearchHit

if TYPE_CHECKING:
    from cde_rag_qdrant._pipeline import WindowEmbedder
    from cde_rag_qdrant.documents import DocumentSource
    from cde_rag_qdrant.sync import SyncReport

__all__ = [
    "CONTENT_PAYLOAD_KEY",
    "FINGERPRINT_PAYLOAD_KEY",
    "METADATA_PAYLOAD_KEY",
    "CollectionSummary",
    "ContextualCollection",
    "DriftReport",
    "SearchHit",
    "read_context",
    "read_record",
]

logger = logging.getLogger(__name__)


class ContextualCollection:
    """A Qdrant collection bound to one stored :class:`CorpusContext`.

    Build one with :meth:`create` or :meth:`open`; both decode the stored record, so documents
    and queries are always embedded with bit-identical contexts.

    Attributes:
        client: The Qdrant client.
        name: Collection name (an alias over the current physical collection).
        encoder: The encoder (same model as the stored context).
        context: The decoded stored context.
        fingerprint: Its fingerprint (also on every point's payload).
        record: The stored record (model identity, prefixes, provenance).

    Example:
        >>> from qdrant_client import QdrantClient  # doctest: +SKIP
        >>> client = QdrantClient(path="./cde_data")  # doctest: +SKIP
        >>> col = ContextualCollection.create(client, "kb", encoder, corpus=docs)  # doctest: +SKIP
        >>> col.add(docs)  # doctest: +SKIP
        >>> col.search("who wrote it?", limit=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        client: QdrantClient,
        name: str,
        encoder: CDEEncoder,
        record: ContextRecord,
        context: CorpusContext,
    ) -> None:
        """Bind already-validated parts; use :meth:`create` or :meth:`open` instead."""
        self.client = client
        self.name = name
        self.encoder = encoder
        self.record = record
        self.context = context
        self.fingerprint = context.fingerprint

    def __repr__(self) -> str:
        """Short description."""
        return (
            f"ContextualCollection(name={self.name!r}, fingerprint={self.fingerprint[:12]}…, "
            f"model={self.record.model_id!r}, {_store.describe(self.client)})"
        )

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        client: QdrantClient,
        collection_name: str,
        encoder: CDEEncoder,
        *,
        context: CorpusContext | None = None,
        corpus: Iterable[str] | None = None,
        size: int | None = None,
        seed: int = 0,
        strategy: SamplingStrategy = "uniform",
        show_progress_bar: bool | None = None,
    ) -> ContextualCollection:
        """Create a collection that stores ``context`` (or one built from ``corpus``).

        The physical collection ``{name}__cde_g1`` gets the model's width, cosine distance on
        the unnamed vector and the context record in its metadata; ``name`` becomes an alias
        to it. Nothing existing is ever overwritten.

        Args:
            client: Any QdrantClient (``:memory:``, ``path=...``, server URL).
            collection_name: Name to create.
            encoder: The encoder to embed with.
            context: A ready context (from this encoder's model).
            corpus: Documents to build the context from (when ``context`` is None).
            size: Context rows (default: the model's ``context_size``).
            seed: Sampling seed.
            strategy: ``"uniform"`` or ``"diverse"``.
            show_progress_bar: Progress bar while building the context.

        Returns:
            The collection, bound to the decoded stored context.

        Raises:
            InvalidInputError: Neither or both of ``context`` and ``corpus``.
            CollectionExistsError: ``collection_name`` already exists.
            ContextMismatchError: ``context`` was made by another model.

        Example:
            >>> col = ContextualCollection.create(  # doctest: +SKIP
            ...     client, "notes", encoder, corpus=docs
            ... )
        """
        if (context is None) == (corpus is None):
            msg = (
                "pass exactly one of context= (a CorpusContext) or corpus= (documents to "
                "build one from)."
            )
            raise InvalidInputError(msg)
        check_collection_name(collection_name)
        if _store.exists(client, collection_name):
            msg = (
                f"collection {collection_name!r} already exists in {_store.describe(client)}; "
                "create() never overwrites. Open it with ContextualCollection.open(client, "
                "name, encoder), or pick another name."
            )
            raise CollectionExistsError(msg)
        if context is None:
            context = encoder.build_context(
                cast("Iterable[str]", corpus),  # not None: exactly one was given (checked above)
                size=size,
                seed=seed,
                strategy=strategy,
                show_progress_bar=show_progress_bar,
            )
        record = ContextRecord.from_context(context, encoder, generation=1)
        target = _store.physical_name(collection_name, 1)
        _store.drop_unpublished(client, target)
        _store.create_physical(client, target, encoder.dim, record)
        with _store.qdrant_errors(client, f"create alias {collection_name!r}"):
            client.update_collection_aliases(
                change_aliases_operations=[
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(
                            collection_name=target, alias_name=collection_name
                        )
                    )
                ]
            )
        logger.info(
            "created collection %s (%s) with context %s",
            collection_name,
            target,
            context.fingerprint[:12],
        )
        return cls.open(client, collection_name, encoder)

    @classmethod
    def open(
        cls, client: QdrantClient, collection_name: str, encoder: CDEEncoder
    ) -> ContextualCollection:
        """Open an existing collection: read, decode and validate its context record.

        Args:
            client: Any QdrantClient.
            collection_name: Collection or alias name.
            encoder: The encoder; must be the model that built the stored context.

        Returns:
            The collection.

        Raises:
            CollectionNotFoundError: No such collection or alias.
            CollectionConfigError: The vector config cannot hold this model's vectors.
            ContextMissingError: The collection has no context record (made by another tool).
            ContextCorruptError: The record was modified, truncated or is unreadable.
            ContextMismatchError: The stored context was made by another model.
        """
        info = _store.collection_info(client, collection_name)
        _store.check_vectors(info, collection_name, encoder.dim)
        record = ContextRecord.from_metadata(info.config.metadata, collection_name)
        context = record.to_context(collection_name)
        context.check_compatible(encoder)
        if (record.query_prefix, record.document_prefix) != (
            encoder.query_prefix,
            encoder.document_prefix,
        ):
            logger.warning(
                "collection %s was embedded with prefixes %r / %r; the encoder has %r / %r. "
                "Using the stored prefixes.",
                collection_name,
                record.query_prefix,
                record.document_prefix,
                encoder.query_prefix,
                encoder.document_prefix,
            )
        return cls(client, collection_name, encoder, record, context)

    @classmethod
    def attach_context(
        cls,
        client: QdrantClient,
        collection_name: str,
        encoder: CDEEncoder,
        context: CorpusContext,
    ) -> ContextualCollection:
        """Store a context record on an existing collection that has none.

        Existing points carry no fingerprint of this context, so they are not searchable
        until re-embedded: :meth:`recontextualize` re-embeds every point from its
        ``page_content``. New points added through the returned object are.

        Args:
            client: Any QdrantClient.
            collection_name: An existing collection (made by another tool).
            encoder: The encoder.
            context: The context to attach (from the encoder's model).

        Returns:
            The collection.

        Raises:
            CollectionNotFoundError: No such collection.
            CollectionConfigError: Its vector config cannot hold this model's vectors, or it
                already has a context record (nothing is overwritten).
            ContextMismatchError: ``context`` was made by another model.
        """
        info = _store.collection_info(client, collection_name)
        _store.check_vectors(info, collection_name, encoder.dim)
        record = ContextRecord.from_context(context, encoder)
        _store.attach_record(client, collection_name, record)
        logger.info("attached context %s to %s", context.fingerprint[:12], collection_name)
        return cls.open(client, collection_name, encoder)

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        texts: Iterable[str],
        *,
        ids: Sequence[str] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
    ) -> list[str]:
        """Embed texts under the stored context and upsert them in batches.

        Point ids are deterministic (UUIDv5 of each id, or of the text when no ids are given),
        so re-running an interrupted ingest neither duplicates nor loses points. Everything is
        validated before anything is written.

        Args:
            texts: The documents.
            ids: Your ids (one per text); UUID strings are used as they are.
            metadatas: One JSON-able dict per text (stored under ``metadata``).
            batch_size: Points per upsert (texts are embedded in larger length-sorted windows).
            show_progress_bar: Progress bar (default: when logging at INFO).

        Returns:
            The point ids, in input order.

        Raises:
            InvalidInputError: Bad texts, ids, metadatas or batch size.
            ContextMismatchError: The collection was recontextualized since this object was
                opened (nothing is written: its points would never be searched).
        """
        items = validate_texts(texts)
        keys = check_ids(ids, items)
        metas = check_metadatas(metadatas, len(items))
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            msg = f"batch_size={batch_size!r}; expected a positive int."
            raise InvalidInputError(msg)
        _store.require_current(self.client, self.name, self.fingerprint)

        def batches() -> Iterator[PendingBatch]:
            for start in range(0, len(items), batch_size):
                stop = start + batch_size
                chunk = items[start:stop]
                payloads = [
                    build_payload(t, m, self.fingerprint)
                    for t, m in zip(chunk, metas[start:stop], strict=True)
                ]
                yield PendingBatch(keys[start:stop], chunk, payloads)

        embed_and_upsert(
            self.client,
            self.name,
            self.encoder,
            self.context,
            batches(),
            document_prefix=self.record.document_prefix,
            batch_size=batch_size,
            total=len(items),
            show_progress_bar=show_progress_bar,
        )
        return keys

    def sync(
        self,
        documents: Iterable[DocumentSource],
        *,
        chunk_size: int | None = None,
        chunk_overlap: int = 0,
        prune: bool | models.Filter | Mapping[str, Any] = False,
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        embedder: WindowEmbedder | None = None,
    ) -> SyncReport:
        """Chunk documents and bring the collection in step with them (incremental).

        Each document is hashed and compared with what is stored: an unchanged one is not
        chunked or embedded; a new or changed one is chunked to fit the model window (token
        counts from the model's tokenizer; Markdown at headings, then paragraphs, sentences,
        words), its new chunks are written and then its chunks of other versions deleted.
        Chunk point ids derive from the document id, its version and the chunk index, so
        re-runs are idempotent and a crash at any point converges on the next sync. Every
        input is read and checked before anything is written. See :mod:`cde_rag_qdrant.sync`
        for the chunk metadata.

        Args:
            documents: :class:`~cde_rag_qdrant.documents.Document` objects (or any
                ``DocumentSource``, such as files read on demand); ids unique.
            chunk_size: Most text tokens per chunk (default: ``encoder.max_chunk_tokens``,
                the window minus prefix and special tokens).
            chunk_overlap: Tokens shared by neighbouring chunks.
            prune: ``True``: delete the documents of the collection that are not in
                ``documents``; a filter (or ``{"key": value}`` on metadata): only those
                matching it; ``False`` (default): delete nothing else.
            batch_size: Points per upsert.
            show_progress_bar: Progress bars (default: when logging at INFO).
            embedder: Embed elsewhere, e.g. ``cde_rag_ray.RayEmbedder`` (same windows, same
                vectors; this process stays the single writer). Default: this process.

        Returns:
            Counts of added, updated, unchanged and removed documents and chunks.

        Raises:
            DuplicateDocumentError: Two documents share an id (both places named).
            InvalidInputError: Bad options, ids or metadata (nothing was written).

        Example:
            >>> from cde_rag_qdrant import Document  # doctest: +SKIP
            >>> docs = [Document("faq.md", text, text_format="markdown")]  # doctest: +SKIP
            >>> report = col.sync(docs, prune=True)  # doctest: +SKIP
        """
        from cde_rag_qdrant.chunking import Chunker
        from cde_rag_qdrant.sync import sync_documents

        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            msg = f"batch_size={batch_size!r}; expected a positive int."
            raise InvalidInputError(msg)
        given: object = documents
        if isinstance(given, str | bytes):
            msg = "documents must be a collection of Document objects, not a string."
            raise InvalidInputError(msg)
        chunker = Chunker(self.encoder, chunk_size=chunk_size, chunk_overlap=chunk_overlap)
        return sync_documents(
            self,
            documents,
            chunker,
            prune=prune,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            embedder=embedder,
        )

    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> None:
        """Delete points by id (your ids or point ids) or by a filter.

        Args:
            ids: Ids given to :meth:`add`, or point ids it returned.
            query_filter: A Qdrant filter, or ``{"key": value}`` on metadata.

        Raises:
            InvalidInputError: Neither or both of ``ids`` and ``query_filter``.
        """
        if (ids is None) == (query_filter is None):
            msg = "pass exactly one of ids= or query_filter= (nothing was deleted)."
            raise InvalidInputError(msg)
        if ids is not None:
            if isinstance(ids, str):
                msg = "ids must be a list of ids, not a single string; wrap it: [id]."
                raise InvalidInputError(msg)
            point_ids: list[models.ExtendedPointId] = [point_id(str(k)) for k in ids]
            if not point_ids:
                return
            selector: models.PointsSelector = models.PointIdsList(points=point_ids)
        else:
            flt = metadata_filter(query_filter) or models.Filter()
            selector = models.FilterSelector(filter=flt)
        action = f"delete points of {self.name!r}"
        with _store.qdrant_errors(self.client, action):
            self.client.delete(self.name, points_selector=selector, wait=True)

    # -- reading -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        score_threshold: float | None = None,
        query_filter: models.Filter | Mapping[str, Any] | None = None,
    ) -> list[SearchHit]:
        """Embed ``query`` with the stored context and return the nearest documents.

        Only points made with the stored context (same fingerprint) are returned.

        Args:
            query: The query text (the query prefix is added).
            limit: Most hits.
            score_threshold: Drop hits with a lower cosine similarity.
            query_filter: A Qdrant filter, or ``{"key": value}`` on metadata.

        Returns:
            Hits, best first (empty for an empty collection).

        Raises:
            InvalidInputError: Empty query or bad limit.
            ContextMismatchError: The collection was recontextualized since it was opened.
        """
        validate_text(query, "query")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            msg = f"limit={limit!r}; expected a positive int."
            raise InvalidInputError(msg)
        vector = self.encoder.embed_queries(
            [query], self.context, show_progress_bar=False, prefix=self.record.query_prefix
        )[0]
        must: list[models.Condition] = [fingerprint_condition(self.fingerprint)]
        extra = metadata_filter(query_filter)
        if extra is not None:
            must.append(extra)
        with _store.qdrant_errors(self.client, f"search {self.name!r}"):
            response = self.client.query_points(
                self.name,
                query=vector.tolist(),
                limit=limit,
                score_threshold=score_threshold,
                query_filter=models.Filter(must=must),
                with_payload=True,
            )
        hits = [hit_from_point(p) for p in response.points]
        if not hits:
            _store.check_current(self.client, self.name, self.fingerprint)
        return hits

    def count(self) -> int:
        """Number of points made with the stored context (the searchable ones)."""
        flt = models.Filter(must=[fingerprint_condition(self.fingerprint)])
        with _store.qdrant_errors(self.client, f"count {self.name!r}"):
            return int(self.client.count(self.name, count_filter=flt, exact=True).count)

    def info(self) -> CollectionSummary:
        """Counts, vector config and the provenance of the stored context."""
        return _store.summarize(self.client, self.name, self.record)

    # -- maintenance (see recontextualize.py) ----------------------------------------------

    def drift(
        self,
        texts: Sequence[str] | None = None,
        *,
        sample: int = 512,
        seed: int = 0,
        show_progress_bar: bool | None = None,
    ) -> DriftReport:
        """How far documents sit from the stored context (is recontextualizing worth it?).

        Args:
            texts: Documents to measure, e.g. the ones you are about to add. Default: a
                seeded sample of the collection's own texts.
            sample: Sample size when ``texts`` is None.
            seed: Sampling seed.
            show_progress_bar: Progress bar (default: when logging at INFO).

        Returns:
            The report; ``recommended`` says whether to call :meth:`recontextualize`.

        Raises:
            InvalidInputError: ``texts`` is empty or invalid.
            CollectionEmptyError: ``texts`` is None and the collection holds no texts.
        """
        docs = (
            list(texts)
            if texts is not None
            else recontextualize.sample_texts(self.client, self.name, sample=sample, seed=seed)
        )
        if texts is None and not docs:
            msg = (
                f"collection {self.name!r} holds no texts to measure drift on; add documents "
                f"first (cde-rag ingest PATH --collection {self.name})."
            )
            raise CollectionEmptyError(msg)
        return recontextualize.measure_drift(
            self.encoder, self.context, docs, show_progress_bar=show_progress_bar
        )

    def recontextualize(
        self,
        *,
        size: int | None = None,
        seed: int = 0,
        strategy: SamplingStrategy = "uniform",
        batch_size: int = 64,
        skip_textless: bool = False,
        keep_old: bool = False,
        show_progress_bar: bool | None = None,
    ) -> ContextualCollection:
        """Build a new context from the collection's texts, re-embed, switch the alias.

        Readers see the old index until the alias switches in one operation, then the new
        one; the old physical collection is deleted after the switch (unless ``keep_old``).
        Pause writers while it runs: points written meanwhile are not carried over. This
        object is rebound to the new context; other open objects must be reopened.

        Args:
            size: Context rows (default: the model's ``context_size``).
            seed: Sampling seed.
            strategy: ``"uniform"`` or ``"diverse"``.
            batch_size: Points per upsert (texts are embedded in larger length-sorted windows).
            skip_textless: Drop points without ``page_content`` instead of refusing.
            keep_old: Keep the old physical collection.
            show_progress_bar: Progress bars (default: when logging at INFO).

        Returns:
            ``self``, bound to the new context.

        Raises:
            CollectionConfigError: Points without text (and not ``skip_textless``).
        """
        recontextualize.rebuild(
            self.client,
            self.name,
            self.encoder,
            size=size,
            seed=seed,
            strategy=strategy,
            batch_size=batch_size,
            skip_textless=skip_textless,
            keep_old=keep_old,
            show_progress_bar=show_progress_bar,
        )
        fresh = ContextualCollection.open(self.client, self.name, self.encoder)
        self.record, self.context, self.fingerprint = fresh.record, fresh.context, fresh.fingerprint
        return self

    def drop(self) -> None:
        """Delete the collection: the alias and the physical collection behind it."""
        _store.drop_collection(self.client, self.name)

"""ContextualCollection: a Qdrant collection whose vectors share one stored corpus context.

The context record lives in the collection's metadata (see :mod:`cde_rag_qdrant.record`); every
point carries LangChain's payload layout (``page_content``, ``metadata``) plus the fingerprint of
the context its vector was made with (``cde_context``). The name users pass is a Qdrant alias
over a physical collection ``{name}__cde_g{generation}``, so :meth:`recontextualize` can switch
to a rebuilt collection atomically.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag.sampling import SamplingStrategy
from cde_rag.validation import validate_text, validate_texts
from cde_rag_qdrant import _store, recontextualize
from cde_rag_qdrant import tenants as _tenants
from cde_rag_qdrant._pipeline import PendingBatch, embed_and_upsert
from cde_rag_qdrant._store import read_context, read_record
from cde_rag_qdrant._upload import UploadOptions
from cde_rag_qdrant.errors import CollectionEmptyError, CollectionExistsError
from cde_rag_qdrant.names import check_collection_name
from cde_rag_qdrant.options import CollectionOptions, search_params
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
from cde_rag_qdrant.query import check_mode, query_kwargs
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.results import CollectionSummary, DriftReport, SearchHit
from cde_rag_qdrant.sparse import SparseEncoder, sparse_of

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
        sparse: The lexical encoder of a hybrid collection, else None.
        tenant: The tenant this object reads and writes (its own context), or None.
        upload_options: How :meth:`add` sends points (size limit, retries, parallel
            streams, deferred indexing); assign a new ``UploadOptions`` to change them.

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
        *,
        sparse: SparseEncoder | None = None,
        tenant: str | None = None,
        has_tenants: bool = False,
    ) -> None:
        """Bind already-validated parts; use :meth:`create` or :meth:`open` instead."""
        self.client = client
        self.name = name
        self.encoder = encoder
        self.record = record
        self.context = context
        self.fingerprint = context.fingerprint
        self.sparse = sparse
        self.tenant = tenant
        self._has_tenants = has_tenants or tenant is not None
        self.upload_options = UploadOptions()

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
        hybrid: bool = False,
        options: CollectionOptions | None = None,
        tenant: str | None = None,
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
            hybrid: Add a lexical sparse vector for ``search(mode="hybrid")``.
            options: Quantization, on-disk storage, HNSW, shards (see
                :class:`CollectionOptions`); ``hybrid=True`` also sets its ``hybrid``.
            tenant: Also register this context as ``tenant``'s and return that tenant's view.

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
        opts = options or CollectionOptions()
        if hybrid and not opts.hybrid:
            opts = dataclasses.replace(opts, hybrid=True)
        if tenant is not None:
            _tenants.check_tenant(tenant)
        record = ContextRecord.from_context(context, encoder, generation=1)
        target = _store.physical_name(collection_name, 1)
        _store.drop_unpublished(client, target)
        _store.create_physical(client, target, encoder.dim, record, opts)
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
        col = cls.open(client, collection_name, encoder)
        if tenant is not None:
            return col.add_tenant(tenant, context=context)
        return col

    @classmethod
    def open(
        cls,
        client: QdrantClient,
        collection_name: str,
        encoder: CDEEncoder,
        *,
        tenant: str | None = None,
    ) -> ContextualCollection:
        """Open an existing collection: read, decode and validate its context record.

        Args:
            client: Any QdrantClient.
            collection_name: Collection or alias name.
            encoder: The encoder; must be the model that built the stored context.
            tenant: Open this tenant's view: its context, its points only.

        Returns:
            The collection.

        Raises:
            CollectionNotFoundError: No such collection or alias.
            CollectionConfigError: The vector config cannot hold this model's vectors.
            ContextMissingError: The collection has no context record (made by another tool).
            ContextCorruptError: The record was modified, truncated or is unreadable.
            ContextMismatchError: The stored context was made by another model.
            TenantContextMissingError: ``tenant`` has no context in this collection.
            CollectionConfigError: The sparse vector recorded for hybrid search is missing.
        """
        info = _store.collection_info(client, collection_name)
        _store.check_vectors(info, collection_name, encoder.dim)
        metadata = info.config.metadata
        record = ContextRecord.from_metadata(metadata, collection_name)
        if tenant is not None:
            record = _tenants.tenant_record(metadata, collection_name, tenant)
        sparse = sparse_of(info, collection_name)
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
        return cls(
            client,
            collection_name,
            encoder,
            record,
            context,
            sparse=sparse,
            tenant=tenant,
            has_tenants=_tenants.has_tenants(metadata),
        )

    def add_tenant(
        self,
        tenant: str,
        *,
        context: CorpusContext | None = None,
        corpus: Iterable[str] | None = None,
        size: int | None = None,
        seed: int = 0,
        strategy: SamplingStrategy = "uniform",
        show_progress_bar: bool | None = None,
    ) -> ContextualCollection:
        """Give ``tenant`` its own context (ready, or built from ``corpus``); return its view.

        Args:
            tenant: Tenant name (stored in each of its points' ``tenant`` payload).
            context: A ready context (from this encoder's model).
            corpus: The tenant's documents to build one from (when ``context`` is None).
            size: Context rows (default: the model's ``context_size``).
            seed: Sampling seed.
            strategy: ``"uniform"`` or ``"diverse"``.
            show_progress_bar: Progress bar while building the context.

        Returns:
            The tenant's view (``open(..., tenant=tenant)``).

        Raises:
            InvalidInputError: Bad tenant name, or not exactly one of ``context``/``corpus``.
            CollectionExistsError: The tenant already has a context.
        """
        _tenants.check_tenant(tenant)
        if (context is None) == (corpus is None):
            msg = "pass exactly one of context= or corpus= (the tenant's documents)."
            raise InvalidInputError(msg)
        if context is None and corpus is not None:
            context = self.encoder.build_context(
                corpus, size=size, seed=seed, strategy=strategy, show_progress_bar=show_progress_bar
            )
        if context is None:  # unreachable: narrows the type
            raise InvalidInputError(msg)
        record = ContextRecord.from_context(context, self.encoder)
        _tenants.store_tenant(self.client, self.name, tenant, record)
        view = ContextualCollection.open(self.client, self.name, self.encoder, tenant=tenant)
        view.upload_options = self.upload_options
        self._has_tenants = True
        return view

    def tenants(self) -> list[str]:
        """Tenants of this collection that have their own context."""
        return _tenants.list_tenants(_store.collection_info(self.client, self.name).config.metadata)

    def _require_current(self) -> None:
        """Refuse writes when the stored context moved on since this view was opened."""
        if self.tenant is None:
            _store.require_current(self.client, self.name, self.fingerprint)
        else:
            _tenants.require_current(self.client, self.name, self.tenant, self.fingerprint)

    @property
    def has_tenants(self) -> bool:
        """Whether the collection has tenants (then a view without one sees untenanted points)."""
        return self._has_tenants

    def _scope(self) -> list[models.Condition]:
        """Conditions every read of this object applies: its context and its tenant."""
        return [
            fingerprint_condition(self.fingerprint),
            *_tenants.read_scope(self.tenant, self._has_tenants),
        ]

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
        if self.tenant is not None:
            keys = [_tenants.tenant_point_id(self.tenant, k) for k in keys]
        stamp = {} if self.tenant is None else {_tenants.TENANT_PAYLOAD_KEY: self.tenant}
        metas = check_metadatas(metadatas, len(items))
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            msg = f"batch_size={batch_size!r}; expected a positive int."
            raise InvalidInputError(msg)
        self._require_current()

        def batches() -> Iterator[PendingBatch]:
            for start in range(0, len(items), batch_size):
                stop = start + batch_size
                chunk = items[start:stop]
                payloads = [
                    {**build_payload(t, m, self.fingerprint), **stamp}
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
            sparse=self.sparse,
            upload=self.upload_options,
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
                vectors). On a server its actors also upsert the points they embedded (same
                points, ``upload_options``); with an embedded store this process stays the
                single writer. Default: this process.

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
        self._require_current()
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
            selector = _tenants.delete_selector(self.tenant, self._has_tenants, ids=point_ids)
        else:
            flt = metadata_filter(query_filter) or models.Filter()
            selector = _tenants.delete_selector(self.tenant, self._has_tenants, query_filter=flt)
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
        mode: str = "dense",
        fusion: str = "rrf",
        rescore: bool | None = None,
        oversampling: float | None = None,
        hnsw_ef: int | None = None,
    ) -> list[SearchHit]:
        """Embed ``query`` with the stored context and return the nearest documents.

        Only points made with the stored context (same fingerprint) are returned, and only
        this object's tenant's (or, without a tenant, only points of no tenant).

        Args:
            query: The query text (the query prefix is added).
            limit: Most hits.
            score_threshold: Drop hits with a lower score (cosine similarity for ``"dense"``;
                Qdrant's fused score for ``"hybrid"``).
            query_filter: A Qdrant filter, or ``{"key": value}`` on metadata.
            mode: ``"dense"`` (CDE vectors), ``"sparse"`` (lexical, BM25 weights with
                Qdrant's IDF) or ``"hybrid"`` (both, fused by Qdrant); the last two need a
                collection created with ``hybrid=True``.
            fusion: How Qdrant fuses hybrid results: ``"rrf"`` (reciprocal rank) or
                ``"dbsf"`` (distribution-based score fusion).
            rescore: With quantization: re-rank candidates with the full vectors.
            oversampling: With quantization: fetch ``limit * oversampling`` candidates first.
            hnsw_ef: HNSW search-time candidate list size.

        Returns:
            Hits, best first (empty for an empty collection).

        Raises:
            InvalidInputError: Empty query, bad limit, mode, fusion or search parameters.
            CollectionConfigError: ``"sparse"``/``"hybrid"`` on a dense-only collection.
            ContextMismatchError: The collection was recontextualized since it was opened.
        """
        validate_text(query, "query")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            msg = f"limit={limit!r}; expected a positive int."
            raise InvalidInputError(msg)
        check_mode(mode, fusion, self.sparse, self.name)
        params = search_params(rescore=rescore, oversampling=oversampling, hnsw_ef=hnsw_ef)
        dense = None
        if mode != "sparse":
            dense = self.encoder.embed_queries(
                [query], self.context, show_progress_bar=False, prefix=self.record.query_prefix
            )[0].tolist()
        must = self._scope()
        extra = metadata_filter(query_filter)
        if extra is not None:
            must.append(extra)
        request = query_kwargs(
            mode=mode,
            fusion=fusion,
            dense=dense,
            sparse_vector=None if self.sparse is None else self.sparse.embed_query(query),
            sparse_name=None if self.sparse is None else self.sparse.vector_name,
            limit=limit,
            query_filter=models.Filter(must=must),
            search_params=params,
        )
        with _store.qdrant_errors(self.client, f"search {self.name!r}"):
            response = self.client.query_points(
                self.name,
                limit=limit,
                score_threshold=score_threshold,
                with_payload=True,
                **request,
            )
        hits = [hit_from_point(p) for p in response.points]
        if not hits and self.tenant is None:
            _store.check_current(self.client, self.name, self.fingerprint)
        elif not hits and self.tenant is not None:
            _tenants.check_current(self.client, self.name, self.tenant, self.fingerprint)
        return hits

    def count(self) -> int:
        """Number of points made with the stored context (the searchable ones)."""
        flt = models.Filter(must=self._scope())
        with _store.qdrant_errors(self.client, f"count {self.name!r}"):
            return int(self.client.count(self.name, count_filter=flt, exact=True).count)

    def info(self) -> CollectionSummary:
        """Counts, options and the provenance of the context (this tenant's, if any)."""
        return _store.summarize(
            self.client,
            self.name,
            self.record,
            scope=self._scope()[1:],
            tenant=self.tenant,
            tenants=self.tenants(),
        )

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

        With a tenant, only that tenant's points are re-embedded, in place, under a new
        context built from its texts; other tenants' vectors are not touched.

        Raises:
            CollectionConfigError: Points without text (and not ``skip_textless``), or a
                whole-collection rebuild of a collection with tenants.
        """
        if self.tenant is not None:
            self.record, self.context = _tenants.recontextualize_tenant(
                self.client,
                self.name,
                self.encoder,
                self.tenant,
                sparse=self.sparse,
                size=size,
                seed=seed,
                strategy=strategy,
                batch_size=batch_size,
                upload=self.upload_options,
                show_progress_bar=show_progress_bar,
            )
            self.fingerprint = self.context.fingerprint
            return self
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
            upload=self.upload_options,
        )
        fresh = ContextualCollection.open(self.client, self.name, self.encoder)
        self.record, self.context, self.fingerprint = fresh.record, fresh.context, fresh.fingerprint
        return self

    def drop(self) -> None:
        """Delete the collection: the alias and the physical collection behind it."""
        _store.drop_collection(self.client, self.name)

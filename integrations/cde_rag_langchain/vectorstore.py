"""``CDEQdrantVectorStore``: LangChain's ``QdrantVectorStore`` over a cde-rag collection.

Points written here use cde-rag's layout, which is LangChain's plus two keys::

    {"page_content": <text>, "metadata": {...}, "cde_context": <fingerprint>, "cde_id": <id>}

``cde_id`` keeps your document id (Qdrant point ids are UUIDs: ``"1"`` becomes its UUIDv5), so
``Document.id`` round-trips. Searches return only points of the bound context, and the stale
check rides on them (see :mod:`cde_rag_qdrant.binding`): one request per query.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore, RetrievalMode
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag_langchain import _points
from cde_rag_langchain.embeddings import CDEEmbeddings
from cde_rag_langchain.sparse import lexical_request, with_sparse_defaults
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.binding import BoundContext, require_same
from cde_rag_qdrant.errors import ClientTypeError
from cde_rag_qdrant.store import drop_collection, exists

logger = logging.getLogger(__name__)

_FIXED = {
    "content_payload_key": QdrantVectorStore.CONTENT_KEY,
    "metadata_payload_key": QdrantVectorStore.METADATA_KEY,
    "vector_name": QdrantVectorStore.VECTOR_NAME,
    "distance": models.Distance.COSINE,
}


class CDEQdrantVectorStore(QdrantVectorStore):
    """A ``QdrantVectorStore`` over a cde-rag collection that keeps the context guarantee.

    - The embeddings are :class:`CDEEmbeddings`. Unbound ones are bound here to the
      collection's stored context; ones holding another context are refused.
    - Every point written carries ``cde_context`` (the fingerprint) and ``cde_id`` (your id).
    - Searches return only points of the bound context (``cde_context`` filter). A search
      that comes back short resolves the alias once: a re-contextualized collection raises
      ``ContextMismatchError`` (or rebinds, with ``on_stale="rebind"``). Writes re-read the
      stored record first.
    - ``client`` may be an ``AsyncQdrantClient``: then use the async methods (``aadd_texts``,
      ``aadd_documents``, ``asimilarity_search[_with_score]``, ``aget_by_ids``, ``adelete``).
    - ``retrieval_mode=RetrievalMode.HYBRID`` (or ``SPARSE``) on a hybrid cde-rag collection
      searches its lexical sparse vector too (:class:`CDESparseEmbeddings`, fused by Qdrant);
      points written then carry both vectors.
    - ``tenant=`` binds one tenant of the collection: its own context, its points only
      (stamped on write, filtered on search and delete).
    """

    def __init__(
        self,
        client: QdrantClient | AsyncQdrantClient,
        collection_name: str,
        embedding: Embeddings | None = None,
        *,
        tenant: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap an existing cde-rag collection.

        Args:
            client: A ``QdrantClient`` or an ``AsyncQdrantClient``.
            collection_name: The collection or alias, created by cde-rag.
            embedding: :class:`CDEEmbeddings`, unbound or bound to the collection's context.
            tenant: Work on this tenant only: its own context, its points.
            **kwargs: Other ``QdrantVectorStore`` options; payload keys, vector name and
                distance are fixed to cde-rag's layout. ``retrieval_mode=RetrievalMode.HYBRID``
                (or ``SPARSE``) needs a hybrid collection and a sync client.

        Raises:
            InvalidInputError: Not ``CDEEmbeddings``, or other payload keys / vector name.
            ContextMismatchError: The embeddings hold another context.
            ContextMissingError: The collection has no cde-rag context.
            TenantContextMissingError: ``tenant`` has no context of its own.
            CollectionConfigError: A lexical retrieval mode on a dense-only collection.
        """
        for key, value in _FIXED.items():
            if kwargs.setdefault(key, value) != value:
                msg = (
                    f"{key}={kwargs[key]!r}: cde-rag collections use {key}={value!r} so that "
                    "cde-rag, LangChain and the CLI read the same points; leave it out."
                )
                raise InvalidInputError(msg)
        if not isinstance(embedding, CDEEmbeddings):
            msg = (
                f"CDEQdrantVectorStore needs CDEEmbeddings; got {type(embedding).__name__}. "
                "Use CDEEmbeddings(model_name=...) or qdrant_vector_store(client, name)."
            )
            raise InvalidInputError(msg)
        kwargs.setdefault("validate_collection_config", False)  # cde-rag validates the record
        kwargs.setdefault("validate_embeddings", False)
        kwargs = with_sparse_defaults(client, collection_name, kwargs)
        super().__init__(client, collection_name, embedding, **kwargs)  # type: ignore[arg-type]
        self._cde_embeddings = embedding
        self._cde_client: QdrantClient | AsyncQdrantClient = client
        self._cde_bound: BoundContext | None = None
        self._cde_tenant = tenant
        if not isinstance(client, AsyncQdrantClient):
            on_stale = embedding.on_stale
            self._pair(BoundContext.open(client, collection_name, on_stale=on_stale, tenant=tenant))

    # -- binding -------------------------------------------------------------------------

    def _pair(self, bound: BoundContext) -> None:
        """Bind the store and share the binding with its embeddings."""
        core = self._cde_embeddings.core
        if core.bound is not None:
            require_same(core.bound, bound, "embeddings", self._fix())
        core.adopt(bound)
        self._cde_bound = bound

    async def _apair(self) -> BoundContext:
        if self._cde_bound is None:
            client = self._cde_client
            if not isinstance(client, AsyncQdrantClient):
                msg = "async methods of this store need an AsyncQdrantClient; use the sync ones"
                raise ClientTypeError(msg)
            on_stale, tenant = self._cde_embeddings.on_stale, self._cde_tenant
            bound = await BoundContext.aopen(
                client, self.collection_name, on_stale=on_stale, tenant=tenant
            )
            self._pair(bound)
        return self._bound()

    def _bound(self) -> BoundContext:
        """The binding, after checking the embeddings were not re-bound elsewhere."""
        bound = self._cde_bound
        if bound is None:
            msg = (
                "this store holds an AsyncQdrantClient and binds on its first async call: "
                "await one of its async methods (aadd_texts, asimilarity_search, ...) first."
            )
            raise InvalidInputError(msg)
        if self._cde_embeddings.core.bound is not bound:
            held = self._cde_embeddings.fingerprint
            msg = (
                f"the embeddings of this store are now bound to context {str(held)[:12]}…, but "
                f"collection {self.collection_name!r} holds {bound.fingerprint[:12]}…. Build a "
                "new store with qdrant_vector_store(client, collection_name)."
            )
            raise ContextMismatchError(msg)
        return bound

    def _sync_client(self, what: str) -> QdrantClient:
        client = self._cde_client
        if isinstance(client, AsyncQdrantClient):
            msg = f"{what}: this store holds an AsyncQdrantClient; use the async method (a{what})."
            raise InvalidInputError(msg)
        return client

    def _fix(self) -> str:
        return f"open the store again with qdrant_vector_store(client, {self.collection_name!r})"

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the collection's context (stamped on every point written)."""
        return self._bound().fingerprint

    def check_stale(self, *, full: bool = True) -> None:
        """Raise (or rebind, per ``on_stale``) if the collection holds another context."""
        self._bound().verify(full=full, fix=self._fix())

    # -- writing -------------------------------------------------------------------------

    def add_texts(  # type: ignore[override]
        self,
        texts: Iterable[str],
        metadatas: list[dict[Any, Any]] | None = None,
        ids: Sequence[str | int | None] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[str]:
        """Embed under the stored context and upsert; returns the ids (yours or new UUIDs)."""
        client = self._sync_client("add_texts")
        items, metas, keys = _points.prepare(texts, metadatas, ids)
        bound = self._bound()
        bound.before_write(self._fix())
        for start in range(0, len(items), batch_size):
            stop = start + batch_size
            vectors = self._cde_embeddings._documents(items[start:stop], check=False)
            points = _points.build_points(
                keys[start:stop],
                items[start:stop],
                metas[start:stop],
                vectors,
                bound.fingerprint,
                stamp=bound.stamp(),
                sparse=self._sparse_for(items[start:stop]),
            )
            client.upsert(self.collection_name, points=points, **kwargs)
        return keys

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[Any, Any]] | None = None,
        ids: Sequence[str | int | None] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts` (native with an ``AsyncQdrantClient``)."""
        client = self._cde_client
        if not isinstance(client, AsyncQdrantClient):
            return await asyncio.to_thread(self.add_texts, texts, metadatas, ids, batch_size)
        items, metas, keys = _points.prepare(texts, metadatas, ids)
        bound = await self._apair()
        await bound.averify(full=True, fix=self._fix())
        for start in range(0, len(items), batch_size):
            stop = start + batch_size
            chunk = items[start:stop]
            vectors = await asyncio.to_thread(self._cde_embeddings._documents, chunk, check=False)
            points = _points.build_points(
                keys[start:stop],
                chunk,
                metas[start:stop],
                vectors,
                bound.fingerprint,
                stamp=bound.stamp(),
                sparse=self._sparse_for(chunk),
            )
            await client.upsert(self.collection_name, points=points, **kwargs)
        return keys

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async ``add_documents`` (document ids are kept)."""
        if "ids" not in kwargs and any(d.id for d in documents):
            kwargs["ids"] = [d.id for d in documents]
        texts = [d.page_content for d in documents]
        return await self.aadd_texts(texts, [d.metadata for d in documents], **kwargs)

    def delete(self, ids: list[str | int] | None = None, **kwargs: Any) -> bool | None:  # type: ignore[override]
        """Delete documents by the ids they were added with."""
        client = self._sync_client("delete")
        if ids is None:
            msg = "delete() needs ids=[...] (nothing was deleted)."
            raise InvalidInputError(msg)
        selector = self._delete_selector(ids)
        result = client.delete(self.collection_name, points_selector=selector, **kwargs)
        return result.status == models.UpdateStatus.COMPLETED

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Async :meth:`delete`."""
        client = self._cde_client
        if not isinstance(client, AsyncQdrantClient):
            return await super().adelete(ids, **kwargs)
        if ids is None:
            msg = "adelete() needs ids=[...] (nothing was deleted)."
            raise InvalidInputError(msg)
        await self._apair()
        selector = self._delete_selector(list(ids))
        result = await client.delete(self.collection_name, points_selector=selector, **kwargs)
        return result.status == models.UpdateStatus.COMPLETED

    def _delete_selector(self, ids: Sequence[str | int]) -> models.PointsSelector:
        """The points of ``ids``; of this store's tenant only, when it has one."""
        points = _points.point_ids(ids)
        bound = self._bound()
        if bound.tenant is None:
            return models.PointIdsList(points=points)
        flt = bound.tenant_filter()
        return models.FilterSelector(
            filter=models.Filter(must=[*(flt.must or []), models.HasIdCondition(has_id=points)])
        )

    def _sparse_for(self, texts: list[str]) -> tuple[str, list[models.SparseVector]] | None:
        """The named lexical vectors of ``texts`` (lexical retrieval modes only)."""
        sparse = self._sparse_embeddings if self.retrieval_mode != RetrievalMode.DENSE else None
        if sparse is None:
            return None
        vectors = [
            models.SparseVector(indices=v.indices, values=v.values)
            for v in sparse.embed_documents(texts)
        ]
        return self.sparse_vector_name, vectors

    # -- reading -------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str | int], /) -> list[Document]:
        """Documents by the ids they were added with (missing ids are skipped)."""
        client = self._sync_client("get_by_ids")
        found = client.retrieve(self.collection_name, _points.point_ids(ids), with_payload=True)
        return _points.in_order(ids, found)

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids`."""
        client = self._cde_client
        if not isinstance(client, AsyncQdrantClient):
            return await super().aget_by_ids(ids)
        found = await client.retrieve(
            self.collection_name, _points.point_ids(ids), with_payload=True
        )
        return _points.in_order(ids, found)

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: models.Filter | None = None,
        search_params: models.SearchParams | None = None,
        offset: int = 0,
        score_threshold: float | None = None,
        consistency: models.ReadConsistency | None = None,
        hybrid_fusion: models.FusionQuery | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Embed ``query`` under the bound context and search this context's points.

        One request when ``k`` hits come back; a short result also resolves the alias.
        """
        client = self._sync_client("similarity_search")
        bound = self._bound()
        options: dict[str, Any] = {"offset": offset, "score_threshold": score_threshold}
        options |= {"consistency": consistency, **kwargs}
        while True:
            vector = None
            if self.retrieval_mode != RetrievalMode.SPARSE:
                vector = self._cde_embeddings._query(query, check=False)
            request = lexical_request(
                self, query, vector, k, bound.scoped(filter), search_params, hybrid_fusion
            )
            points = client.query_points(
                self.collection_name, limit=k, with_payload=True, **request, **options
            ).points
            if not bound.after_search(len(points), k, self._fix()):
                return [(_points.to_document(p), p.score) for p in points]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: models.Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score` (native with an ``AsyncQdrantClient``)."""
        client = self._cde_client
        if not isinstance(client, AsyncQdrantClient):
            return await super().asimilarity_search_with_score(query, k, filter=filter, **kwargs)
        bound = await self._apair()
        search_params = kwargs.pop("search_params", None)
        fusion = kwargs.pop("hybrid_fusion", None)
        while True:
            vector = None
            if self.retrieval_mode != RetrievalMode.SPARSE:
                vector = await asyncio.to_thread(self._cde_embeddings._query, query, check=False)
            request = lexical_request(
                self, query, vector, k, bound.scoped(filter), search_params, fusion
            )
            response = await client.query_points(
                self.collection_name, limit=k, with_payload=True, **request, **kwargs
            )
            points = response.points
            if not await bound.aafter_search(len(points), k, self._fix()):
                return [(_points.to_document(p), p.score) for p in points]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """Async ``similarity_search``."""
        pairs = await self.asimilarity_search_with_score(query, k, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: models.Filter | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """Search by a vector (made with this store's embeddings) over this context's points."""
        client = self._sync_client("similarity_search_by_vector")
        bound = self._bound()
        points = client.query_points(
            self.collection_name,
            query=embedding,
            query_filter=bound.scoped(filter),
            limit=k,
            with_payload=True,
            **kwargs,
        ).points
        if bound.after_search(len(points), k, self._fix()):
            msg = "the collection was re-contextualized: embed the query again and retry."
            raise ContextMismatchError(msg)
        return [(_points.to_document(p), p.score) for p in points]

    def max_marginal_relevance_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: models.Filter | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """LangChain's MMR by vector, over this context's points only."""
        results: list[tuple[Document, float]]
        results = super().max_marginal_relevance_search_with_score_by_vector(
            embedding, k, fetch_k, lambda_mult, self._bound().scoped(filter), *args, **kwargs
        )
        return results

    @classmethod
    def _document_from_point(
        cls,
        scored_point: Any,
        collection_name: str,
        content_payload_key: str,
        metadata_payload_key: str,
    ) -> Document:
        """Documents carry your id in ``Document.id`` (no ``_id`` in the metadata)."""
        return _points.to_document(scored_point)

    # -- LangChain's constructors ----------------------------------------------------------

    @classmethod
    def from_texts(  # type: ignore[override]
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[Any, Any]] | None = None,
        ids: Sequence[str | int] | None = None,
        collection_name: str | None = None,
        *,
        client: QdrantClient | None = None,
        batch_size: int = 64,
        force_recreate: bool = False,
        **kwargs: Any,
    ) -> CDEQdrantVectorStore:
        """Create (or open) a cde-rag collection and add ``texts``: LangChain's entry point.

        Where: ``client=``, or LangChain's ``url=``, ``path=``, ``location=`` (and ``api_key``,
        ``host``, ``port``, ...). A new collection stores the embeddings' context; when they
        have none, a context fitted on ``texts`` (sampled down to the model's context size).
        An existing one is opened and its stored context used (``force_recreate`` drops it).
        Also serves ``from_documents``.

        Raises:
            InvalidInputError: Not ``CDEEmbeddings``, or no store location.
            ContextMismatchError: The embeddings hold another context than the collection's.
        """
        options = {k: kwargs.pop(k) for k in _points.CLIENT_OPTIONS if k in kwargs}
        qdrant = _points.open_client(client, options)
        if not isinstance(embedding, CDEEmbeddings):
            msg = f"from_texts needs embedding=CDEEmbeddings(...); got {type(embedding).__name__}."
            raise InvalidInputError(msg)
        name = collection_name or uuid.uuid4().hex
        if force_recreate and exists(qdrant, name):
            drop_collection(qdrant, name)
        if not exists(qdrant, name):
            corpus = (
                None if embedding.context is not None else _points.prepare(texts, None, None)[0]
            )
            ContextualCollection.create(
                qdrant,
                name,
                embedding.encoder,
                context=embedding.context,
                corpus=corpus,
                show_progress_bar=embedding.show_progress,
            )
        store = cls(qdrant, name, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids, batch_size)
        return store

    @classmethod
    def from_existing_collection(  # type: ignore[override]
        cls,
        collection_name: str,
        embedding: Embeddings | None = None,
        *,
        client: QdrantClient | AsyncQdrantClient | None = None,
        **kwargs: Any,
    ) -> CDEQdrantVectorStore:
        """Open a cde-rag collection with its stored context (LangChain's reopen route).

        ``embedding`` may be unbound ``CDEEmbeddings(model_name=...)``: it is bound to the
        stored context. Without it the model recorded with the context is loaded.
        """
        options = {k: kwargs.pop(k) for k in _points.CLIENT_OPTIONS if k in kwargs}
        qdrant = _points.open_client(client, options)
        if embedding is None:
            embedding = CDEEmbeddings.from_qdrant(qdrant, collection_name)
        return cls(qdrant, collection_name, embedding, **kwargs)

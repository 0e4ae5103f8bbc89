"""Glue between LlamaIndex's ``QdrantVectorStore`` and cde-rag Qdrant collections.

LlamaIndex creates its collection lazily and without metadata, so a cde-rag collection (with
its stored context) must exist first: :func:`create_qdrant_store` makes one and
:func:`open_qdrant_store` opens one; both return the store and a :class:`CDEEmbedding` bound to
the collection's context.

Each point written here carries LlamaIndex's payload (the node's metadata as top-level keys,
``_node_content``, ``_node_type``, ``doc_id``, ``document_id``, ``ref_doc_id``) plus cde-rag's
keys, so cde-rag, LangChain and LlamaIndex all read it::

    "page_content": node.get_content(MetadataMode.EMBED)  # exactly the text that was embedded
    "metadata":     node.metadata
    "cde_context":  fingerprint of the collection's context
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, cast

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryResult
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag_llamaindex._pairing import _same_model, attribute
from cde_rag_llamaindex.embedding import CDEEmbedding, recent
from cde_rag_llamaindex.nodes import node_from_cde_payload
from cde_rag_llamaindex.sparse import hybrid_defaults
from cde_rag_qdrant import (
    CONTENT_PAYLOAD_KEY,
    FINGERPRINT_PAYLOAD_KEY,
    METADATA_PAYLOAD_KEY,
    CollectionNotFoundError,
    ContextualCollection,
    _astore,
    _store,
)
from cde_rag_qdrant.binding import BoundContext, StalePolicy, require_same

logger = logging.getLogger(__name__)

_RESERVED = (CONTENT_PAYLOAD_KEY, METADATA_PAYLOAD_KEY, FINGERPRINT_PAYLOAD_KEY)


class CDEQdrantVectorStore(QdrantVectorStore):
    """LlamaIndex ``QdrantVectorStore`` over a cde-rag collection, keeping its context.

    - A missing collection is created on the first ``add``, storing the context the nodes
      were embedded with: the store identifies it among the live :class:`CDEEmbedding`
      instances by re-embedding the first node and comparing (one forward pass), so
      ``VectorStoreIndex.from_documents(docs, storage_context=..., embed_model=CDEEmbedding(
      ...))`` works as with any embedder; vectors it cannot attribute are refused.
    - Query embedding happens here (``is_embedding_query`` is False): the query text is
      embedded with the collection's context by the paired embedding: ``embed_model=``, else
      the newest live ``CDEEmbedding`` of the collection's model (bound to the stored context
      in place), else the recorded model, loaded. The stale check rides on the search (a
      short result resolves the alias); writes re-read the record first.
    - Queries return only points of the bound context and also read points written by
      cde-rag or LangChain. :meth:`clear` keeps the collection and its context.
    - ``aclient=`` alone works: binding happens on the first async call.
    - ``enable_hybrid=True`` on a hybrid cde-rag collection uses its lexical sparse vector
      (cde-rag's offline encoder; ``sparse_doc_fn``/``sparse_query_fn`` and the vector name
      are filled in). ``tenant=`` binds one tenant: its own context, its points only
      (stamped on write, filtered on query, the only ones :meth:`clear` deletes).
    """

    is_embedding_query: bool = False
    _cde_bound: BoundContext | None = PrivateAttr(default=None)
    _cde_embed_model: CDEEmbedding | None = PrivateAttr(default=None)
    _cde_tenant: str | None = PrivateAttr(default=None)

    def __init__(
        self,
        collection_name: str,
        client: QdrantClient | None = None,
        *,
        embed_model: CDEEmbedding | None = None,
        aclient: AsyncQdrantClient | None = None,
        tenant: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap a cde-rag collection (existing, or created on the first ``add``).

        Raises:
            ContextMissingError: The collection exists without a cde-rag context.
            TenantContextMissingError: ``tenant`` has no context of its own.
            ContextMismatchError: ``embed_model`` holds another context.
            InvalidInputError: An ``embed_model`` that is no CDEEmbedding,
                ``fastembed_sparse_model``, or ``enable_hybrid`` on a collection without a
                sparse vector (or without a sync client).
        """
        if embed_model is not None and not isinstance(cast(object, embed_model), CDEEmbedding):
            msg = f"embed_model must be a CDEEmbedding; got {type(embed_model).__name__}."
            raise InvalidInputError(msg)
        kwargs = hybrid_defaults(client, collection_name, kwargs)
        kwargs.setdefault("text_key", CONTENT_PAYLOAD_KEY)
        super().__init__(collection_name=collection_name, client=client, aclient=aclient, **kwargs)
        self._cde_embed_model = embed_model
        self._cde_tenant = tenant
        if client is not None and _store.exists(client, collection_name):
            bound = BoundContext.open(
                client, collection_name, on_stale=self._policy(), tenant=tenant
            )
            self._pair(bound)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "CDEQdrantVectorStore"

    # -- binding -------------------------------------------------------------------------

    def _policy(self) -> StalePolicy:
        model = self._cde_embed_model
        return "raise" if model is None else model.on_stale

    def _fix(self) -> str:
        return f"open the store again with open_qdrant_store(client, {self.collection_name!r})"

    def _pair(self, bound: BoundContext) -> None:
        model = self._cde_embed_model
        if model is not None and model.core.bound is not None:
            require_same(model.core.bound, bound, "embed model", self._fix())
        if model is not None:
            model.core.adopt(bound)
        self._cde_bound = bound
        self._collection_initialized = True

    async def _apair(self) -> BoundContext:
        if self._cde_bound is None:
            self._ensure_async_client()
            if not await _astore.exists(self._aclient, self.collection_name):
                msg = (
                    f"no collection {self.collection_name!r}: with an async client, create it "
                    "first (create_qdrant_store with a sync client, or AsyncContextualCollection)."
                )
                raise CollectionNotFoundError(msg)
            bound = await BoundContext.aopen(
                self._aclient, self.collection_name, tenant=self._cde_tenant
            )
            self._pair(bound)
        return self._bound()

    def _bound(self) -> BoundContext:
        bound = self._cde_bound
        if bound is None:
            msg = (
                f"collection {self.collection_name!r} does not exist yet: add nodes embedded "
                "by a CDEEmbedding first, or create it with create_qdrant_store(...)."
            )
            raise CollectionNotFoundError(msg)
        model = self._cde_embed_model
        if model is not None and model.core.bound is not bound:
            msg = (
                f"the embed model of this store is now bound to context "
                f"{str(model.fingerprint)[:12]}…, but collection {self.collection_name!r} "
                f"holds {bound.fingerprint[:12]}…. Open the store again with "
                "open_qdrant_store(client, collection_name)."
            )
            raise ContextMismatchError(msg)
        return bound

    def _query_model(self) -> CDEEmbedding:
        """The embedding that embeds queries (paired on first use; see the class doc)."""
        bound = self._bound()
        if self._cde_embed_model is None:
            record = bound.record
            model = next(
                (m for m in recent() if record is not None and _same_model(m, record)), None
            )
            if model is None:
                model = CDEEmbedding(model_name=bound.context.provenance.model_id)
            if model.core.bound is not None and model.core.bound.fingerprint != bound.fingerprint:
                model = CDEEmbedding(encoder=model.encoder)
            self._cde_embed_model = model
            model.core.adopt(bound)
        return self._cde_embed_model

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the collection's context (stamped on every point written)."""
        return self._bound().fingerprint

    def check_stale(self, *, full: bool = True) -> None:
        """Raise (or rebind, per ``on_stale``) if the collection or embed model moved on."""
        self._bound().verify(full=full, fix=self._fix())

    # -- writing -------------------------------------------------------------------------

    def add(
        self, nodes: Sequence[BaseNode], shard_identifier: Any | None = None, **add_kwargs: Any
    ) -> list[str]:
        """LlamaIndex's ``add`` after a full stale check (creating the collection if new)."""
        nodes = list(nodes)
        if self._cde_bound is None and nodes:
            self._create_from(nodes)
        self._bound().before_write(self._fix())
        ids: list[str] = super().add(nodes, shard_identifier, **add_kwargs)
        return ids

    async def async_add(
        self, nodes: Sequence[BaseNode], shard_identifier: Any | None = None, **kwargs: Any
    ) -> list[str]:
        """LlamaIndex's ``async_add`` after a full stale check."""
        bound = await self._apair()
        await bound.averify(full=True, fix=self._fix())
        ids: list[str] = await super().async_add(list(nodes), shard_identifier, **kwargs)
        return ids

    def _create_from(self, nodes: list[BaseNode]) -> None:
        """Create the cde-rag collection with the context the nodes were embedded with."""
        client: QdrantClient | None = self._client
        if client is None:
            msg = "creating a collection needs a sync client (client=QdrantClient(...))."
            raise InvalidInputError(msg)
        model = attribute(nodes[0], [self._cde_embed_model, *recent()])
        ContextualCollection.create(
            client, self.collection_name, model.encoder, context=model.context
        )
        self._cde_embed_model = model
        bound = BoundContext.open(
            client, self.collection_name, on_stale=model.on_stale, tenant=self._cde_tenant
        )
        self._pair(bound)

    def _build_points(
        self, nodes: list[BaseNode], sparse_vector_name: str
    ) -> tuple[list[Any], list[str]]:
        """LlamaIndex's points plus ``page_content``, ``metadata`` and ``cde_context``."""
        points, ids = super()._build_points(nodes, sparse_vector_name)
        bound = self._bound()
        fingerprint = bound.fingerprint
        for point, node in zip(points, nodes, strict=True):
            clash = [key for key in _RESERVED if key in node.metadata]
            if clash:
                msg = (
                    f"node {node.node_id} has metadata keys {clash}, which cde-rag reserves "
                    "in the payload; rename them."
                )
                raise InvalidInputError(msg)
            point.payload = {
                **(point.payload or {}),
                CONTENT_PAYLOAD_KEY: node.get_content(metadata_mode=MetadataMode.EMBED),
                METADATA_PAYLOAD_KEY: dict(node.metadata),
                FINGERPRINT_PAYLOAD_KEY: fingerprint,
                **bound.stamp(),
            }
        return points, ids

    def _create_collection(self, collection_name: str, vector_size: int) -> None:
        """Never create a context-less collection."""
        msg = (
            f"collection {collection_name!r} does not exist (any more); recreate it with "
            "cde_rag_llamaindex.create_qdrant_store(...) so it stores its corpus context."
        )
        raise CollectionNotFoundError(msg)

    async def _acreate_collection(self, collection_name: str, vector_size: int) -> None:
        """Never create a context-less collection."""
        self._create_collection(collection_name, vector_size)

    def clear(self) -> None:
        """Delete every point; the collection and its stored context stay."""
        self._client.delete(
            self.collection_name,
            points_selector=models.FilterSelector(filter=self._bound().tenant_filter()),
            wait=True,
        )

    async def aclear(self) -> None:
        """Async :meth:`clear` (needs ``aclient``)."""
        self._ensure_async_client()
        bound = await self._apair()
        await self._aclient.delete(
            self.collection_name,
            points_selector=models.FilterSelector(filter=bound.tenant_filter()),
            wait=True,
        )

    # -- reading -------------------------------------------------------------------------

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Embed the query text under the bound context and search this context's points.

        One request when ``similarity_top_k`` hits come back (a short result also resolves
        the alias); a re-contextualized collection raises, or rebinds and searches again.
        """
        bound = self._bound()
        if kwargs.get("qdrant_filters") is not None:
            kwargs["qdrant_filters"] = bound.scoped(kwargs["qdrant_filters"])
        while True:
            ready = self._with_embedding(query)
            result: VectorStoreQueryResult = super().query(ready, **kwargs)
            n = len(result.nodes or [])
            if not bound.after_search(n, query.similarity_top_k, self._fix()):
                return result
            if query.query_embedding is not None:
                raise bound.stale_error(bound.fingerprint, self._fix())

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query` (needs ``aclient``)."""
        bound = await self._apair()
        if kwargs.get("qdrant_filters") is not None:
            kwargs["qdrant_filters"] = bound.scoped(kwargs["qdrant_filters"])
        while True:
            ready = await asyncio.to_thread(self._with_embedding, query)
            result: VectorStoreQueryResult = await super().aquery(ready, **kwargs)
            n = len(result.nodes or [])
            if not await bound.aafter_search(n, query.similarity_top_k, self._fix()):
                return result
            if query.query_embedding is not None:
                raise bound.stale_error(bound.fingerprint, self._fix())

    def _with_embedding(self, query: VectorStoreQuery) -> VectorStoreQuery:
        if query.query_embedding is not None:
            return query
        if not query.query_str:
            msg = "VectorStoreQuery needs query_str (or query_embedding)."
            raise InvalidInputError(msg)
        model = self._query_model()
        vector = model._embed([query.query_str], query=True, check=False)[0]
        return dataclasses.replace(query, query_embedding=vector)

    def _build_query_filter(self, query: VectorStoreQuery) -> Any:
        """LlamaIndex's filter AND "made with this context"."""
        return self._bound().scoped(super()._build_query_filter(query))

    def parse_to_query_result(self, response: list[Any]) -> VectorStoreQueryResult:
        """LlamaIndex's parsing, plus points in cde-rag's / LangChain's layout."""
        result: VectorStoreQueryResult = super().parse_to_query_result(response)
        nodes = list(result.nodes or [])
        for i, point in enumerate(response):
            node = node_from_cde_payload(point)
            if node is not None:
                nodes[i] = node
        result.nodes = nodes
        return result

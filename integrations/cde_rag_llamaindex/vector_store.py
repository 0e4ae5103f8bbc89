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

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryResult
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, ContextNotSetError, InvalidInputError
from cde_rag_llamaindex.embedding import CDEEmbedding
from cde_rag_llamaindex.nodes import node_from_cde_payload
from cde_rag_llamaindex.sparse import hybrid_defaults
from cde_rag_qdrant import (
    CONTENT_PAYLOAD_KEY,
    FINGERPRINT_PAYLOAD_KEY,
    METADATA_PAYLOAD_KEY,
    CollectionNotFoundError,
    ContextualCollection,
)
from cde_rag_qdrant.binding import (
    CollectionBinding,
    bind,
    choose_context,
    stale_error,
    stored_fingerprint,
)
from cde_rag_qdrant.tenants import tenant_condition, tenant_stamp

logger = logging.getLogger(__name__)

_RESERVED = (CONTENT_PAYLOAD_KEY, METADATA_PAYLOAD_KEY, FINGERPRINT_PAYLOAD_KEY)


class CDEQdrantVectorStore(QdrantVectorStore):
    """LlamaIndex ``QdrantVectorStore`` over a cde-rag collection, keeping its context.

    - It never creates a collection (LlamaIndex would create one without a context): the
      collection must exist (:func:`create_qdrant_store`).
    - Writes re-read the stored context first and refuse a re-contextualized collection, or an
      ``embed_model`` bound to another context. Points get cde-rag's keys (module docstring).
    - Queries return only points made with the stored context (``cde_context``), as
      ``ContextualCollection.search`` does, and also read points written by cde-rag or
      LangChain (``page_content``/``metadata`` without ``_node_content``).
    - :meth:`clear` deletes the points but keeps the collection and its context.

    Nodes that arrive with an embedding already set (not embedded by the paired
    :class:`CDEEmbedding`) cannot be checked: embed them with it.
    """

    _cde_binding: CollectionBinding = PrivateAttr()
    _cde_embed_model: CDEEmbedding | None = PrivateAttr(default=None)

    def __init__(
        self,
        collection_name: str,
        client: QdrantClient,
        *,
        embed_model: CDEEmbedding | None = None,
        tenant: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap an existing cde-rag collection.

        Args:
            collection_name: Collection or alias created by cde-rag.
            client: The Qdrant client (for a local path, the one that opened it).
            embed_model: The :class:`CDEEmbedding` that embeds for this store; its context
                must be the collection's, and writes check it stays so.
            tenant: Work on this tenant only: its context, its points (stamped with
                ``tenant`` on write, filtered on query, the only ones :meth:`clear` deletes).
            **kwargs: Other ``QdrantVectorStore`` options. ``enable_hybrid=True`` on a hybrid
                collection uses its sparse vector (cde-rag's offline lexical encoder).

        Raises:
            CollectionNotFoundError: The collection does not exist.
            ContextMissingError: It has no cde-rag context.
            ContextMismatchError: ``embed_model`` holds another context.
            InvalidInputError: ``enable_hybrid`` on a collection without a sparse vector, or
                ``fastembed_sparse_model``.
        """
        if not client.collection_exists(collection_name):
            msg = (
                f"no collection {collection_name!r}: LlamaIndex would create it lazily without "
                "a corpus context. Create it first with cde_rag_llamaindex.create_qdrant_store("
                f"client, {collection_name!r}, encoder, corpus=...)."
            )
            raise CollectionNotFoundError(msg)
        context, binding = bind(client, collection_name, tenant)
        if embed_model is not None:
            _require_same(embed_model, context, collection_name)
        kwargs = hybrid_defaults(client, collection_name, kwargs)
        kwargs.setdefault("text_key", CONTENT_PAYLOAD_KEY)
        super().__init__(collection_name=collection_name, client=client, **kwargs)
        self._cde_binding = binding
        self._cde_embed_model = embed_model

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "CDEQdrantVectorStore"

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the collection's context (stamped on every point written)."""
        return self._cde_binding.fingerprint

    def check_stale(self, *, full: bool = True) -> None:
        """Raise if the collection or the paired embedding no longer use the bound context.

        Args:
            full: Re-read the stored record (default); ``False``: only when the alias moved.

        Raises:
            ContextMismatchError: The collection was re-contextualized, or the embed model was
                re-bound to another context.
        """
        binding = self._cde_binding
        now = stored_fingerprint(binding, full=full)
        if now != binding.fingerprint:
            fix = (
                f"open the store again with open_qdrant_store(client, {binding.collection_name!r})"
            )
            raise stale_error(binding, now, fix)
        model = self._cde_embed_model
        if model is not None and model.fingerprint != binding.fingerprint:
            msg = (
                f"the embed model of this store is now bound to context "
                f"{str(model.fingerprint)[:12]}…, but collection {binding.collection_name!r} "
                f"holds {binding.fingerprint[:12]}…. Open the store again with "
                "open_qdrant_store(client, collection_name)."
            )
            raise ContextMismatchError(msg)

    # -- writing -------------------------------------------------------------------------

    def add(
        self, nodes: Sequence[BaseNode], shard_identifier: Any | None = None, **add_kwargs: Any
    ) -> list[str]:
        """LlamaIndex's ``add`` after a full stale check."""
        self.check_stale(full=True)
        ids: list[str] = super().add(list(nodes), shard_identifier, **add_kwargs)
        return ids

    async def async_add(
        self, nodes: Sequence[BaseNode], shard_identifier: Any | None = None, **kwargs: Any
    ) -> list[str]:
        """LlamaIndex's ``async_add`` after a full stale check (needs ``aclient``)."""
        self.check_stale(full=True)
        ids: list[str] = await super().async_add(list(nodes), shard_identifier, **kwargs)
        return ids

    def _build_points(
        self, nodes: list[BaseNode], sparse_vector_name: str
    ) -> tuple[list[Any], list[str]]:
        """LlamaIndex's points plus ``page_content``, ``metadata`` and ``cde_context``."""
        points, ids = super()._build_points(nodes, sparse_vector_name)
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
                FINGERPRINT_PAYLOAD_KEY: self.fingerprint,
                **tenant_stamp(self._cde_binding.tenant),
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
            points_selector=models.FilterSelector(filter=self._tenant_filter()),
            wait=True,
        )

    async def aclear(self) -> None:
        """Async :meth:`clear` (needs ``aclient``)."""
        self._ensure_async_client()
        await self._aclient.delete(
            self.collection_name,
            points_selector=models.FilterSelector(filter=self._tenant_filter()),
            wait=True,
        )

    def _tenant_filter(self) -> models.Filter:
        """All points, or this tenant's."""
        tenant = self._cde_binding.tenant
        return models.Filter(must=None if tenant is None else [tenant_condition(tenant)])

    # -- reading -------------------------------------------------------------------------

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """LlamaIndex's ``query`` after the cheap stale check, over this context's points."""
        self.check_stale(full=False)
        if kwargs.get("qdrant_filters") is not None:
            kwargs["qdrant_filters"] = self._scoped(kwargs["qdrant_filters"])
        result: VectorStoreQueryResult = super().query(query, **kwargs)
        return result

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query` (needs ``aclient``)."""
        self.check_stale(full=False)
        if kwargs.get("qdrant_filters") is not None:
            kwargs["qdrant_filters"] = self._scoped(kwargs["qdrant_filters"])
        result: VectorStoreQueryResult = await super().aquery(query, **kwargs)
        return result

    def _build_query_filter(self, query: VectorStoreQuery) -> Any:
        """LlamaIndex's filter AND "made with this context"."""
        return self._scoped(super()._build_query_filter(query))

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

    def _scoped(self, query_filter: models.Filter | None) -> models.Filter:
        must: list[models.Condition] = [
            models.FieldCondition(
                key=FINGERPRINT_PAYLOAD_KEY, match=models.MatchValue(value=self.fingerprint)
            )
        ]
        if self._cde_binding.tenant is not None:
            must.append(tenant_condition(self._cde_binding.tenant))
        if query_filter is not None:
            must.append(query_filter)
        return models.Filter(must=must)


def open_qdrant_store(
    client: QdrantClient,
    collection_name: str,
    embed_model_or_encoder: CDEEmbedding | CDEEncoder | None = None,
    *,
    tenant: str | None = None,
    **kwargs: Any,
) -> tuple[CDEQdrantVectorStore, CDEEmbedding]:
    """Open a cde-rag collection for LlamaIndex: the store and an embedding bound to it.

    Args:
        client: The Qdrant client (for a local path, the one client that opened it).
        collection_name: Collection or alias created by cde-rag.
        embed_model_or_encoder: Supplies the model: :class:`CDEEmbedding` (its encoder and
            options are reused; a context it already holds must be the collection's), a loaded
            ``CDEEncoder``, or None to load the model recorded in the context.
        tenant: Open one tenant of the collection: its own context, its points only.
        **kwargs: Other ``QdrantVectorStore`` options.

    Returns:
        ``(vector_store, embed_model)``: pass both to ``VectorStoreIndex``.

    Raises:
        CollectionNotFoundError: No such collection.
        ContextMissingError: The collection has no cde-rag context.
        ContextMismatchError: The given embedding holds another context, or the model is not
            the one that made the stored context.

    Example:
        >>> store, embed_model = open_qdrant_store(client, "notes", encoder)  # doctest: +SKIP
        >>> index = VectorStoreIndex.from_vector_store(  # doctest: +SKIP
        ...     store, embed_model=embed_model
        ... )
    """
    embed_model = _bound_embedding(client, collection_name, embed_model_or_encoder, tenant)
    store = CDEQdrantVectorStore(
        collection_name, client, embed_model=embed_model, tenant=tenant, **kwargs
    )
    return store, embed_model


def create_qdrant_store(
    client: QdrantClient,
    collection_name: str,
    embed_model_or_encoder: CDEEmbedding | CDEEncoder,
    *,
    context: CorpusContext | None = None,
    corpus: Iterable[str] | None = None,
    size: int | None = None,
    seed: int = 0,
    strategy: Literal["uniform", "diverse"] = "uniform",
    tenant: str | None = None,
    **kwargs: Any,
) -> tuple[CDEQdrantVectorStore, CDEEmbedding]:
    """Create a cde-rag collection (storing its context) and open it for LlamaIndex.

    The context is ``context``, else the one the given embedding holds, else one built from
    ``corpus``.

    Args:
        client: The Qdrant client.
        collection_name: New collection name (nothing existing is overwritten).
        embed_model_or_encoder: :class:`CDEEmbedding` or a loaded ``CDEEncoder``.
        context: The context to store.
        corpus: Documents to build the context from, when no context is given.
        size: Context rows when building (default: the model's).
        seed: Sampling seed when building.
        strategy: ``"uniform"`` or ``"diverse"`` when building.
        tenant: Also register the context as this tenant's and open the tenant's store.
        **kwargs: Other ``QdrantVectorStore`` options; ``enable_hybrid=True`` creates a hybrid
            collection (dense CDE + lexical sparse vector) and searches it in hybrid mode.

    Returns:
        ``(vector_store, embed_model)`` bound to the new collection.

    Raises:
        ContextMismatchError: ``context`` differs from the one the embedding holds.
        CollectionExistsError: The collection already exists.
        InvalidInputError: Neither a context nor a corpus.

    Example:
        >>> store, embed_model = create_qdrant_store(  # doctest: +SKIP
        ...     client, "notes", encoder, corpus=texts
        ... )
        >>> index = VectorStoreIndex.from_documents(  # doctest: +SKIP
        ...     docs,
        ...     storage_context=StorageContext.from_defaults(vector_store=store),
        ...     embed_model=embed_model,
        ... )
    """
    if isinstance(embed_model_or_encoder, CDEEmbedding):
        context = choose_context(context, embed_model_or_encoder.context, "embed model")
        encoder = embed_model_or_encoder.encoder
    else:
        encoder = embed_model_or_encoder
    ContextualCollection.create(
        client,
        collection_name,
        encoder,
        context=context,
        corpus=corpus,
        size=size,
        seed=seed,
        strategy=strategy,
        show_progress_bar=False,
        hybrid=bool(kwargs.get("enable_hybrid")),
        tenant=tenant,
    )
    return open_qdrant_store(
        client, collection_name, embed_model_or_encoder, tenant=tenant, **kwargs
    )


def _bound_embedding(
    client: QdrantClient,
    collection_name: str,
    source: object,
    tenant: str | None = None,
) -> CDEEmbedding:
    """An embedding bound (with stale checks) to ``collection_name``, reusing ``source``."""
    if source is None or isinstance(source, CDEEncoder):
        return CDEEmbedding.from_qdrant(client, collection_name, encoder=source, tenant=tenant)
    if not isinstance(source, CDEEmbedding):
        msg = f"expected CDEEmbedding, a CDEEncoder or None; got {type(source).__name__}."
        raise InvalidInputError(msg)
    binding: CollectionBinding | None = source._binding
    same = (
        binding is not None
        and binding.client is client
        and binding.collection_name == collection_name
        and binding.tenant == tenant
    )
    if (
        same
        and binding is not None
        and stored_fingerprint(binding, full=True) == binding.fingerprint
    ):
        return source
    # otherwise (not bound here, or bound before a re-contextualization) a bound copy
    fields = source.model_dump(
        include={"embed_batch_size", "normalize", "show_progress_bar", "on_stale", "max_length"}
    )
    bound = CDEEmbedding.from_qdrant(
        client,
        collection_name,
        encoder=source.encoder,
        tenant=tenant,
        callback_manager=source.callback_manager,
        **fields,
    )
    if not same:
        _require_same(source, bound.context, collection_name, allow_unbound=True)
    return bound


def _require_same(
    embed_model: CDEEmbedding,
    stored: CorpusContext | None,
    collection_name: str,
    *,
    allow_unbound: bool = False,
) -> None:
    """Refuse an embed model without the collection's context."""
    held = embed_model.context
    if held is None:
        if allow_unbound:
            return
        msg = (
            f"the embed model has no context; collection {collection_name!r} needs its own. "
            f"Use CDEEmbedding.from_qdrant(client, {collection_name!r}) or open_qdrant_store."
        )
        raise ContextNotSetError(msg)
    if stored is None or held.fingerprint != stored.fingerprint:
        now = "none" if stored is None else f"{stored.fingerprint[:12]}…"
        msg = (
            f"the embed model is bound to context {held.fingerprint[:12]}…, but collection "
            f"{collection_name!r} stores context {now}. Vectors under different contexts are "
            f"not comparable: use open_qdrant_store(client, {collection_name!r}) so the "
            "collection's context is used."
        )
        raise ContextMismatchError(msg)

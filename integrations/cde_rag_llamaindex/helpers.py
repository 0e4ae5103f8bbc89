"""Open or create a cde-rag collection for LlamaIndex: the store and its bound embedding."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_llamaindex.embedding import CDEEmbedding
from cde_rag_llamaindex.vector_store import CDEQdrantVectorStore
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.binding import choose_context


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
        **kwargs: Other ``QdrantVectorStore`` options (``enable_hybrid=True`` on a hybrid
            collection).

    Returns:
        ``(vector_store, embed_model)``: pass both to ``VectorStoreIndex``.

    Raises:
        CollectionNotFoundError: No such collection.
        ContextMissingError: The collection has no cde-rag context.
        TenantContextMissingError: ``tenant`` has no context of its own.
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
    client: QdrantClient, collection_name: str, source: object, tenant: str | None = None
) -> CDEEmbedding:
    """An embedding for ``collection_name``, reusing ``source`` (see :func:`open_qdrant_store`)."""
    if source is None or isinstance(source, CDEEncoder):
        return CDEEmbedding.from_qdrant(client, collection_name, encoder=source, tenant=tenant)
    if not isinstance(source, CDEEmbedding):
        msg = f"expected CDEEmbedding, a CDEEncoder or None; got {type(source).__name__}."
        raise InvalidInputError(msg)
    bound = source.core.bound
    if bound is not None and bound.from_collection and bound.collection_name == collection_name:
        # bound here before (maybe before a re-contextualization): a fresh copy
        fields = source.model_dump(
            include={"embed_batch_size", "normalize", "show_progress_bar", "on_stale", "max_length"}
        )
        return CDEEmbedding.from_qdrant(
            client,
            collection_name,
            encoder=source.encoder,
            tenant=tenant,
            callback_manager=source.callback_manager,
            **fields,
        )
    return source

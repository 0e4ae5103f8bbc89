"""Open or create a cde-rag collection as a LangChain store in one call."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_langchain.embeddings import CDEEmbeddings
from cde_rag_langchain.sparse import is_lexical
from cde_rag_langchain.vectorstore import CDEQdrantVectorStore
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.binding import choose_context


def qdrant_vector_store(
    client: QdrantClient,
    collection_name: str,
    embeddings_or_encoder: CDEEmbeddings | CDEEncoder | None = None,
    *,
    tenant: str | None = None,
    **kwargs: Any,
) -> CDEQdrantVectorStore:
    """Open a cde-rag collection as a LangChain vector store bound to its stored context.

    Args:
        client: The Qdrant client.
        collection_name: Collection or alias created by cde-rag.
        embeddings_or_encoder: :class:`CDEEmbeddings` (bound here if unbound; a context it
            holds must be the collection's), a loaded ``CDEEncoder``, or None to load the
            model recorded with the context.
        tenant: Open one tenant of the collection: its own context, its points only.
        **kwargs: Other ``QdrantVectorStore`` options (``retrieval_mode=RetrievalMode.HYBRID``
            on a hybrid collection).

    Raises:
        ContextMissingError: The collection has no cde-rag context.
        TenantContextMissingError: ``tenant`` has no context of its own.
        ContextMismatchError: The given embeddings hold another context.
    """
    source: object = embeddings_or_encoder
    if source is None or isinstance(source, CDEEncoder):
        embeddings = CDEEmbeddings.from_qdrant(
            client, collection_name, encoder=source, tenant=tenant
        )
    elif isinstance(source, CDEEmbeddings):
        embeddings = source
        bound = source.core.bound
        if bound is not None and bound.from_collection and bound.collection_name == collection_name:
            # bound here before (maybe before a re-contextualization, or to another tenant):
            # a fresh copy
            embeddings = CDEEmbeddings.from_qdrant(
                client,
                collection_name,
                encoder=source.encoder,
                tenant=tenant,
                **source.model_dump(
                    exclude={"model_name", "revision", "device", "dtype", "cache_folder"}
                ),
            )
    else:
        msg = f"expected CDEEmbeddings, a CDEEncoder or None; got {type(source).__name__}."
        raise InvalidInputError(msg)
    return CDEQdrantVectorStore(client, collection_name, embeddings, tenant=tenant, **kwargs)


def create_qdrant_vector_store(
    client: QdrantClient,
    collection_name: str,
    embeddings_or_encoder: CDEEmbeddings | CDEEncoder,
    *,
    context: CorpusContext | None = None,
    corpus: Iterable[str] | None = None,
    size: int | None = None,
    seed: int = 0,
    strategy: Literal["uniform", "diverse"] = "uniform",
    tenant: str | None = None,
    **kwargs: Any,
) -> CDEQdrantVectorStore:
    """Create a cde-rag collection (storing its context) and return it as a vector store.

    The context is ``context``, else the one the given embeddings hold, else one built from
    ``corpus`` (see ``ContextualCollection.create``). ``retrieval_mode=RetrievalMode.HYBRID``
    (or ``SPARSE``) creates a hybrid collection (dense CDE + lexical sparse vector) and
    searches it in that mode; ``tenant`` also registers the context as that tenant's and
    opens the tenant's store.

    Raises:
        ContextMismatchError: ``context`` differs from the one the embeddings hold.
        CollectionExistsError: The collection already exists.
        InvalidInputError: Neither a context nor a corpus.
    """
    if isinstance(embeddings_or_encoder, CDEEmbeddings):
        context = choose_context(context, embeddings_or_encoder.context, "embeddings")
        encoder = embeddings_or_encoder.encoder
    else:
        encoder = embeddings_or_encoder
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
        hybrid=is_lexical(kwargs),
        tenant=tenant,
    )
    return qdrant_vector_store(
        client, collection_name, embeddings_or_encoder, tenant=tenant, **kwargs
    )

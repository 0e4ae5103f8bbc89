"""Glue between ``langchain_qdrant.QdrantVectorStore`` and cde-rag Qdrant collections.

Points written here use LangChain's payload layout, which is also cde-rag's own::

    {"page_content": <the embedded text>, "metadata": {...}, "cde_context": <fingerprint>}

so ``ContextualCollection.search`` and the ``cde-rag`` CLI read them, and LangChain reads
points written by cde-rag. Writes refuse embeddings under any context other than the one the
collection stores.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable, Sequence
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, ContextNotSetError, InvalidInputError
from cde_rag_langchain.embeddings import CDEEmbeddings
from cde_rag_langchain.sparse import is_lexical, with_sparse_defaults
from cde_rag_qdrant import FINGERPRINT_PAYLOAD_KEY, ContextualCollection
from cde_rag_qdrant.binding import (
    CollectionBinding,
    bind,
    choose_context,
    stale_error,
    stored_fingerprint,
)
from cde_rag_qdrant.tenants import tenant_condition, tenant_stamp

logger = logging.getLogger(__name__)

_FIXED = {
    "content_payload_key": QdrantVectorStore.CONTENT_KEY,
    "metadata_payload_key": QdrantVectorStore.METADATA_KEY,
    "vector_name": QdrantVectorStore.VECTOR_NAME,
}


class CDEQdrantVectorStore(QdrantVectorStore):
    """A ``QdrantVectorStore`` over a cde-rag collection that keeps the context guarantee.

    - The embeddings must be :class:`CDEEmbeddings` bound to the context the collection stores
      (else ``ContextNotSetError`` / ``ContextMismatchError``).
    - Every written point carries ``cde_context`` (the context fingerprint) in its payload,
      next to LangChain's ``page_content`` and ``metadata``.
    - Searches return only points made with that context (``cde_context`` equal to its
      fingerprint), like ``ContextualCollection.search``; points written by a plain
      ``QdrantVectorStore`` (no ``cde_context``) are not returned.
    - Before each write the stored context is re-read; before each text search the cheap
      alias check runs. A re-contextualized collection is refused with ``ContextMismatchError``
      (build a new store with :func:`qdrant_vector_store`).

    Prefer the helpers :func:`qdrant_vector_store` (open) and :func:`create_qdrant_vector_store`
    (create with a context), which build correctly bound embeddings for you.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection_name: str,
        embedding: Embeddings | None = None,
        *,
        tenant: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap an existing cde-rag collection.

        Args:
            client: The Qdrant client.
            collection_name: The collection or alias, created by cde-rag.
            embedding: :class:`CDEEmbeddings` bound to the collection's context.
            tenant: Work on this tenant only: its context, its points (stamped with
                ``tenant`` on write, filtered on search).
            **kwargs: Other ``QdrantVectorStore`` options. The payload keys and the vector
                name are fixed to cde-rag's layout.

        Raises:
            InvalidInputError: Not a ``CDEEmbeddings``, or other payload keys / vector name.
            ContextNotSetError: The embeddings have no context.
            ContextMismatchError: The embeddings' context is not the collection's.
            ContextMissingError: The collection has no cde-rag context.
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
                "Use qdrant_vector_store(client, collection_name) to get a bound store."
            )
            raise InvalidInputError(msg)
        context, binding = bind(client, collection_name, tenant)
        _require_same(embedding, context, collection_name)
        kwargs = with_sparse_defaults(client, collection_name, kwargs)
        super().__init__(client, collection_name, embedding, **kwargs)
        self._cde_binding = binding
        self._cde_embeddings = embedding

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the collection's context (stamped on every point written)."""
        return self._cde_binding.fingerprint

    def check_stale(self, *, full: bool = True) -> None:
        """Raise if the collection or the embeddings no longer use the bound context.

        Args:
            full: Re-read the stored record (default); ``False``: only when the alias moved.

        Raises:
            ContextMismatchError: The collection was re-contextualized, or the embeddings were
                re-bound to another context.
        """
        binding = self._cde_binding
        now = stored_fingerprint(binding, full=full)
        if now != binding.fingerprint:
            name = binding.collection_name
            fix = f"open the store again with qdrant_vector_store(client, {name!r})"
            raise stale_error(binding, now, fix)
        if self._cde_embeddings.fingerprint != binding.fingerprint:
            msg = (
                f"the embeddings of this store are now bound to context "
                f"{str(self._cde_embeddings.fingerprint)[:12]}…, but collection "
                f"{binding.collection_name!r} holds {binding.fingerprint[:12]}…. Build a new "
                "store with qdrant_vector_store(client, collection_name)."
            )
            raise ContextMismatchError(msg)

    def similarity_search_with_score(
        self,
        query: str,
        k: int = 4,
        filter: models.Filter | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """LangChain's search after the cheap stale check, over this context's points only."""
        self.check_stale(full=False)
        return super().similarity_search_with_score(query, k, self._scoped(filter), *args, **kwargs)

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: models.Filter | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """LangChain's search by vector, over this context's points only."""
        return super().similarity_search_with_score_by_vector(
            embedding, k, self._scoped(filter), *args, **kwargs
        )

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, *args: Any, **kwargs: Any
    ) -> list[Document]:
        """LangChain's MMR search after the cheap stale check."""
        self.check_stale(full=False)
        return super().max_marginal_relevance_search(query, k, *args, **kwargs)

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
        """LangChain's MMR search by vector, over this context's points only."""
        return super().max_marginal_relevance_search_with_score_by_vector(
            embedding, k, fetch_k, lambda_mult, self._scoped(filter), *args, **kwargs
        )

    def _scoped(self, query_filter: models.Filter | None) -> models.Filter:
        """``query_filter`` AND "made with this context" (as ``ContextualCollection.search``)."""
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

    def _generate_batches(
        self,
        texts: Iterable[str],
        metadatas: list[dict[Any, Any]] | None = None,
        ids: Sequence[str | int] | None = None,
        batch_size: int = 64,
    ) -> Generator[tuple[list[str | int], list[models.PointStruct]], Any, None]:
        """LangChain's batches, checked against the stored context and stamped with it."""
        self.check_stale(full=True)
        for batch_ids, points in super()._generate_batches(texts, metadatas, ids, batch_size):
            for point in points:
                point.payload = {
                    **(point.payload or {}),
                    FINGERPRINT_PAYLOAD_KEY: self.fingerprint,
                    **tenant_stamp(self._cde_binding.tenant),
                }
            yield batch_ids, points

    @classmethod
    def from_texts(  # type: ignore[override]
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[Any, Any]] | None = None,
        ids: Sequence[str | int] | None = None,
        *,
        client: QdrantClient | None = None,
        collection_name: str | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> CDEQdrantVectorStore:
        """Create (or open) a cde-rag collection and add ``texts``; LangChain's entry point.

        A new collection stores the embeddings' context, or one fitted on ``texts`` when the
        embeddings have none. Also serves ``from_documents``.

        Args:
            texts: Texts to add.
            embedding: :class:`CDEEmbeddings` (bound or not).
            metadatas: One metadata dict per text.
            ids: Point ids (default: random UUIDs).
            client: The Qdrant client (required: cde-rag never opens a second client).
            collection_name: Collection to create or open (required).
            batch_size: Points per upsert.
            **kwargs: Other ``QdrantVectorStore`` constructor options.

        Returns:
            The store, with the texts added.

        Raises:
            InvalidInputError: Missing client/collection name or not ``CDEEmbeddings``.
            ContextMismatchError: The collection exists with another context.
        """
        if client is None or collection_name is None or not isinstance(embedding, CDEEmbeddings):
            msg = (
                "CDEQdrantVectorStore.from_texts needs embedding=CDEEmbeddings(...), "
                "client=QdrantClient(...) and collection_name=...; it does not open clients "
                "from url/path options (an embedded store allows only one client)."
            )
            raise InvalidInputError(msg)
        if client.collection_exists(collection_name):
            store = qdrant_vector_store(client, collection_name, embedding, **kwargs)
        else:
            corpus = None if embedding.context is not None else texts
            store = create_qdrant_vector_store(
                client, collection_name, embedding, corpus=corpus, **kwargs
            )
        store.add_texts(texts, metadatas, ids, batch_size)
        return store


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
        client: The Qdrant client (for a local path, the one client that opened it).
        collection_name: Collection or alias created by cde-rag.
        embeddings_or_encoder: Supplies the model: :class:`CDEEmbeddings` (its encoder and
            options are reused; a context it already holds must be the collection's), a
            loaded ``CDEEncoder``, or None to load the model recorded in the context.
        tenant: Open one tenant of the collection: its own context, its points only.
        **kwargs: Other ``QdrantVectorStore`` options.

    Returns:
        The store; ``store.embeddings`` is bound to the collection (stale checks included).

    Raises:
        ContextMissingError: The collection has no cde-rag context.
        ContextMismatchError: The given embeddings hold another context, or the model is not
            the one that made the stored context.

    Example:
        >>> store = qdrant_vector_store(client, "notes", encoder)  # doctest: +SKIP
        >>> store.similarity_search("who wrote it?", k=3)  # doctest: +SKIP
    """
    embeddings = _bound_embeddings(client, collection_name, embeddings_or_encoder, tenant)
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
    ``corpus`` (see ``ContextualCollection.create``).

    Args:
        client: The Qdrant client.
        collection_name: New collection name (nothing existing is overwritten).
        embeddings_or_encoder: :class:`CDEEmbeddings` or a loaded ``CDEEncoder``.
        context: The context to store.
        corpus: Documents to build the context from, when no context is given.
        size: Context rows when building (default: the model's).
        seed: Sampling seed when building.
        strategy: ``"uniform"`` or ``"diverse"`` when building.
        tenant: Also register the context as this tenant's and open the tenant's store.
        **kwargs: Other ``QdrantVectorStore`` options; ``retrieval_mode=RetrievalMode.HYBRID``
            (or ``SPARSE``) creates a hybrid collection and searches it in that mode.

    Returns:
        The store bound to the new collection.

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


def _bound_embeddings(
    client: QdrantClient,
    collection_name: str,
    source: object,
    tenant: str | None = None,
) -> CDEEmbeddings:
    """Embeddings bound (with stale checks) to ``collection_name``, reusing ``source``."""
    if source is None or isinstance(source, CDEEncoder):
        return CDEEmbeddings.from_qdrant(client, collection_name, encoder=source, tenant=tenant)
    if not isinstance(source, CDEEmbeddings):
        msg = f"expected CDEEmbeddings, a CDEEncoder or None; got {type(source).__name__}."
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
    bound = CDEEmbeddings.from_qdrant(
        client,
        collection_name,
        encoder=source.encoder,
        tenant=tenant,
        **source.model_dump(exclude={"model_name", "revision", "device"}),
    )
    if not same:
        _require_same(source, bound.context, collection_name, allow_unbound=True)
    return bound


def _require_same(
    embeddings: CDEEmbeddings,
    stored: CorpusContext | None,
    collection_name: str,
    *,
    allow_unbound: bool = False,
) -> None:
    """Refuse embeddings without the collection's context."""
    held = embeddings.context
    if held is None:
        if allow_unbound:
            return
        msg = (
            f"the embeddings have no context; collection {collection_name!r} needs its own. "
            f"Use CDEEmbeddings.from_qdrant(client, {collection_name!r})."
        )
        raise ContextNotSetError(msg)
    if stored is None or held.fingerprint != stored.fingerprint:
        now = "none" if stored is None else f"{stored.fingerprint[:12]}…"
        msg = (
            f"the embeddings are bound to context {held.fingerprint[:12]}…, but collection "
            f"{collection_name!r} stores context {now}. Vectors under different contexts are "
            f"not comparable: use CDEEmbeddings.from_qdrant(client, {collection_name!r}) (or "
            "qdrant_vector_store(client, name)) so the collection's context is used."
        )
        raise ContextMismatchError(msg)

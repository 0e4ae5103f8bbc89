"""CDEEmbedding: a LlamaIndex ``BaseEmbedding`` over a CDE model bound to one corpus context."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from qdrant_client import QdrantClient
from typing_extensions import Self

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextNotSetError, InvalidInputError
from cde_rag_qdrant.binding import CollectionBinding, bind, stale_error, stored_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "jxm/cde-small-v2"
StalePolicy = Literal["raise", "rebind"]
_ENCODER_FIELDS = ("model_name", "revision", "device")
_CACHE_MSG = (
    "CDEEmbedding refuses embeddings_cache: LlamaIndex keys that cache by text alone (not by "
    "context, nor query vs document), so a cached vector from another corpus context or "
    "prefix would be returned silently. Leave embeddings_cache=None; CDE embedding is local "
    "compute, and the Qdrant collection keeps the document vectors."
)


class CDEEmbedding(BaseEmbedding):
    """LlamaIndex embedding for CDE models (``jxm/cde-small-v2`` / ``v1``).

    A CDE vector depends on a corpus context, so the model must be bound to one before it
    embeds: ``context=...``, :meth:`set_context`, :meth:`fit` or :meth:`from_qdrant` (the
    context stored with a cde-rag Qdrant collection). There is no silent fallback.
    Query embeddings use the ``search_query: `` prefix, text (node) embeddings
    ``search_document: ``. Batches follow ``embed_batch_size``. ``embeddings_cache`` is
    refused (see the README: it is keyed by text only).

    When bound with :meth:`from_qdrant`, each call first checks that the collection (or alias)
    still holds the bound context (one alias lookup) and raises ``ContextMismatchError``
    otherwise, or rebinds when ``on_stale="rebind"``.

    Example:
        >>> from cde_rag_llamaindex import CDEEmbedding
        >>> embed_model = CDEEmbedding(model_name="jxm/cde-small-v2").fit(corpus)  # doctest: +SKIP
        >>> embed_model.get_query_embedding("who wrote it?")  # doctest: +SKIP
    """

    model_name: str = Field(
        default=DEFAULT_MODEL,
        description="Hub id or local folder of the CDE checkpoint (from the encoder if given).",
    )
    revision: str | None = Field(default=None, description="Hub branch, tag or commit to pin.")
    device: str = Field(
        default="auto", description="Torch device: 'auto' (cuda, mps, cpu), 'cpu', 'cuda', ..."
    )
    embed_batch_size: int = Field(
        default=32, gt=0, le=2048, description="Texts per embedding call (and forward pass)."
    )
    normalize: bool = Field(default=True, description="L2-normalise the vectors.")
    max_length: int | None = Field(
        default=None, gt=0, description="Token limit per text (default: the checkpoint's, 512)."
    )
    show_progress_bar: bool = Field(
        default=False, description="Show cde-rag's progress bar inside each embedding call."
    )
    on_stale: StalePolicy = Field(
        default="raise",
        description=(
            "When a collection bound by from_qdrant was re-contextualized: 'raise' "
            "ContextMismatchError, or 'rebind' to its new context with a warning."
        ),
    )

    _encoder: CDEEncoder | None = PrivateAttr(default=None)
    _context: CorpusContext | None = PrivateAttr(default=None)
    _binding: CollectionBinding | None = PrivateAttr(default=None)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)

    def __init__(
        self,
        *,
        encoder: CDEEncoder | None = None,
        context: CorpusContext | None = None,
        **data: Any,
    ) -> None:
        """Create the embedding; the model is loaded on first use unless ``encoder`` is given.

        Args:
            encoder: An already-loaded encoder to use (and share). Then ``model_name``,
                ``revision`` and ``device`` come from it and must not be given.
            context: The corpus context to bind (see :meth:`set_context`).
            **data: The fields above and ``BaseEmbedding``'s (``callback_manager``, ...).

        Raises:
            InvalidInputError: ``encoder`` together with model fields, a ``max_length`` that
                differs from the shared encoder's, or an ``embeddings_cache``.
            ContextMismatchError: ``context`` was made by another model.
        """
        if data.get("embeddings_cache") is not None:
            raise InvalidInputError(_CACHE_MSG)
        if encoder is not None:
            clashing = sorted(k for k in _ENCODER_FIELDS if k in data)
            if clashing:
                msg = (
                    f"got encoder= together with {', '.join(clashing)}; these describe the "
                    "encoder to load. Pass either an already-loaded encoder or the model fields."
                )
                raise InvalidInputError(msg)
            data.update(
                model_name=encoder.identity.model_id,
                revision=encoder.identity.revision,
                device=str(encoder.device),
            )
        super().__init__(**data)
        if encoder is not None:
            if self.max_length is not None and self.max_length != encoder.max_length:
                msg = (
                    f"max_length={self.max_length} differs from the shared encoder's "
                    f"({encoder.max_length}); set encoder.max_length instead, or leave it out."
                )
                raise InvalidInputError(msg)
            self._encoder = encoder
        if context is not None:
            self.set_context(context)

    def __setattr__(self, name: str, value: Any) -> None:
        """Refuse ``embeddings_cache`` after construction too."""
        if name == "embeddings_cache" and value is not None:
            raise InvalidInputError(_CACHE_MSG)
        super().__setattr__(name, value)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "CDEEmbedding"

    # -- model and context ---------------------------------------------------------------

    @property
    def encoder(self) -> CDEEncoder:
        """The CDE encoder, loaded on first access.

        Raises:
            CheckpointError: The checkpoint could not be found, downloaded or loaded.
        """
        with self._lock:
            if self._encoder is None:
                self._encoder = CDEEncoder.from_pretrained(
                    self.model_name,
                    revision=self.revision,
                    device=self.device,
                    max_length=self.max_length,
                )
            return self._encoder

    @property
    def context(self) -> CorpusContext | None:
        """The bound corpus context, or None."""
        return self._context

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the bound context, or None."""
        return None if self._context is None else self._context.fingerprint

    @property
    def collection_name(self) -> str | None:
        """The collection (or alias) the context was read from by :meth:`from_qdrant`."""
        return None if self._binding is None else self._binding.collection_name

    def set_context(self, context: CorpusContext) -> None:
        """Bind an explicit context (this also forgets any collection binding).

        Raises:
            InvalidInputError: ``context`` is not a ``CorpusContext``.
            ContextMismatchError: It was made by another model (checked now when the model is
                loaded, else on first use).
        """
        self._set_context(context, None)

    def fit(
        self,
        corpus: Iterable[str],
        *,
        size: int | None = None,
        seed: int = 0,
        strategy: Literal["uniform", "diverse"] = "uniform",
    ) -> Self:
        """Build a context from ``corpus`` with this model and bind it.

        Args:
            corpus: Representative documents (sampled down to the model's context size).
            size: Context rows (default: the model's, 512).
            seed: Sampling seed.
            strategy: ``"uniform"`` or ``"diverse"``.

        Returns:
            This instance, so ``CDEEmbedding(...).fit(corpus)`` chains.

        Raises:
            InvalidInputError: Empty corpus or invalid documents.
        """
        context = self.encoder.build_context(
            corpus,
            size=size,
            seed=seed,
            strategy=strategy,
            batch_size=self.embed_batch_size,
            show_progress_bar=self.show_progress_bar,
        )
        self._set_context(context, None)
        return self

    @classmethod
    def from_qdrant(
        cls,
        client: QdrantClient,
        collection_name: str,
        *,
        encoder: CDEEncoder | None = None,
        tenant: str | None = None,
        **fields: Any,
    ) -> CDEEmbedding:
        """Open a cde-rag Qdrant collection and bind its stored context.

        Args:
            client: The Qdrant client (for a local path, the one client that opened it).
            collection_name: Collection or alias created by cde-rag.
            encoder: An already-loaded encoder. Without it and without ``model_name``, the
                model recorded in the stored context (id and revision) is loaded.
            **fields: Other fields (``embed_batch_size``, ``device``, ``on_stale``, ...).
            tenant: Bind this tenant's own context (a collection with tenants).

        Returns:
            The embedding bound to the collection's context.

        Raises:
            ContextMissingError: The collection has no cde-rag context.
            ContextCorruptError: The stored context does not validate.
            ContextMismatchError: The model is not the one that made the context.
        """
        context, binding = bind(client, collection_name, tenant)
        if encoder is None and "model_name" not in fields:
            fields["model_name"] = context.provenance.model_id
            fields.setdefault("revision", context.provenance.revision)
        embedding = cls(encoder=encoder, **fields)
        context.check_compatible(embedding.encoder)
        embedding._set_context(context, binding)
        return embedding

    def rebind(self) -> CorpusContext:
        """Re-read the context of the collection bound by :meth:`from_qdrant`.

        Returns:
            The newly bound context.

        Raises:
            ContextNotSetError: Not bound to a collection.
            ContextMismatchError: The collection's new context was made by another model.
        """
        if self._binding is None:
            msg = "rebind() needs an instance made by CDEEmbedding.from_qdrant(client, name)."
            raise ContextNotSetError(msg)
        old = self._binding
        context, binding = bind(old.client, old.collection_name, old.tenant)
        context.check_compatible(self.encoder)
        self._set_context(context, binding)
        return context

    def check_stale(self, *, full: bool = True) -> None:
        """Raise if the bound collection no longer holds the bound context.

        Args:
            full: Re-read the stored record (default). ``False`` does the cheap check that
                every embedding call does: re-read only when the alias target changed.

        Raises:
            ContextMismatchError: The collection holds another context now.
        """
        if self._binding is None:
            return
        now = stored_fingerprint(self._binding, full=full)
        if now != self._binding.fingerprint:
            raise stale_error(self._binding, now, self._stale_fix())

    # -- LlamaIndex interface ------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        """Embed one query (``search_query: `` prefix)."""
        return self._embed([query], query=True)[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        """Async query embedding in a worker thread (never blocks the event loop)."""
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        """Embed one text (``search_document: `` prefix)."""
        return self._embed([text], query=False)[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        """Async text embedding in a worker thread."""
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Embed a batch of texts (``search_document: `` prefix) in one call."""
        return self._embed(texts, query=False)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Async batch embedding in a worker thread."""
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    # -- internals -----------------------------------------------------------------------

    def _embed(self, texts: Sequence[str], *, query: bool) -> list[Embedding]:
        context, binding = self._current()
        if self.embeddings_cache is not None:  # set by a path that bypassed __setattr__
            raise InvalidInputError(_CACHE_MSG)
        embed = self.encoder.embed_queries if query else self.encoder.embed_documents
        prefix = None  # the encoder's own prefixes
        if binding is not None:  # the collection's recorded prefixes, as cde-rag uses them
            prefix = binding.query_prefix if query else binding.document_prefix
        with self._lock:
            vectors = embed(
                texts,
                context,
                batch_size=self.embed_batch_size,
                normalize=self.normalize,
                show_progress_bar=self.show_progress_bar,
                prefix=prefix,
            )
        result: list[Embedding] = vectors.tolist()
        return result

    def _set_context(self, context: object, binding: CollectionBinding | None) -> None:
        if not isinstance(context, CorpusContext):
            msg = (
                f"context must be a CorpusContext; got {type(context).__name__}. Load one with "
                "CorpusContext.load(path) or build one with .fit(corpus)."
            )
            raise InvalidInputError(msg)
        with self._lock:
            if self._encoder is not None:
                context.check_compatible(self._encoder)
            self._context = context
            self._binding = binding

    def _stale_fix(self) -> str:
        """The fix named in stale-context errors."""
        name = "?" if self._binding is None else self._binding.collection_name
        return (
            f"call .rebind(), or open it again with {type(self).__name__}.from_qdrant(client, "
            f"{name!r}) (on_stale='rebind' does this automatically)"
        )

    def _current(self) -> tuple[CorpusContext, CollectionBinding | None]:
        """Context (and binding) to embed with, after the cheap stale check."""
        context, binding = self._context, self._binding
        if context is None:
            msg = (
                f"{type(self).__name__} has no corpus context, and CDE vectors depend on one. "
                "Bind it first: CDEEmbedding(context=CorpusContext.load(path)), "
                ".set_context(context), .fit(corpus), or "
                "CDEEmbedding.from_qdrant(client, collection_name) for a cde-rag collection "
                "(or use cde_rag_llamaindex.open_qdrant_store)."
            )
            raise ContextNotSetError(msg)
        if binding is None:
            return context, None
        now = stored_fingerprint(binding, full=False)
        if now == binding.fingerprint:
            return context, binding
        if self.on_stale == "raise":
            raise stale_error(binding, now, self._stale_fix())
        logger.warning(
            "collection %r now holds context %s (was %s): rebinding",
            binding.collection_name,
            now[:12],
            binding.fingerprint[:12],
        )
        self.rebind()
        return self._current()

"""CDEEmbeddings: a LangChain ``Embeddings`` over a CDE model bound to one corpus context."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from qdrant_client import QdrantClient
from typing_extensions import Self

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextNotSetError, InvalidInputError
from cde_rag_qdrant.binding import CollectionBinding, bind, stale_error, stored_fingerprint

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "jxm/cde-small-v2"
StalePolicy = Literal["raise", "rebind"]
_ENCODER_FIELDS = ("model", "model_name", "revision", "device")


class CDEEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings for CDE models (``jxm/cde-small-v2`` / ``v1``).

    A CDE vector depends on a corpus context, so every instance must be bound to one before it
    embeds anything; there is no silent fallback. Bind it with ``context=...``,
    :meth:`set_context`, :meth:`fit` (build one from a corpus) or :meth:`from_qdrant` (the
    context stored with a cde-rag Qdrant collection). Documents get the ``search_document: ``
    prefix and queries ``search_query: ``; vectors are plain Python floats.

    When bound with :meth:`from_qdrant`, every call first checks that the collection (or the
    alias) still holds the bound context (one alias lookup; the stored record is re-read only
    when the alias target changed) and raises ``ContextMismatchError`` otherwise, or rebinds
    when ``on_stale="rebind"``.

    Example:
        >>> from cde_rag_langchain import CDEEmbeddings
        >>> embeddings = CDEEmbeddings(model="jxm/cde-small-v2").fit(corpus)  # doctest: +SKIP
        >>> vector = embeddings.embed_query("who wrote it?")  # doctest: +SKIP
        >>> bound = CDEEmbeddings.from_qdrant(client, "notes")  # doctest: +SKIP
        >>> store = QdrantVectorStore(client, "notes", embedding=bound)  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Hub id or local folder of the CDE checkpoint (ignored when ``encoder`` is given)."""

    revision: str | None = None
    """Hub branch, tag or commit to pin."""

    device: str = "auto"
    """Torch device: ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""

    batch_size: int = Field(default=32, gt=0)
    """Most texts per forward pass."""

    show_progress: bool = False
    """Show a progress bar while embedding or building a context."""

    normalize: bool = True
    """L2-normalise the vectors (use cosine or dot product with them)."""

    max_length: int | None = Field(default=None, gt=0)
    """Token limit per text (default: the checkpoint's, 512); longer texts are cut."""

    on_stale: StalePolicy = "raise"
    """When a collection bound by :meth:`from_qdrant` was re-contextualized: ``"raise"``
    ``ContextMismatchError`` (default) or ``"rebind"`` to its new context with a warning."""

    _encoder: CDEEncoder | None = PrivateAttr(default=None)
    _context: CorpusContext | None = PrivateAttr(default=None)
    _binding: CollectionBinding | None = PrivateAttr(default=None)
    _lock: threading.RLock = PrivateAttr(default_factory=threading.RLock)
    _memo: tuple[tuple[str, str, str, bool, int], list[float]] | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        encoder: CDEEncoder | None = None,
        context: CorpusContext | None = None,
        **data: Any,
    ) -> None:
        """Create the adapter; the model is loaded on first use unless ``encoder`` is given.

        Args:
            encoder: An already-loaded encoder to use (and share between adapters). Then
                ``model``/``model_name``, ``revision`` and ``device`` come from it and must
                not be given.
            context: The corpus context to bind (see :meth:`set_context`).
            **data: The pydantic fields above.

        Raises:
            InvalidInputError: ``encoder`` together with model fields, or a ``max_length``
                that differs from the shared encoder's.
            ContextMismatchError: ``context`` was made by another model.
        """
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

        Args:
            context: E.g. ``CorpusContext.load(path)`` or ``encoder.build_context(corpus)``.

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
            This instance, so ``CDEEmbeddings(...).fit(corpus)`` chains.

        Raises:
            InvalidInputError: Empty corpus or invalid documents.
        """
        context = self.encoder.build_context(
            corpus,
            size=size,
            seed=seed,
            strategy=strategy,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress,
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
    ) -> CDEEmbeddings:
        """Open a cde-rag Qdrant collection and bind its stored context.

        The result is ready for ``langchain_qdrant.QdrantVectorStore(client, collection_name,
        embedding=...)`` (or :func:`cde_rag_langchain.qdrant_vector_store`).

        Args:
            client: The Qdrant client (for a local path, the one client that opened it).
            collection_name: Collection or alias created by cde-rag.
            encoder: An already-loaded encoder. Without it and without ``model``, the model
                recorded in the stored context (id and revision) is loaded.
            **fields: Other fields (``model``, ``device``, ``batch_size``, ``on_stale``, ...).
            tenant: Bind this tenant's own context (a collection with tenants).

        Returns:
            Embeddings bound to the collection's context.

        Raises:
            ContextMissingError: The collection has no cde-rag context.
            ContextCorruptError: The stored context does not validate.
            ContextMismatchError: The model is not the one that made the context.
        """
        context, binding = bind(client, collection_name, tenant)
        if encoder is None and "model" not in fields and "model_name" not in fields:
            fields["model_name"] = context.provenance.model_id
            fields.setdefault("revision", context.provenance.revision)
        embeddings = cls(encoder=encoder, **fields)
        context.check_compatible(embeddings.encoder)
        embeddings._set_context(context, binding)
        return embeddings

    def rebind(self) -> CorpusContext:
        """Re-read the context of the collection bound by :meth:`from_qdrant`.

        Returns:
            The newly bound context.

        Raises:
            ContextNotSetError: Not bound to a collection.
            ContextMismatchError: The collection's new context was made by another model.
        """
        if self._binding is None:
            msg = "rebind() needs an instance made by CDEEmbeddings.from_qdrant(client, name)."
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

    # -- LangChain interface -------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (``search_document: `` prefix) under the bound context.

        Args:
            texts: The documents; empty or whitespace-only items are refused.

        Returns:
            One list of floats per text.

        Raises:
            ContextNotSetError: No context is bound.
            ContextMismatchError: The bound collection was re-contextualized (see ``on_stale``),
                or the context was made by another model.
            InvalidInputError: A text is not a non-empty string.
        """
        context, binding = self._current()
        prefix = self.encoder.document_prefix if binding is None else binding.document_prefix
        # langchain_qdrant embeds ["dummy_text"] to learn the width on every construction and
        # MMR search: remember the last single-text result so that stays cheap.
        key = None
        if len(texts) == 1 and isinstance(texts[0], str):
            key = (context.fingerprint, texts[0], prefix, self.normalize, self.encoder.max_length)
            memo = self._memo
            if memo is not None and memo[0] == key:
                return [list(memo[1])]
        with self._lock:
            vectors = self.encoder.embed_documents(
                texts,
                context,
                batch_size=self.batch_size,
                normalize=self.normalize,
                show_progress_bar=self.show_progress,
                prefix=prefix,
            )
        result: list[list[float]] = vectors.tolist()
        if key is not None:
            self._memo = (key, list(result[0]))
        return result

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (``search_query: `` prefix) under the bound context.

        Raises:
            ContextNotSetError: No context is bound.
            ContextMismatchError: The bound collection was re-contextualized (see ``on_stale``),
                or the context was made by another model.
            InvalidInputError: ``text`` is not a non-empty string.
        """
        context, binding = self._current()
        with self._lock:
            vectors = self.encoder.embed_queries(
                [text],
                context,
                batch_size=self.batch_size,
                normalize=self.normalize,
                show_progress_bar=False,
                prefix=self.encoder.query_prefix if binding is None else binding.query_prefix,
            )
        result: list[float] = vectors[0].tolist()
        return result

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`: runs in a worker thread, never blocking the loop."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`: runs in a worker thread, never blocking the loop."""
        return await asyncio.to_thread(self.embed_query, text)

    # -- internals -----------------------------------------------------------------------

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
            self._memo = None

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
                "Bind it first: CDEEmbeddings(context=CorpusContext.load(path)), "
                ".set_context(context), .fit(corpus), or "
                "CDEEmbeddings.from_qdrant(client, collection_name) for a cde-rag collection."
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

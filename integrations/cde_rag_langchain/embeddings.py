"""CDEEmbeddings: a LangChain ``Embeddings`` over a CDE model bound to one corpus context."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterable
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from qdrant_client import QdrantClient
from typing_extensions import Self

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.binding import StalePolicy
from cde_rag_qdrant.embedder import (
    ContextEmbedder,
    EncodeOptions,
    normalize_dtype,
    split_model_kwargs,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "jxm/cde-small-v2"
_ENCODER_FIELDS = ("model", "model_name", "revision", "device", "dtype", "cache_folder")


class CDEEmbeddings(BaseModel, Embeddings):
    """LangChain embeddings for CDE models (``jxm/cde-small-v2`` / ``v1``).

    A drop-in for ``HuggingFaceEmbeddings``: the same fields where they mean something for a
    CDE model (``model_name``, ``cache_folder``, ``model_kwargs``, ``encode_kwargs``,
    ``query_encode_kwargs``, ``multi_process=False``, ``show_progress``); anything else is
    refused. A CDE vector depends on a corpus context, so an instance embeds only once one is
    bound: ``context=...``, :meth:`set_context`, :meth:`fit`, :meth:`from_qdrant`, or a
    :class:`~cde_rag_langchain.CDEQdrantVectorStore` (which binds the collection's context,
    or fits one from the documents of a new collection).

    When bound to a collection, direct calls first check that it still holds the bound
    context (one alias lookup) and raise ``ContextMismatchError`` otherwise, or rebind when
    ``on_stale="rebind"``. Caches: key them with :attr:`cache_namespace`.

    Example:
        >>> from cde_rag_langchain import CDEEmbeddings
        >>> embeddings = CDEEmbeddings(model_name="jxm/cde-small-v2").fit(corpus)  # doctest: +SKIP
        >>> vector = embeddings.embed_query("who wrote it?")  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    model_name: str = Field(
        default_factory=lambda: os.environ.get("CDE_RAG_MODEL", DEFAULT_MODEL), alias="model"
    )
    """Hub id or local folder of the CDE checkpoint (from the encoder when one is given);
    default ``$CDE_RAG_MODEL``, else ``jxm/cde-small-v2``."""

    revision: str | None = None
    """Hub branch, tag or commit to pin."""

    device: str = Field(default_factory=lambda: os.environ.get("CDE_RAG_DEVICE", "auto"))
    """Torch device: ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"cuda"``, ...; default
    ``$CDE_RAG_DEVICE``, else ``"auto"``."""

    dtype: str = "float32"
    """Compute dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (outputs stay float32)."""

    cache_folder: str | None = None
    """Hugging Face cache folder for the download (as in ``HuggingFaceEmbeddings``)."""

    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """``HuggingFaceEmbeddings``-style load options: ``device``, ``revision``, ``dtype`` /
    ``torch_dtype``, ``cache_folder``, ``trust_remote_code=False``."""

    encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Document encode options: ``batch_size``, ``normalize_embeddings``,
    ``show_progress_bar``, ``prompt`` (replaces the document prefix), ``precision="float32"``."""

    query_encode_kwargs: dict[str, Any] = Field(default_factory=dict)
    """The same for queries (``prompt`` replaces the query prefix)."""

    multi_process: bool = False
    """Only ``False``: one process embeds (use ``device`` to pick the accelerator)."""

    batch_size: int = Field(default=32, gt=0)
    """Most texts per forward pass."""

    show_progress: bool = False
    """Show a progress bar while embedding or building a context."""

    normalize: bool = True
    """L2-normalise the vectors (use cosine or dot product with them)."""

    max_length: int | None = Field(default=None, gt=0)
    """Token limit per text (default: the checkpoint's, 512); longer texts are cut."""

    on_stale: StalePolicy = "raise"
    """When a bound collection was re-contextualized: ``"raise"`` ``ContextMismatchError``
    (default) or ``"rebind"`` to its new context with a warning."""

    _core: ContextEmbedder = PrivateAttr()
    _doc_opts: EncodeOptions = PrivateAttr()
    _query_opts: EncodeOptions = PrivateAttr()
    _memo: tuple[tuple[str, str, int], list[float]] | None = PrivateAttr(default=None)

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
                ``model``/``model_name``, ``revision``, ``device``, ``dtype`` and
                ``cache_folder`` come from it and must not be given.
            context: The corpus context to bind (see :meth:`set_context`).
            **data: The pydantic fields above.

        Raises:
            InvalidInputError: ``encoder`` together with model fields, options cde-rag cannot
                honour, or a ``max_length`` that differs from the shared encoder's.
            ContextMismatchError: ``context`` was made by another model.
        """
        if encoder is not None:
            clashing = sorted(k for k in _ENCODER_FIELDS if k in data)
            if clashing or data.get("model_kwargs"):
                msg = (
                    f"got encoder= together with {', '.join(clashing) or 'model_kwargs'}; these "
                    "describe the encoder to load. Pass either a loaded encoder or the fields."
                )
                raise InvalidInputError(msg)
            data.update(
                model_name=encoder.identity.model_id,
                revision=encoder.identity.revision,
                device=str(encoder.device),
                dtype=str(encoder.dtype).removeprefix("torch."),
            )
        super().__init__(**data)
        owner = type(self).__name__
        if self.multi_process:
            msg = (
                f"{owner}: multi_process=True is not supported: one process embeds, attending "
                "to one context. Pick the accelerator with device= instead."
            )
            raise InvalidInputError(msg)
        load: dict[str, Any] = {
            "revision": self.revision,
            "device": self.device,
            "dtype": self.dtype,
        }
        load |= {"cache_folder": self.cache_folder, "max_length": self.max_length}
        load |= split_model_kwargs(self.model_kwargs, owner)
        load["dtype"] = normalize_dtype(load["dtype"])
        base = EncodeOptions(self.batch_size, self.normalize, self.show_progress)
        self._doc_opts = EncodeOptions.parse(self.encode_kwargs, base, owner)
        self._query_opts = EncodeOptions.parse(self.query_encode_kwargs, base, owner)
        self._core = ContextEmbedder(
            owner=owner,
            model_name=self.model_name,
            load_options=load,
            on_stale=self.on_stale,
            query_prefix=self._query_opts.prefix,
            document_prefix=self._doc_opts.prefix,
        )
        if encoder is not None:
            if self.max_length is not None and self.max_length != encoder.max_length:
                msg = (
                    f"max_length={self.max_length} differs from the shared encoder's "
                    f"({encoder.max_length}); set encoder.max_length instead, or leave it out."
                )
                raise InvalidInputError(msg)
            self._core.encoder_ = encoder
        if context is not None:
            self.set_context(context)

    # -- model and context ---------------------------------------------------------------

    @property
    def encoder(self) -> CDEEncoder:
        """The CDE encoder, loaded on first access."""
        return self._core.encoder

    @property
    def core(self) -> ContextEmbedder:
        """The shared binding engine (for cde-rag's stores)."""
        return self._core

    @property
    def context(self) -> CorpusContext | None:
        """The bound corpus context, or None."""
        return self._core.context

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the bound context, or None."""
        return self._core.fingerprint

    @property
    def collection_name(self) -> str | None:
        """The collection (or alias) the bound context was read from, or None."""
        bound = self._core.bound
        return None if bound is None else bound.collection_name

    @property
    def cache_namespace(self) -> str:
        """Namespace for embedding caches: model identity + context fingerprint + prefixes.

        Use it with LangChain's ``CacheBackedEmbeddings.from_bytes_store(emb, store,
        namespace=emb.cache_namespace)``; a namespace without it (e.g. the model name) is
        refused, because two contexts would share cached vectors.

        Raises:
            ContextNotSetError: No context is bound yet.
        """
        return self._core.identity() + ":"

    def set_context(self, context: CorpusContext) -> None:
        """Bind an explicit context (this also forgets any collection binding).

        Raises:
            InvalidInputError: ``context`` is not a ``CorpusContext``.
            ContextMismatchError: It was made by another model.
        """
        self._core.set_context(context)
        self._memo = None

    def fit(
        self,
        corpus: Iterable[str],
        *,
        size: int | None = None,
        seed: int = 0,
        strategy: Literal["uniform", "diverse"] = "uniform",
    ) -> Self:
        """Build a context from ``corpus`` with this model and bind it; returns ``self``."""
        self._core.fit(
            corpus,
            size=size,
            seed=seed,
            strategy=strategy,
            batch_size=self.batch_size,
            show_progress=self.show_progress,
        )
        self._memo = None
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

        Args:
            client: The Qdrant client.
            collection_name: Collection or alias created by cde-rag.
            encoder: An already-loaded encoder. Without it and without ``model``, the model
                recorded in the stored context (id and revision) is loaded.
            tenant: Bind this tenant's own context (a collection with tenants).
            **fields: Other fields (``model``, ``device``, ``batch_size``, ``on_stale``, ...).

        Raises:
            ContextMissingError: The collection has no cde-rag context.
            TenantContextMissingError: ``tenant`` has no context of its own.
            ContextCorruptError: The stored context does not validate.
            ContextMismatchError: The model is not the one that made the context.
        """
        from cde_rag_qdrant.binding import BoundContext

        on_stale = fields.get("on_stale", "raise")
        bound = BoundContext.open(client, collection_name, on_stale=on_stale, tenant=tenant)
        if encoder is None and "model" not in fields and "model_name" not in fields:
            fields["model_name"] = bound.context.provenance.model_id
            fields.setdefault("revision", bound.context.provenance.revision)
        embeddings = cls(encoder=encoder, **fields)
        bound.context.check_compatible(embeddings.encoder)
        embeddings._core.adopt(bound)
        return embeddings

    def rebind(self) -> CorpusContext:
        """Re-read the context of the bound collection (stores sharing it follow).

        Raises:
            ContextNotSetError: Not bound to a collection.
            ContextMismatchError: The collection's new context was made by another model.
        """
        self._memo = None
        return self._core.rebind()

    def check_stale(self, *, full: bool = True) -> None:
        """Raise if the bound collection no longer holds the bound context.

        Args:
            full: Re-read the stored record (default); ``False``: only when the alias moved.
        """
        self._core.check_stale(full=full)

    # -- LangChain interface -------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (document prefix) under the bound context.

        Raises:
            ContextNotSetError: No context is bound.
            ContextMismatchError: The bound collection was re-contextualized (see ``on_stale``).
            InvalidInputError: A text is not a non-empty string, or a cache wrapper around
                these embeddings uses a namespace without :attr:`cache_namespace`.
        """
        self._guard_cache(sys._getframe(1))
        return self._documents(texts, check=True)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query (query prefix) under the bound context."""
        self._guard_cache(sys._getframe(1))
        return self._query(text, check=True)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`: runs in a worker thread, never blocking the loop."""
        self._guard_cache(sys._getframe(1))
        return await asyncio.to_thread(self._documents, texts, check=True)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`: runs in a worker thread, never blocking the loop."""
        self._guard_cache(sys._getframe(1))
        return await asyncio.to_thread(self._query, text, check=True)

    # -- internals (also used by CDEQdrantVectorStore, which checks via its searches) -----

    def _documents(self, texts: list[str], *, check: bool) -> list[list[float]]:
        bound = self._core.current(check=check)
        # langchain_qdrant embeds ["dummy_text"] to learn the width: keep that cheap.
        key = None
        if isinstance(texts, list) and len(texts) == 1 and isinstance(texts[0], str):
            key = (bound.fingerprint, texts[0], id(self._doc_opts))
            memo = self._memo
            if memo is not None and memo[0] == key:
                return [list(memo[1])]
        vectors = self._core.embed(texts, query=False, options=self._doc_opts, bound=bound)
        result: list[list[float]] = vectors.tolist()
        if key is not None:
            self._memo = (key, list(result[0]))
        return result

    def _query(self, text: str, *, check: bool) -> list[float]:
        bound = self._core.current(check=check)
        vectors = self._core.embed([text], query=True, options=self._query_opts, bound=bound)
        result: list[float] = vectors[0].tolist()
        return result

    def _guard_cache(self, frame: Any) -> None:
        """Refuse a known cache wrapper whose namespace lacks this context's identity."""
        caller = frame.f_locals.get("self") if frame is not None else None
        if caller is None or getattr(caller, "underlying_embeddings", None) is not self:
            return
        store = getattr(caller, "document_embedding_store", None)
        encode = getattr(store, "key_encoder", None)
        key = encode("probe") if callable(encode) else ""
        if self._core.bound is not None and str(key).startswith(self.cache_namespace):
            return
        msg = (
            f"{type(caller).__name__} caches these CDE embeddings under a namespace without "
            "their context (e.g. the model name): vectors of another corpus context would be "
            "returned for the same text. Use CacheBackedEmbeddings.from_bytes_store(emb, "
            "store, namespace=emb.cache_namespace) (model identity + context fingerprint), "
            "after binding the context."
        )
        raise InvalidInputError(msg)

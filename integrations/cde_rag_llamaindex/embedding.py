"""CDEEmbedding: a LlamaIndex ``BaseEmbedding`` over a CDE model bound to one corpus context."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from pydantic import computed_field
from qdrant_client import QdrantClient
from typing_extensions import Self

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.binding import BoundContext, StalePolicy
from cde_rag_qdrant.embedder import (
    ContextEmbedder,
    EncodeOptions,
    normalize_dtype,
    split_model_kwargs,
)

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "jxm/cde-small-v2"
_ENCODER_FIELDS = ("model_name", "revision", "device", "dtype", "cache_folder", "model_kwargs")
_CACHE_MSG = (
    "CDEEmbedding refuses embeddings_cache: LlamaIndex keys that cache by text alone (not by "
    "context, nor query vs document), so a cached vector from another corpus context or "
    "prefix would be returned silently. Leave embeddings_cache=None; CDE embedding is local "
    "compute, and the Qdrant collection keeps the document vectors."
)
_LIVE: list[weakref.ref[CDEEmbedding]] = []
"""Recently created instances, newest last (stores pair with them; see ``recent``)."""


def recent() -> list[CDEEmbedding]:
    """Live ``CDEEmbedding`` instances of this process, newest first."""
    alive = [e for e in (r() for r in _LIVE) if e is not None]
    _LIVE[:] = [weakref.ref(e) for e in alive[-16:]]
    return alive[::-1]


class CDEEmbedding(BaseEmbedding):
    """LlamaIndex embedding for CDE models (``jxm/cde-small-v2`` / ``v1``).

    A drop-in for ``HuggingFaceEmbedding``: the same fields where they mean something for a
    CDE model (``model_name``, ``max_length``, ``query_instruction`` / ``text_instruction``
    as prefixes, ``normalize``, ``embed_batch_size``, ``cache_folder``, ``device``, ``dtype``,
    ``model_kwargs``, ``trust_remote_code=False``, ``show_progress_bar``); anything else is
    refused. Query embeddings use the query prefix, text (node) embeddings the document
    prefix. ``embeddings_cache`` is refused (keyed by text only).

    Context: ``context=...``, :meth:`set_context`, :meth:`fit`, :meth:`from_qdrant`, or a
    :class:`~cde_rag_llamaindex.CDEQdrantVectorStore` (which binds the collection's). With
    ``auto_fit=True`` (default) an unbound instance fits its context on the first batch of
    texts it embeds: ``VectorStoreIndex.from_documents`` hands it the nodes of its first
    insert batch (up to 2048), so a new collection's context is sampled from the nodes
    inserted. Queries never fit: an unbound query raises ``ContextNotSetError``.

    The serialised form (``to_dict()``, hence ``IngestionPipeline``'s cache key) contains
    ``cde_identity``: the weights hash and the context fingerprint.

    Example:
        >>> from cde_rag_llamaindex import CDEEmbedding
        >>> embed_model = CDEEmbedding(model_name="jxm/cde-small-v2").fit(corpus)  # doctest: +SKIP
        >>> embed_model.get_query_embedding("who wrote it?")  # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = Field(default=DEFAULT_MODEL, description="Hub id or local folder.")
    revision: str | None = Field(default=None, description="Hub branch, tag or commit to pin.")
    device: str = Field(default="auto", description="'auto' (cuda, mps, cpu), 'cpu', 'cuda', ...")
    dtype: str = Field(default="float32", description="float32, bfloat16 or float16 compute.")
    cache_folder: str | None = Field(default=None, description="Hugging Face cache folder.")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="HF-style load options: device, revision, dtype/torch_dtype, cache_folder.",
    )
    trust_remote_code: bool = Field(default=False, description="Only False: code never runs.")
    query_instruction: str | None = Field(
        default=None, description="Prefix replacing the model's query prefix."
    )
    text_instruction: str | None = Field(
        default=None, description="Prefix replacing the model's document prefix."
    )
    embed_batch_size: int = Field(default=32, gt=0, le=2048, description="Texts per call.")
    normalize: bool = Field(default=True, description="L2-normalise the vectors.")
    max_length: int | None = Field(default=None, gt=0, description="Token limit per text.")
    show_progress_bar: bool = Field(default=False, description="cde-rag's progress bar.")
    auto_fit: bool = Field(
        default=True, description="Fit a context on the first texts embedded while unbound."
    )
    on_stale: StalePolicy = Field(
        default="raise",
        description="A re-contextualized collection: 'raise' or 'rebind' (with a warning).",
    )

    _core: ContextEmbedder = PrivateAttr()

    def __init__(
        self,
        *,
        encoder: CDEEncoder | None = None,
        context: CorpusContext | None = None,
        **data: Any,
    ) -> None:
        """Create the embedding; the model is loaded on first use unless ``encoder`` is given.

        Args:
            encoder: An already-loaded encoder to use (and share). Then the model fields
                come from it and must not be given.
            context: The corpus context to bind (see :meth:`set_context`).
            **data: The fields above and ``BaseEmbedding``'s (``callback_manager``, ...).

        Raises:
            InvalidInputError: ``encoder`` with model fields, options cde-rag cannot honour,
                a ``max_length`` that differs from the shared encoder's, or a cache.
            ContextMismatchError: ``context`` was made by another model.
        """
        if data.get("embeddings_cache") is not None:
            raise InvalidInputError(_CACHE_MSG)
        data.pop("cde_identity", None)  # the computed field, when re-created from to_dict()
        data.pop("class_name", None)  # added by LlamaIndex's model_dump
        if encoder is not None:
            clashing = sorted(k for k in _ENCODER_FIELDS if data.get(k))
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
                dtype=str(encoder.dtype).removeprefix("torch."),
            )
        super().__init__(**data)
        owner = type(self).__name__
        if self.trust_remote_code:
            split_model_kwargs({"trust_remote_code": True}, owner)  # raises with the reason
        load: dict[str, Any] = {"revision": self.revision, "device": self.device}
        load |= {"dtype": normalize_dtype(self.dtype), "max_length": self.max_length}
        load |= {"cache_folder": self.cache_folder}
        load |= split_model_kwargs(self.model_kwargs, owner)
        self._core = ContextEmbedder(
            owner=owner,
            model_name=self.model_name,
            load_options=load,
            on_stale=self.on_stale,
            query_prefix=self.query_instruction,
            document_prefix=self.text_instruction,
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
        _LIVE.append(weakref.ref(self))

    def __setattr__(self, name: str, value: Any) -> None:
        """Refuse ``embeddings_cache`` after construction too."""
        if name == "embeddings_cache" and value is not None:
            raise InvalidInputError(_CACHE_MSG)
        super().__setattr__(name, value)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "CDEEmbedding"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cde_identity(self) -> str:
        """Weights hash + context fingerprint + prefixes ("unbound" before a context is set).

        Part of ``to_dict()``, so LlamaIndex's ``IngestionPipeline`` cache (keyed by the
        transformation's serialised fields) never returns another context's vectors.
        """
        core = getattr(self, "_core", None)
        if core is None or core.bound is None:
            return f"unbound:{self.model_name}"
        return str(core.identity())

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

    def set_context(self, context: CorpusContext) -> None:
        """Bind an explicit context (this also forgets any collection binding)."""
        self._core.set_context(context)

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
            batch_size=self.embed_batch_size,
            show_progress=self.show_progress_bar,
        )
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

        Without ``encoder`` and ``model_name``, the model recorded with the context is loaded.
        ``tenant`` binds that tenant's own context (a collection with tenants).

        Raises:
            ContextMissingError: The collection has no cde-rag context.
            TenantContextMissingError: ``tenant`` has no context of its own.
            ContextCorruptError: The stored context does not validate.
            ContextMismatchError: The model is not the one that made the context.
        """
        on_stale = fields.get("on_stale", "raise")
        bound = BoundContext.open(client, collection_name, on_stale=on_stale, tenant=tenant)
        if encoder is None and "model_name" not in fields:
            fields["model_name"] = bound.context.provenance.model_id
            fields.setdefault("revision", bound.context.provenance.revision)
        embedding = cls(encoder=encoder, **fields)
        bound.context.check_compatible(embedding.encoder)
        embedding._core.adopt(bound)
        return embedding

    def rebind(self) -> CorpusContext:
        """Re-read the context of the bound collection (stores sharing it follow)."""
        return self._core.rebind()

    def check_stale(self, *, full: bool = True) -> None:
        """Raise (or rebind, per ``on_stale``) if the bound collection moved on."""
        self._core.check_stale(full=full)

    # -- LlamaIndex interface ------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        """Embed one query (query prefix)."""
        return self._embed([query], query=True)[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        """Async query embedding in a worker thread (never blocks the event loop)."""
        return await asyncio.to_thread(self._get_query_embedding, query)

    def _get_text_embedding(self, text: str) -> Embedding:
        """Embed one text (document prefix)."""
        return self._embed([text], query=False)[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        """Async text embedding in a worker thread."""
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Embed a batch of texts (document prefix) in one call."""
        return self._embed(texts, query=False)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        """Async batch embedding in a worker thread."""
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """LlamaIndex's batch call; an unbound ``auto_fit`` model fits on ``texts`` first."""
        self._maybe_fit(texts)
        result: list[Embedding] = super().get_text_embedding_batch(texts, show_progress, **kwargs)
        return result

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        await asyncio.to_thread(self._maybe_fit, texts)
        result: list[Embedding] = await super().aget_text_embedding_batch(texts, show_progress)
        return result

    # -- internals -----------------------------------------------------------------------

    def _maybe_fit(self, texts: Sequence[str]) -> None:
        if isinstance(texts, str | bytes):
            msg = "texts must be a list of strings, not a single string; wrap it: [text]."
            raise InvalidInputError(msg)
        if self._core.bound is None and self.auto_fit and texts:
            logger.info("CDEEmbedding: fitting a context on the first %d texts", len(texts))
            self.fit([t for t in texts if isinstance(t, str) and t.strip()])

    def _embed(self, texts: Sequence[str], *, query: bool, check: bool = True) -> list[Embedding]:
        if self.embeddings_cache is not None:  # set by a path that bypassed __setattr__
            raise InvalidInputError(_CACHE_MSG)
        if not query and self._core.bound is None:
            self._maybe_fit(texts)
        options = EncodeOptions(self.embed_batch_size, self.normalize, self.show_progress_bar)
        vectors = self._core.embed(list(texts), query=query, options=options, check=check)
        result: list[Embedding] = vectors.tolist()
        return result

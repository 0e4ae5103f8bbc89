"""ContextEmbedder: the embedding engine both framework adapters wrap.

It owns what is the same in LangChain and LlamaIndex: loading the model lazily with the
familiar Hugging Face options, the bound context (:class:`BoundContext`), fitting one, binding
to a collection, the stale policy, prefixes and the cache identity. The adapters keep only
their host's method names and fields.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from qdrant_client import AsyncQdrantClient, QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextNotSetError, InvalidInputError
from cde_rag_qdrant.binding import BoundContext, StalePolicy

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
_DTYPES |= {"float16": "float16", "fp16": "float16", "half": "float16"}
_MODEL_KWARGS = ("device", "revision", "dtype", "torch_dtype", "cache_folder", "trust_remote_code")
_ENCODE_KWARGS = ("batch_size", "normalize_embeddings", "show_progress_bar", "prompt", "precision")


def normalize_dtype(value: object) -> str:
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` from a name or a ``torch.dtype``.

    Raises:
        InvalidInputError: Anything else.
    """
    name = str(value).removeprefix("torch.")
    if name not in _DTYPES:
        msg = f"dtype={value!r}; expected one of float32, bfloat16, float16 (or torch dtypes)."
        raise InvalidInputError(msg)
    return _DTYPES[name]


def split_model_kwargs(model_kwargs: Mapping[str, Any] | None, owner: str) -> dict[str, Any]:
    """Map Hugging Face ``model_kwargs`` onto cde-rag's load options; refuse the rest.

    Returns:
        Keys among ``device``, ``revision``, ``dtype``, ``cache_folder``.

    Raises:
        InvalidInputError: An unknown key, or ``trust_remote_code=True``.
    """
    out: dict[str, Any] = {}
    for key, value in dict(model_kwargs or {}).items():
        if key not in _MODEL_KWARGS:
            msg = (
                f"{owner}: model_kwargs[{key!r}] has no meaning for cde-rag's native CDE "
                f"model; supported keys: {', '.join(_MODEL_KWARGS)}."
            )
            raise InvalidInputError(msg)
        if key == "trust_remote_code":
            if value:
                msg = (
                    f"{owner}: trust_remote_code=True is not needed and never honoured: cde-rag "
                    "runs its own native implementation and never executes model-repository "
                    "code. Leave it out."
                )
                raise InvalidInputError(msg)
            continue
        out["dtype" if key == "torch_dtype" else key] = value
    if "dtype" in out:
        out["dtype"] = normalize_dtype(out["dtype"])
    return out


@dataclass
class EncodeOptions:
    """Per-call options (from ``encode_kwargs`` / ``query_encode_kwargs`` or fields)."""

    batch_size: int = 32
    normalize: bool = True
    show_progress: bool = False
    prefix: str | None = None

    @classmethod
    def parse(
        cls, kwargs: Mapping[str, Any] | None, base: EncodeOptions, owner: str
    ) -> EncodeOptions:
        """Overlay sentence-transformers ``encode`` kwargs on ``base``; refuse the rest.

        Raises:
            InvalidInputError: An unknown key or a value cde-rag cannot honour.
        """
        opts = EncodeOptions(base.batch_size, base.normalize, base.show_progress, base.prefix)
        for key, value in dict(kwargs or {}).items():
            if key not in _ENCODE_KWARGS:
                msg = (
                    f"{owner}: encode option {key!r} has no meaning for cde-rag; supported: "
                    f"{', '.join(_ENCODE_KWARGS)}."
                )
                raise InvalidInputError(msg)
            if key == "batch_size":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    msg = f"{owner}: batch_size={value!r}; expected a positive int."
                    raise InvalidInputError(msg)
                opts.batch_size = value
            elif key == "normalize_embeddings":
                opts.normalize = bool(value)
            elif key == "show_progress_bar":
                opts.show_progress = bool(value)
            elif key == "prompt":
                if not isinstance(value, str):
                    msg = f"{owner}: prompt={value!r}; expected a str (used as the prefix)."
                    raise InvalidInputError(msg)
                opts.prefix = value
            elif value != "float32":  # precision
                msg = f"{owner}: precision={value!r}; cde-rag returns float32 vectors only."
                raise InvalidInputError(msg)
        return opts


@dataclass
class ContextEmbedder:
    """Lazy model, bound context and embedding calls shared by the adapters.

    Attributes:
        owner: Class name of the adapter (for messages).
        load_options: ``CDEEncoder.from_pretrained`` keyword arguments.
        model_name: Hub id or folder to load.
        on_stale: Stale policy for collection bindings.
        query_prefix: Prefix replacing the model's query prefix (an "instruction"), or None.
        document_prefix: Prefix replacing the model's document prefix, or None.
    """

    owner: str
    model_name: str
    load_options: dict[str, Any] = field(default_factory=dict)
    on_stale: StalePolicy = "raise"
    query_prefix: str | None = None
    document_prefix: str | None = None
    encoder_: CDEEncoder | None = None
    bound: BoundContext | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- model ---------------------------------------------------------------------------

    @property
    def encoder(self) -> CDEEncoder:
        """The encoder, loaded on first use."""
        with self.lock:
            if self.encoder_ is None:
                opts = dict(self.load_options)
                folder = opts.pop("cache_folder", None)
                if folder is not None:
                    opts["cache_dir"] = os.fspath(folder)
                self.encoder_ = CDEEncoder.from_pretrained(self.model_name, **opts)
            return self.encoder_

    @property
    def loaded(self) -> bool:
        """Whether the model is loaded."""
        return self.encoder_ is not None

    # -- context -------------------------------------------------------------------------

    @property
    def context(self) -> CorpusContext | None:
        """The bound context, or None."""
        return None if self.bound is None else self.bound.context

    @property
    def fingerprint(self) -> str | None:
        """Fingerprint of the bound context, or None."""
        return None if self.bound is None else self.bound.fingerprint

    def set_context(self, context: object) -> None:
        """Bind a free-standing context (forgetting any collection binding)."""
        if not isinstance(context, CorpusContext):
            msg = (
                f"context must be a CorpusContext; got {type(context).__name__}. Load one with "
                "CorpusContext.load(path) or build one with .fit(corpus)."
            )
            raise InvalidInputError(msg)
        with self.lock:
            if self.encoder_ is not None:
                context.check_compatible(self.encoder_)
            self.bound = BoundContext(context, on_stale=self.on_stale)

    def adopt(self, bound: BoundContext) -> None:
        """Share ``bound`` (a collection binding): its rebinds are seen here too."""
        with self.lock:
            self.bound = bound
            self._check_prefixes(bound)
            if self.encoder_ is not None:
                bound.context.check_compatible(self.encoder_)

    def fit(
        self,
        corpus: Iterable[str],
        *,
        size: int | None = None,
        seed: int = 0,
        strategy: Literal["uniform", "diverse"] = "uniform",
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> CorpusContext:
        """Build a context from ``corpus`` and bind it."""
        context = self.encoder.build_context(
            corpus,
            size=size,
            seed=seed,
            strategy=strategy,
            batch_size=batch_size,
            show_progress_bar=show_progress,
        )
        self.set_context(context)
        return context

    def bind_collection(self, client: QdrantClient, collection_name: str) -> BoundContext:
        """Read and bind the stored context of a collection (sync client)."""
        bound = BoundContext.open(client, collection_name, on_stale=self.on_stale)
        self.adopt(bound)
        return bound

    async def abind_collection(
        self, client: AsyncQdrantClient, collection_name: str
    ) -> BoundContext:
        """Read and bind the stored context of a collection (async client)."""
        bound = await BoundContext.aopen(client, collection_name, on_stale=self.on_stale)
        self.adopt(bound)
        return bound

    def rebind(self) -> CorpusContext:
        """Re-read the context of the bound collection.

        Raises:
            ContextNotSetError: Not bound to a collection.
        """
        bound = self.bound
        if bound is None or not bound.from_collection:
            msg = f"rebind() needs an instance made by {self.owner}.from_qdrant(client, name)."
            raise ContextNotSetError(msg)
        client = bound.client
        if client is None or isinstance(client, AsyncQdrantClient):
            msg = "this binding uses an AsyncQdrantClient; reopen the store instead."
            raise InvalidInputError(msg)
        fresh = BoundContext.open(
            client, str(bound.collection_name), on_stale=self.on_stale, tenant=bound.tenant
        )
        fresh.context.check_compatible(self.encoder)
        with bound._lock:  # in place: stores sharing it see the new context too
            bound.context, bound.record, bound.target = fresh.context, fresh.record, fresh.target
        return bound.context

    def fix(self) -> str:
        """The fix named in stale-context errors raised from the embeddings."""
        name = "?" if self.bound is None else self.bound.collection_name
        return f"call .rebind(), or open it again with {self.owner}.from_qdrant(client, {name!r})"

    def current(self, *, check: bool) -> BoundContext:
        """The bound context, after the cheap stale check when ``check``.

        Raises:
            ContextNotSetError: No context is bound.
            ContextMismatchError: The collection holds another context (policy "raise").
        """
        bound = self.bound
        if bound is None:
            msg = (
                f"{self.owner} has no corpus context, and CDE vectors depend on one. Bind it "
                f"first: {self.owner}(context=CorpusContext.load(path)), .set_context(context), "
                f".fit(corpus), or {self.owner}.from_qdrant(client, collection_name) for a "
                "cde-rag collection (a cde-rag vector store does this for you)."
            )
            raise ContextNotSetError(msg)
        if check and bound.from_collection and not isinstance(bound.client, AsyncQdrantClient):
            bound.verify(full=False, fix=self.fix())
        return bound

    def check_stale(self, *, full: bool = True) -> None:
        """Raise (or rebind, per policy) when the bound collection holds another context."""
        bound = self.bound
        if bound is not None:
            bound.verify(full=full, fix=self.fix())

    # -- embedding -----------------------------------------------------------------------

    def embed(
        self,
        texts: list[str],
        *,
        query: bool,
        options: EncodeOptions,
        check: bool = True,
        bound: BoundContext | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embed ``texts`` as queries or documents under the bound context.

        Args:
            texts: The texts.
            query: Queries (query prefix) or documents (document prefix).
            options: Batch size, normalisation, progress, prefix override.
            check: Do the cheap stale check first (skipped by stores, whose searches check).
            bound: Embed under this binding instead of the held one.
        """
        bound = bound or self.current(check=check)
        encoder = self.encoder
        stored_q, stored_d = bound.prefixes(encoder)
        prefix = options.prefix
        if prefix is None and bound.record is None:
            prefix = self.query_prefix if query else self.document_prefix
        if prefix is None:
            prefix = stored_q if query else stored_d
        embed = encoder.embed_queries if query else encoder.embed_documents
        with self.lock:
            return embed(
                texts,
                bound.context,
                batch_size=options.batch_size,
                normalize=options.normalize,
                show_progress_bar=options.show_progress,
                prefix=prefix,
            )

    def identity(self) -> str:
        """Model identity and context fingerprint: what a cache key must contain.

        Raises:
            ContextNotSetError: No context is bound.
        """
        bound = self.current(check=False)
        q, d = self.query_prefix, self.document_prefix
        if bound.record is not None:
            q, d = bound.record.query_prefix, bound.record.document_prefix
        weights = bound.context.provenance.weights_hash[:16]
        return f"cde:{weights}:{bound.fingerprint[:32]}:{_short(q)}:{_short(d)}"

    def _check_prefixes(self, bound: BoundContext) -> None:
        record = bound.record
        if record is None:
            return
        for own, stored, what in (
            (self.query_prefix, record.query_prefix, "query"),
            (self.document_prefix, record.document_prefix, "text/document"),
        ):
            if own is not None and own != stored:
                msg = (
                    f"{self.owner}: {what} instruction {own!r} differs from the prefix "
                    f"{stored!r} collection {bound.collection_name!r} was embedded with; its "
                    "vectors would not be comparable. Leave the instruction out."
                )
                raise InvalidInputError(msg)


def _short(prefix: str | None) -> str:
    """A short stable tag of a prefix for cache keys."""
    return "-" if prefix is None else hashlib.sha256(prefix.encode()).hexdigest()[:8]

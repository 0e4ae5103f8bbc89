"""Vectors of each condition: CDE under a context and dtype, or a sentence-transformers model.

Every array goes through :class:`~cde_rag_qdrant.evaluation.cache.EvalCache`, so a condition is
embedded once; a condition that cannot run here raises :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.encoder import RANDOM_STRINGS_FILE
from cde_rag.errors import ContextError, InvalidInputError, OptionalDependencyError
from cde_rag.hub import file_sha256
from cde_rag.progress import progress_enabled
from cde_rag_qdrant.evaluation.beir import RetrievalData
from cde_rag_qdrant.evaluation.cache import EvalCache, Vectors
from cde_rag_qdrant.evaluation.conditions import BaselineCondition, Condition, ContextCondition

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """A condition cannot run here (the reason is the message); the run goes on without it."""


@dataclass
class ConditionVectors:
    """Documents and queries of one condition, and how they were obtained.

    Attributes:
        documents: (n documents, dim) float32, unit norm.
        queries: (n queries, dim) float32, unit norm.
        cached: Which parts came from the cache (``documents``, ``queries``, ``context``).
        notes: Remarks for the report (emulated bf16, context provenance, ...).
        context_fingerprint: The context used (CDE conditions).
        context: That context (CDE conditions; indexed retrieval stores it).
        encoder: The encoder that made the vectors (CDE conditions).
    """

    documents: Vectors
    queries: Vectors
    cached: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context_fingerprint: str | None = None
    context: CorpusContext | None = None
    encoder: CDEEncoder | None = None


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_support(device: torch.device) -> tuple[bool, bool, str]:
    """Whether ``device`` computes bfloat16, whether natively, and a sentence saying so."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, False, f"{torch.cuda.get_device_name(device)} has no bf16 support"
    try:
        probe = torch.ones(2, 2, dtype=torch.bfloat16, device=device)
        (probe @ probe).float().cpu()
    except (RuntimeError, TypeError) as exc:
        return False, False, f"torch cannot compute bf16 on {device} ({exc})"
    if device.type == "cpu" and not _cpu_has_native_bf16():
        return True, False, "this CPU has no AVX512-BF16/AMX units: bf16 is emulated (slow)"
    return True, True, f"{device.type} computes bf16 natively"


def _state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\0{data.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Representations:
    """Computes (or reads from the cache) the vectors of each condition on one data set."""

    def __init__(
        self,
        data: RetrievalData,
        encoder: CDEEncoder | None,
        cache: EvalCache,
        *,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> None:
        """Bind the data set, the fp32 encoder (None: baselines only) and the cache."""
        if encoder is not None and encoder.dtype != torch.float32:
            msg = (
                f"the encoder runs in {encoder.dtype}; pass a float32 encoder (the @bf16 "
                "conditions make their own bfloat16 copy)."
            )
            raise InvalidInputError(msg)
        self.data = data
        self.encoder = encoder
        self.cache = cache
        self.batch_size = batch_size
        self.progress = show_progress_bar
        self._bf16: CDEEncoder | None = None

    def vectors(self, condition: Condition) -> ConditionVectors:
        """The condition's vectors.

        Raises:
            Unavailable: The condition cannot run here (no fallback context, no bf16, ...).
            OptionalDependencyError: A baseline without ``sentence-transformers``.
        """
        if isinstance(condition, BaselineCondition):
            return self._baseline(condition)
        return self._cde(condition)

    # -- CDE -------------------------------------------------------------------------------

    def _encoder(self, condition: ContextCondition, notes: list[str]) -> CDEEncoder:
        if self.encoder is None:
            msg = f"condition {condition.name!r} needs a CDE model; pass an encoder (--model)"
            raise InvalidInputError(msg)
        if condition.dtype == "float32":
            return self.encoder
        runs, native, why = bf16_support(self.encoder.device)
        if not runs or (condition.native_only and not native):
            hint = "" if not runs else f"; ask for it explicitly ({condition.name}) to run anyway"
            raise Unavailable(why + hint)
        if not native:
            notes.append(why)
        if self._bf16 is None:
            self._bf16 = copy.deepcopy(self.encoder)
            self._bf16.model.to(dtype=torch.bfloat16)
        return self._bf16

    def _identity(self, encoder: CDEEncoder) -> dict[str, Any]:
        config = encoder.config
        return {
            "weights": encoder.identity.weights_hash,
            "version": config.version,
            "dtype": str(encoder.dtype),
            "output_residual": config.output_residual,
            "pool_ignore_instruction_tokens": config.pool_ignore_instruction_tokens,
            "nomic_rotary_mode": config.nomic_rotary_mode,
        }

    def _context(
        self, condition: ContextCondition, encoder: CDEEncoder
    ) -> tuple[CorpusContext, bool]:
        if condition.source == "file":
            if condition.path is None:  # parse_conditions always sets it for "file"
                msg = f"condition {condition.name!r} names no context file"
                raise InvalidInputError(msg)
            context = CorpusContext.load(condition.path)
            context.check_compatible(encoder)
            return context, False
        size = encoder.context_size if condition.size is None else condition.size
        parts: dict[str, Any] = {
            "kind": "context",
            **self._identity(encoder),
            "source": condition.source,
            "seed": condition.seed,
            "size": size,
        }
        progress = self.progress
        if condition.source == "fallback":
            path = None if encoder.folder is None else encoder.folder / RANDOM_STRINGS_FILE
            if path is None or not path.is_file():
                msg = (
                    f"no {RANDOM_STRINGS_FILE} in the model folder ({encoder.folder}); the "
                    "jxm/cde-small-v1 repository ships one"
                )
                raise Unavailable(msg)
            parts["random_strings"] = file_sha256(path)

            def build() -> CorpusContext:
                try:
                    return encoder.fallback_context(
                        size=size, seed=condition.seed, show_progress_bar=progress
                    )
                except ContextError as exc:
                    raise Unavailable(str(exc)) from exc

            return self.cache.context(parts, build)
        parts["corpus"] = self.data.corpus_hash
        return self.cache.context(
            parts,
            lambda: encoder.build_context(
                self.data.doc_texts,
                size=size,
                seed=condition.seed,
                strategy=condition.source,  # type: ignore[arg-type]
                batch_size=self.batch_size,
                show_progress_bar=progress,
            ),
        )

    def _cde(self, condition: ContextCondition) -> ConditionVectors:
        notes: list[str] = []
        encoder = self._encoder(condition, notes)
        context, context_cached = self._context(condition, encoder)
        base = {
            **self._identity(encoder),
            "max_length": encoder.max_length,
            "context": context.fingerprint,
        }
        docs, docs_cached = self.cache.vectors(
            {**base, "kind": "documents", "prefix": encoder.document_prefix,
             "texts": self.data.corpus_hash},
            lambda: encoder.embed_documents(
                self.data.doc_texts,
                context,
                batch_size=self.batch_size,
                show_progress_bar=self.progress,
            ),
        )  # fmt: skip
        queries, queries_cached = self.cache.vectors(
            {**base, "kind": "queries", "prefix": encoder.query_prefix,
             "texts": self.data.queries_hash},
            lambda: encoder.embed_queries(
                self.data.query_texts,
                context,
                batch_size=self.batch_size,
                show_progress_bar=self.progress,
            ),
        )  # fmt: skip
        cached = [
            name
            for name, hit in (
                ("context", context_cached),
                ("documents", docs_cached),
                ("queries", queries_cached),
            )
            if hit
        ]
        p = context.provenance
        notes.append(f"context {context.fingerprint[:12]}: {p.size} rows, strategy {p.strategy}")
        return ConditionVectors(
            docs, queries, cached, notes, context.fingerprint, context=context, encoder=encoder
        )

    # -- baseline --------------------------------------------------------------------------

    @cached_property
    def _device(self) -> str | None:
        return None if self.encoder is None else str(self.encoder.device)

    def _load_baseline(self, model: str) -> SentenceTransformer:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            msg = (
                "the baseline condition needs sentence-transformers>=5; install the extra: "
                "pip install 'cde-rag[baseline]'"
            )
            raise OptionalDependencyError(msg, extra="baseline") from exc
        try:
            return SentenceTransformer(model, device=self._device)
        except (OSError, ValueError) as exc:
            msg = f"could not load {model!r} ({exc})"
            raise Unavailable(msg) from exc

    def _baseline(self, condition: BaselineCondition) -> ConditionVectors:
        st = self._load_baseline(condition.model)
        base = {"model": condition.model, "weights": _state_hash(st),
                "max_length": st.max_seq_length}  # fmt: skip
        show = progress_enabled(self.progress)

        def encode(kind: str, texts: list[str]) -> Vectors:
            method = st.encode_document if kind == "documents" else st.encode_query
            return method(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show,
            )

        docs, docs_cached = self.cache.vectors(
            {**base, "kind": "baseline-documents", "texts": self.data.corpus_hash},
            lambda: encode("documents", self.data.doc_texts),
        )
        queries, queries_cached = self.cache.vectors(
            {**base, "kind": "baseline-queries", "texts": self.data.queries_hash},
            lambda: encode("queries", self.data.query_texts),
        )
        cached = [n for n, hit in (("documents", docs_cached), ("queries", queries_cached)) if hit]
        return ConditionVectors(docs, queries, cached, [f"{condition.model}, dim {docs.shape[1]}"])

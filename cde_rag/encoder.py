"""CDEEncoder: load a CDE checkpoint, build corpus contexts, embed documents and queries."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cde_rag._batching import length_sorted_batches, pad_batch
from cde_rag._fastpath import AttentionName, auto_dtype, resolve_attention
from cde_rag.config import CDEConfig, ModernBertConfig, NomicRotaryMode, load_config
from cde_rag.context import CorpusContext, ModelIdentity, new_provenance
from cde_rag.errors import ContextError, InvalidInputError
from cde_rag.hub import file_sha256, resolve_checkpoint
from cde_rag.model.cde import CDEModel
from cde_rag.model.unpadded import set_attention
from cde_rag.model.varlen import AttentionMode
from cde_rag.model.weights import load_model
from cde_rag.progress import progress_enabled
from cde_rag.sampling import SAMPLING_STRATEGIES, SamplingStrategy, sample_minicorpus
from cde_rag.tokenization import (
    TextTokenizer,
    TokenizerSource,
    add_prefix,
    load_tokenizer,
)
from cde_rag.validation import validate_texts

logger = logging.getLogger(__name__)

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
OutputKind = Literal["numpy", "torch"]
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
RANDOM_STRINGS_FILE = "random_strings.txt"
CPU_BATCH_TOKENS = 4096
"""Default token budget of one forward pass on CPU (see ``benchmarks/``)."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda, then mps, then cpu; anything else as given.

    Raises:
        InvalidInputError: Unknown device string, or an unavailable device.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        msg = f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'mps'."
        raise InvalidInputError(msg) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        msg = "device='cuda' was requested but CUDA is not available; use device='auto'."
        raise InvalidInputError(msg)
    return resolved


def resolve_dtype(dtype: DTypeName | torch.dtype) -> torch.dtype:
    """Map a dtype name to a torch dtype.

    Raises:
        InvalidInputError: Unsupported dtype.
    """
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    msg = f"dtype={dtype!r} is not supported; use one of {', '.join(_DTYPES)} or 'auto'."
    raise InvalidInputError(msg)


class CDEEncoder:
    """Embeds documents and queries with a CDE model under an explicit corpus context.

    Build it with :meth:`from_pretrained`; the constructor takes already-built parts.

    Example:
        >>> encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2")  # doctest: +SKIP
        >>> context = encoder.build_context(corpus)  # doctest: +SKIP
        >>> docs = encoder.embed_documents(corpus, context)  # doctest: +SKIP
        >>> queries = encoder.embed_queries(["who wrote it?"], context)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: CDEModel,
        tokenizer: TextTokenizer,
        identity: ModelIdentity,
        *,
        max_length: int | None = None,
        folder: Path | None = None,
    ) -> None:
        """Assemble an encoder from its parts.

        Args:
            model: The native CDE model (eval mode).
            tokenizer: Its tokenizer.
            identity: Model identity recorded in contexts.
            max_length: Token limit per text (default: the config's ``max_seq_length``).
            folder: Checkpoint folder (for ``random_strings.txt``), if any.
        """
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.folder = folder
        self.query_prefix = model.config.query_prefix
        self.document_prefix = model.config.document_prefix
        if model.config.instruction_end_id != tokenizer.instruction_end_id:
            msg = (
                f"the model's config has instruction_end_id={model.config.instruction_end_id} "
                f"but the tokenizer's is {tokenizer.instruction_end_id}; they must match or "
                "pooling drops the wrong positions. Build the config with load_config(folder, "
                "instruction_end_id=tokenizer.instruction_end_id)."
            )
            raise InvalidInputError(msg)
        self._max_length = 0
        self.max_length = model.config.max_seq_length if max_length is None else max_length

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        device: str | torch.device = "auto",
        dtype: DTypeName | torch.dtype = "auto",
        tokenizer: TokenizerSource | None = None,
        max_length: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        output_residual: bool | None = None,
        pool_ignore_instruction_tokens: bool | None = None,
        nomic_rotary_mode: NomicRotaryMode | None = None,
        attention: AttentionName = "auto",
    ) -> CDEEncoder:
        """Load a CDE checkpoint (hub id or local folder) without running remote code.

        Args:
            name_or_path: ``"jxm/cde-small-v2"``, ``"jxm/cde-small-v1"`` or a local folder with
                ``config.json`` and ``model.safetensors`` (and tokenizer files).
            revision: Hub branch, tag or commit to pin.
            device: ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
            dtype: ``"auto"`` (default: ``"bfloat16"`` on CUDA GPUs that support it,
                ``"float32"`` elsewhere), ``"float32"``, ``"bfloat16"`` or ``"float16"``
                (faster on hardware that supports them; vectors differ slightly from float32,
                cosine >= 0.999).
            tokenizer: Override the tokenizer (``tokenizers.Tokenizer``, folder, file, hub id).
            max_length: Token limit per text (default: ``max_seq_length`` of the config, 512).
            cache_dir: Hugging Face cache folder.
            output_residual: Override the v2 residual around the output projection.
            pool_ignore_instruction_tokens: Override v2 instruction-token pooling.
            nomic_rotary_mode: v1 rotary behaviour: ``"hf_remote"`` (default), ``"training"``
                or ``"repo_hf"`` (see ``cde_rag.model.nomic_bert``).
            attention: ``"auto"`` (default: ``"packed"`` on CUDA, ``"padded"`` elsewhere),
                ``"padded"`` (right-padded batches) or ``"packed"`` (unpadded rows; on CUDA in
                bfloat16/float16 through flash-attention's varlen kernel). Same vectors either
                way (<= 1e-5); see ``cde_rag.model.unpadded``.

        Returns:
            The encoder, in eval mode.

        Raises:
            CheckpointNotFoundError: Missing folder or files.
            CheckpointFormatError: Bad config, corrupt weights, wrong keys or shapes.
            ModelDownloadError: Hub unreachable or offline; says how to use a local folder.
            TokenizerNotFoundError: No tokenizer found; says how to pass one.

        Example:
            >>> encoder = CDEEncoder.from_pretrained(  # doctest: +SKIP
            ...     "./cde-small-v2", device="cpu"
            ... )
        """
        start = time.perf_counter()
        resolved = resolve_checkpoint(name_or_path, revision=revision, cache_dir=cache_dir)
        config = load_config(
            resolved.folder,
            output_residual=output_residual,
            pool_ignore_instruction_tokens=pool_ignore_instruction_tokens,
            nomic_rotary_mode=nomic_rotary_mode,
            instruction_end_id=None,  # taken from the tokenizer actually used, below
        )
        text_tokenizer = load_tokenizer(
            resolved.folder, config.embedder, tokenizer=tokenizer, cache_dir=cache_dir
        )
        config = dataclasses.replace(config, instruction_end_id=text_tokenizer.instruction_end_id)
        torch_device = resolve_device(device)
        torch_dtype = auto_dtype(torch_device) if dtype == "auto" else resolve_dtype(dtype)
        layout = resolve_attention(attention, torch_device)
        weights = resolved.folder / "model.safetensors"
        model = load_model(config, weights, device=torch_device, dtype=torch_dtype)
        set_attention(model, layout)
        identity = ModelIdentity(
            model_id=resolved.model_id,
            weights_hash=file_sha256(weights),
            revision=resolved.revision,
            version=config.version,
            dim=config.hidden_size,
        )
        logger.info(
            "loaded %s (cde %s, weights %s) on %s/%s, %s attention, in %.1fs",
            resolved.model_id,
            config.version,
            identity.weights_hash[:12],
            torch_device,
            str(torch_dtype).removeprefix("torch."),
            layout,
            time.perf_counter() - start,
        )
        return cls(model, text_tokenizer, identity, max_length=max_length, folder=resolved.folder)

    # -- properties ----------------------------------------------------------------------

    @property
    def config(self) -> CDEConfig:
        """The validated checkpoint config."""
        return self.model.config

    @property
    def dim(self) -> int:
        """Embedding width (768 for the real models)."""
        return self.config.hidden_size

    @property
    def context_size(self) -> int:
        """Number of context rows the model expects (``transductive_corpus_size``, 512)."""
        return self.config.corpus_size

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the model."""
        return next(self.model.parameters()).dtype

    @property
    def attention(self) -> AttentionMode:
        """Batch layout of the forward passes: ``"padded"`` or ``"packed"`` (unpadded)."""
        return self.model.second_stage_model.backbone.attention

    @property
    def max_length(self) -> int:
        """Token limit per text (prefix and special tokens included); longer texts are cut."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        backbone = self.config.backbone
        positions = (
            backbone.max_position_embeddings
            if isinstance(backbone, ModernBertConfig)
            else backbone.n_positions
        )
        limit = positions - self.context_size - self.config.n_soft_prompt
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            msg = f"max_length={value!r}; expected an int in 1..{limit} for this model."
            raise InvalidInputError(msg)
        self._max_length = value

    def __repr__(self) -> str:
        """Short description."""
        return (
            f"CDEEncoder(model={self.identity.model_id!r}, version={self.config.version}, "
            f"dim={self.dim}, device={self.device}, dtype={self.dtype}, "
            f"max_length={self.max_length})"
        )

    # -- context -------------------------------------------------------------------------

    def build_context(
        self,
        corpus: Iterable[str],
        *,
        size: int | None = None,
        seed: int = 0,
        strategy: SamplingStrategy = "uniform",
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> CorpusContext:
        """Sample a minicorpus from ``corpus`` and embed it into a :class:`CorpusContext`.

        A corpus of exactly ``size`` documents is used as given, in its order (v2 is sensitive
        to the order of context rows). Larger corpora are sampled without replacement, smaller
        ones oversampled with replacement (upstream's rule); see :mod:`cde_rag.sampling`.
        Context documents get the document prefix.

        Args:
            corpus: The documents (any iterable of strings; consumed once).
            size: Context rows (default: :attr:`context_size`, 512 for the real models).
            seed: Sampling seed.
            strategy: ``"uniform"`` or ``"diverse"`` (better coverage of skewed corpora).
            batch_size: Stage-1 batch size.
            show_progress_bar: Show a progress bar (default: when logging at INFO).

        Returns:
            The context, with provenance and fingerprint.

        Raises:
            InvalidInputError: Empty corpus, non-string, empty or whitespace-only documents.

        Example:
            >>> context = encoder.build_context(my_documents, seed=0)  # doctest: +SKIP
            >>> context.save("my.context.safetensors")  # doctest: +SKIP
        """
        if strategy not in SAMPLING_STRATEGIES:
            msg = f"strategy={strategy!r}; expected one of {', '.join(SAMPLING_STRATEGIES)}."
            raise InvalidInputError(msg)
        documents = validate_texts(corpus, "corpus", non_empty=True)
        n_rows = self.context_size if size is None else size
        start = time.perf_counter()
        texts = sample_minicorpus(documents, n_rows, seed=seed, strategy=strategy)
        given = len(documents) == n_rows
        embeddings = self._first_stage(texts, batch_size, show_progress_bar)
        context = CorpusContext(
            embeddings,
            new_provenance(
                self.identity,
                size=n_rows,
                seed=None if given else seed,
                strategy="given" if given else strategy,
                n_source_documents=len(documents),
            ),
        )
        logger.info(
            "built context %s (%d rows from %d documents) in %.1fs",
            context.fingerprint[:12],
            n_rows,
            len(documents),
            time.perf_counter() - start,
        )
        return context

    def fallback_context(
        self,
        *,
        size: int | None = None,
        seed: int = 0,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> CorpusContext:
        """A generic context for when no corpus exists yet.

        Uses upstream's ``random_strings.txt`` when the checkpoint folder has it (the
        ``jxm/cde-small-v1`` repo ships one; retrieval quality drops a little, 65.0 -> 63.8
        MTEB on the v1 card). Otherwise pass any generic text collection to
        :meth:`build_context`.

        Raises:
            ContextError: No ``random_strings.txt`` in the checkpoint folder.
        """
        path = None if self.folder is None else self.folder / RANDOM_STRINGS_FILE
        if path is None or not path.is_file():
            msg = (
                f"no {RANDOM_STRINGS_FILE} in the checkpoint folder ({self.folder}). There is "
                "no built-in default context: pass a representative sample of your documents "
                "(or any generic text collection) to encoder.build_context(texts), or copy "
                f"{RANDOM_STRINGS_FILE} from the jxm/cde-small-v1 repository into the folder."
            )
            raise ContextError(msg)
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        context = self.build_context(
            lines,
            size=size,
            seed=seed,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
        return CorpusContext(
            context.embeddings, dataclasses.replace(context.provenance, strategy="random_strings")
        )

    def first_stage_embeddings(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
    ) -> npt.NDArray[np.float32]:
        """Stage-1 (dataset) embeddings of ``texts`` with the document prefix, unnormalised.

        Useful to compare new documents with a stored context (drift).
        """
        rows = self._first_stage(validate_texts(texts), batch_size, show_progress_bar)
        return rows.numpy()

    # -- embedding -----------------------------------------------------------------------

    @overload
    def embed_documents(
        self,
        texts: Sequence[str],
        context: CorpusContext,
        *,
        batch_size: int = ...,
        max_batch_tokens: int | None = ...,
        normalize: bool = ...,
        show_progress_bar: bool | None = ...,
        output: Literal["numpy"] = ...,
        prefix: str | None = ...,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    def embed_documents(
        self,
        texts: Sequence[str],
        context: CorpusContext,
        *,
        batch_size: int = ...,
        max_batch_tokens: int | None = ...,
        normalize: bool = ...,
        show_progress_bar: bool | None = ...,
        output: Literal["torch"],
        prefix: str | None = ...,
    ) -> torch.Tensor: ...
    def embed_documents(
        self,
        texts: Sequence[str],
        context: CorpusContext,
        *,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        normalize: bool = True,
        show_progress_bar: bool | None = None,
        output: OutputKind = "numpy",
        prefix: str | None = None,
    ) -> npt.NDArray[np.float32] | torch.Tensor:
        """Embed documents under ``context`` (``search_document: `` prefix added once).

        Texts are tokenised once, sorted by token length into batches and returned in the
        caller's order; batching never changes a vector (beyond ~1e-6 float noise).

        Args:
            texts: The documents.
            context: The corpus context (from :meth:`build_context` or a store).
            batch_size: Most texts per forward pass.
            max_batch_tokens: Cap on ``rows x (context rows + longest text)`` per forward
                pass. ``None``: :data:`CPU_BATCH_TOKENS` on CPU (smaller passes stay in cache
                and ran 1.3-1.4x faster per document than 32 x 1032 tokens), no cap on GPUs.
            normalize: L2-normalise the vectors (default). ``False`` returns raw outputs.
            show_progress_bar: Show a progress bar (default: when logging at INFO).
            output: ``"numpy"`` (float32 array) or ``"torch"`` (float32 CPU tensor).
            prefix: Override :attr:`document_prefix` for this call (``""``: no prefix).

        Returns:
            (len(texts), dim) float32 vectors.

        Raises:
            InvalidInputError: Bad texts or options.
            ContextMismatchError: The context was made by another model.

        Example:
            >>> texts = ["CDE embeds in context."]
            >>> vectors = encoder.embed_documents(texts, context)  # doctest: +SKIP
        """
        return self._embed(
            texts,
            context,
            self.document_prefix if prefix is None else prefix,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            normalize=normalize,
            show_progress_bar=show_progress_bar,
            output=output,
        )

    @overload
    def embed_queries(
        self,
        texts: Sequence[str],
        context: CorpusContext,
        *,
        batch_size: int = ...,
        max_batch_tokens: int | None = ...,
        normalize: bool = ...,
        show_progress_bar: bool | None = ...,
        output: Literal["numpy"] = ...,
        prefix: str | None = ...,
    ) -> npt.NDArray[np.float32]: ...
    @overload
    def embed_queries(
        self,
        texts: Sequence[str],
        context: CorpusContext,
        *,
        batch_size: int = ...,
        max_batch_tokens: int | None = ...,
        normalize: bool = ...,
        show_progress_bar: bool | None = ...,
        output: Literal["torch"],
        prefix: str | None = ...,
    ) -> torch.Tensor: ...
    def embed_queries(
        self,
        texts: Sequence[str],
        context: CorpusContext,
        *,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        normalize: bool = True,
        show_progress_bar: bool | None = None,
        output: OutputKind = "numpy",
        prefix: str | None = None,
    ) -> npt.NDArray[np.float32] | torch.Tensor:
        """Embed queries under ``context`` (``search_query: `` prefix added once).

        Same arguments, return value and errors as :meth:`embed_documents`.
        """
        return self._embed(
            texts,
            context,
            self.query_prefix if prefix is None else prefix,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            normalize=normalize,
            show_progress_bar=show_progress_bar,
            output=output,
        )

    # -- internals -----------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str], prefix: str) -> list[list[int]]:
        ids, truncated = self.tokenizer.encode(add_prefix(texts, prefix), self.max_length)
        if truncated:
            logger.warning(
                "truncated %d of %d texts to max_length=%d tokens",
                truncated,
                len(texts),
                self.max_length,
            )
        return ids

    def _first_stage(
        self, texts: Sequence[str], batch_size: int, show_progress_bar: bool | None
    ) -> torch.Tensor:
        token_ids = self._tokenize(texts, self.document_prefix)
        return self._run(
            token_ids,
            self.model.first_stage_model,
            batch_size=batch_size,
            max_batch_tokens=None,
            extra_tokens=0,
            desc="Context (stage 1)",
            show_progress_bar=show_progress_bar,
        )

    def _embed(
        self,
        texts: Sequence[str],
        context: object,
        prefix: str,
        *,
        batch_size: int,
        max_batch_tokens: int | None,
        normalize: bool,
        show_progress_bar: bool | None,
        output: OutputKind,
    ) -> npt.NDArray[np.float32] | torch.Tensor:
        if output not in ("numpy", "torch"):
            msg = f"output={output!r}; expected 'numpy' or 'torch'."
            raise InvalidInputError(msg)
        if not isinstance(context, CorpusContext):
            msg = (
                f"context must be a CorpusContext; got {type(context).__name__}. Build one with "
                "encoder.build_context(corpus) or load one with CorpusContext.load(path)."
            )
            raise InvalidInputError(msg)
        context.check_compatible(self)
        items = validate_texts(texts)
        with torch.inference_mode():
            rows = self.model.prepare_context(context.embeddings.to(self.device))
        stage2 = self.model.second_stage_model
        vectors = self._run(
            self._tokenize(items, prefix),
            lambda ids, mask: stage2(ids, mask, rows),
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            extra_tokens=rows.shape[0] + self.config.n_soft_prompt,
            desc="Embedding",
            show_progress_bar=show_progress_bar,
        )
        if normalize:
            vectors = F.normalize(vectors, dim=-1)
        return vectors if output == "torch" else vectors.numpy()

    def _run(
        self,
        token_ids: list[list[int]],
        forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        batch_size: int,
        max_batch_tokens: int | None,
        extra_tokens: int,
        desc: str,
        show_progress_bar: bool | None,
    ) -> torch.Tensor:
        """Run ``forward`` over length-sorted batches; float32 CPU rows in the caller's order."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            msg = f"batch_size={batch_size!r}; expected a positive int."
            raise InvalidInputError(msg)
        if max_batch_tokens is not None and (
            not isinstance(max_batch_tokens, int) or isinstance(max_batch_tokens, bool)
        ):
            msg = f"max_batch_tokens={max_batch_tokens!r}; expected a positive int or None."
            raise InvalidInputError(msg)
        if max_batch_tokens is None and self.device.type == "cpu":
            max_batch_tokens = CPU_BATCH_TOKENS
        out = torch.empty(len(token_ids), self.dim, dtype=torch.float32)
        batches = length_sorted_batches(
            [len(t) for t in token_ids],
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            extra_tokens=extra_tokens,
        )
        show = progress_enabled(show_progress_bar)
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, disable=not show, unit="batch"):
                ids, mask = pad_batch([token_ids[i] for i in batch], self.tokenizer.pad_id)
                result = forward(ids.to(self.device), mask.to(self.device))
                out[torch.tensor(batch)] = result.float().cpu()
                logger.debug("%s: batch of %d x %d tokens", desc, len(batch), ids.shape[1])
        return out

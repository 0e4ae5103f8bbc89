"""CDE checkpoint configuration: parse and validate ``config.json`` and the backbone config.

The published checkpoints name their backbone by hub id (``answerdotai/ModernBERT-base``,
``nomic-ai/nomic-bert-2048``). Both configs ship inside the package, so the architecture never
needs a download. A ``backbone_config`` key in ``config.json`` (used by the test fixtures) wins.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cde_rag.errors import CheckpointFormatError

logger = logging.getLogger(__name__)

NomicRotaryMode = Literal["hf_remote", "training", "repo_hf"]
NOMIC_ROTARY_MODES: tuple[str, ...] = ("hf_remote", "training", "repo_hf")

DEFAULT_QUERY_PREFIX = "search_query: "
DEFAULT_DOCUMENT_PREFIX = "search_document: "
N_SOFT_PROMPT_TOKENS = 8  # upstream constant: prompt_projection maps d -> 8d (spec §7.1.6)

# Hub ids of the real checkpoints' backbones -> config files shipped in cde_rag/_data.
SHIPPED_BACKBONES: dict[str, str] = {
    "answerdotai/modernbert-base": "modernbert-base.json",
    "nomic-ai/nomic-bert-2048": "nomic-bert-2048.json",
}


class ModernBertConfig(BaseModel):
    """The subset of a ModernBERT config that the native backbone needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_type: Literal["modernbert"]
    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    hidden_activation: Literal["gelu"] = "gelu"
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    global_attn_every_n_layers: int = Field(default=3, gt=0)
    local_attention: int = Field(default=128, gt=0)
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    max_position_embeddings: int = Field(default=8192, gt=0)
    pad_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads


class NomicBertConfig(BaseModel):
    """The subset of a NomicBERT config that the native backbone needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_type: Literal["nomic_bert"]
    vocab_size: int = Field(gt=0)
    pad_vocab_size_multiple: int = Field(default=1, gt=0)
    n_embd: int = Field(gt=0)
    n_head: int = Field(gt=0)
    n_layer: int = Field(gt=0)
    n_inner: int | None = None
    type_vocab_size: int = Field(default=2, gt=0)
    n_positions: int = Field(default=2048, gt=0)
    activation_function: Literal["swiglu"] = "swiglu"
    rotary_emb_fraction: float = Field(default=1.0, ge=1.0, le=1.0)
    rotary_emb_base: float = 1000.0
    rotary_emb_interleaved: Literal[False] = False
    layer_norm_epsilon: float = 1e-12
    prenorm: Literal[False] = False
    qkv_proj_bias: Literal[False] = False
    mlp_fc1_bias: Literal[False] = False
    mlp_fc2_bias: Literal[False] = False

    @property
    def padded_vocab_size(self) -> int:
        """Vocabulary rounded up to ``pad_vocab_size_multiple`` (rows of the word table)."""
        m = self.pad_vocab_size_multiple
        return math.ceil(self.vocab_size / m) * m

    @property
    def mlp_width(self) -> int:
        """Width of fc11/fc12: ``n_inner`` (default 4d) rounded up to a multiple of 256.

        Upstream NomicBERT rounds the SwiGLU width this way (the v1 fixture stores 256 for
        ``n_inner = 16``; nomic-bert-2048's 3072 is already a multiple).
        """
        inner = self.n_inner if self.n_inner is not None else 4 * self.n_embd
        return math.ceil(inner / 256) * 256

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head


BackboneConfig = ModernBertConfig | NomicBertConfig


class _RawCDEConfig(BaseModel):
    """Keys of the upstream flat ``ContextualModelConfig`` that change the computation."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    embedder: str
    transductive_corpus_size: int = Field(gt=0)
    transductive_tokens_per_document: Literal[1] = 1
    transductive_sequence_dropout_prob: float = 0.0
    transductive_tie_token_embeddings: Literal[False] = False
    embedding_output_dim: None = None
    limit_layers: None = None
    limit_layers_first_stage: None = None
    dataset_backbone: str | None = None
    autoregressive_backbone: Literal[False] = False
    pool_ignore_contextual_tokens: bool = True
    pool_ignore_instruction_tokens: bool | None = None
    pooling_strategy: Literal["mean"] = "mean"
    biencoder_pooling_strategy: Literal["mean"] = "mean"
    max_seq_length: int = Field(default=512, gt=0)
    query_prompt: str = DEFAULT_QUERY_PREFIX
    document_prompt: str = DEFAULT_DOCUMENT_PREFIX
    backbone_config: dict[str, Any] | None = None


@dataclass(frozen=True)
class CDEConfig:
    """Validated configuration of one CDE checkpoint.

    Attributes:
        version: ``"v2"`` (ModernBERT backbone) or ``"v1"`` (NomicBERT backbone).
        embedder: The backbone name from ``config.json`` (a hub id for real checkpoints).
        backbone: The backbone architecture, shared by both stages.
        corpus_size: ``transductive_corpus_size``: context rows the model was trained with.
        n_soft_prompt: Number of soft-prompt tokens (8).
        pool_ignore_contextual_tokens: Drop the context and soft-prompt positions before pooling.
        pool_ignore_instruction_tokens: v2 only: drop CLS, prefix and its colon from pooling.
        output_residual: Add the pooled vector back after the output projection (v2 HEAD code).
        accepts_fewer_context_rows: v2 builds a shorter sequence; v1 refuses.
        nomic_rotary_mode: v1 only: which upstream NomicBERT rotary behaviour to reproduce.
        max_seq_length: Default tokenizer truncation length.
        query_prefix: Prefix prepended to queries.
        document_prefix: Prefix prepended to documents and context documents.
        has_null_embedding: Whether the checkpoint has a ``sequence_dropout_null_embedding``.
        instruction_end_id: Token id that ends the task prefix (spec §9), read from the
            checkpoint's tokenizer; ``None`` when unknown. Instruction-token pooling needs it.
    """

    version: Literal["v1", "v2"]
    embedder: str
    backbone: BackboneConfig
    corpus_size: int
    n_soft_prompt: int
    pool_ignore_contextual_tokens: bool
    pool_ignore_instruction_tokens: bool
    output_residual: bool
    accepts_fewer_context_rows: bool
    nomic_rotary_mode: NomicRotaryMode
    max_seq_length: int
    query_prefix: str
    document_prefix: str
    has_null_embedding: bool
    instruction_end_id: int | None = None

    @property
    def hidden_size(self) -> int:
        """Width of the embeddings (768 for the real checkpoints)."""
        if isinstance(self.backbone, ModernBertConfig):
            return self.backbone.hidden_size
        return self.backbone.n_embd


def _shipped_backbone(embedder: str, source: str) -> dict[str, Any]:
    """Return the shipped backbone config for a hub id, or raise with the fix."""
    filename = SHIPPED_BACKBONES.get(embedder.lower())
    if filename is None:
        known = ", ".join(sorted(SHIPPED_BACKBONES))
        msg = (
            f"{source}: unknown backbone {embedder!r}. cde-rag ships the configs of {known}; "
            "add the backbone's config.json under a 'backbone_config' key in config.json."
        )
        raise CheckpointFormatError(msg)
    text = resources.files("cde_rag").joinpath("_data", filename).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def parse_backbone_config(data: dict[str, Any], source: str) -> BackboneConfig:
    """Validate a backbone config dict (ModernBERT or NomicBERT format).

    Args:
        data: The backbone's ``config.json`` contents.
        source: Where it came from, for error messages.

    Returns:
        The validated backbone config.

    Raises:
        CheckpointFormatError: Unknown ``model_type`` or invalid values.
    """
    model_type = data.get("model_type")
    try:
        if model_type == "modernbert":
            return ModernBertConfig.model_validate(data)
        if model_type == "nomic_bert":
            return NomicBertConfig.model_validate(data)
    except ValidationError as exc:
        msg = f"{source}: invalid {model_type} backbone config: {exc}"
        raise CheckpointFormatError(msg) from exc
    msg = (
        f"{source}: backbone model_type is {model_type!r}; expected 'modernbert' "
        "(cde-small-v2) or 'nomic_bert' (cde-small-v1)."
    )
    raise CheckpointFormatError(msg)


def _switch(explicit: bool | None, configured: object, default: bool) -> bool:
    """An explicit argument wins, then a boolean ``cde_rag_*`` key of config.json, then default."""
    if explicit is not None:
        return explicit
    if isinstance(configured, bool):
        return configured
    return default


def parse_config(
    data: dict[str, Any],
    *,
    source: str = "config.json",
    output_residual: bool | None = None,
    pool_ignore_instruction_tokens: bool | None = None,
    nomic_rotary_mode: NomicRotaryMode | None = None,
    instruction_end_id: int | None = None,
) -> CDEConfig:
    """Build a :class:`CDEConfig` from the contents of a CDE ``config.json``.

    Args:
        data: Parsed ``config.json``.
        source: Where it came from, for error messages.
        output_residual: Override the residual around the output projection (default: the
            config's ``cde_rag_output_residual`` key, else on for v2 and off for v1; spec §2
            explains why published code may differ).
        pool_ignore_instruction_tokens: Override instruction-token pooling (default: the
            config's value; v1 never drops them).
        nomic_rotary_mode: v1 rotary behaviour (default ``"hf_remote"``, or the config's
            ``cde_rag_nomic_rotary_mode`` key).
        instruction_end_id: The tokenizer's instruction-end id (spec §9); :func:`load_config`
            reads it from the checkpoint's tokenizer.

    Returns:
        The validated configuration.

    Raises:
        CheckpointFormatError: A key has a wrong value or the backbone is unknown.
    """
    try:
        raw = _RawCDEConfig.model_validate(data)
    except ValidationError as exc:
        msg = f"{source} is not a supported CDE config: {exc}"
        raise CheckpointFormatError(msg) from exc
    if raw.dataset_backbone not in (None, raw.embedder):
        msg = (
            f"{source}: dataset_backbone={raw.dataset_backbone!r} differs from "
            f"embedder={raw.embedder!r}; cde-rag supports one backbone for both stages."
        )
        raise CheckpointFormatError(msg)
    if raw.backbone_config is not None:
        backbone = parse_backbone_config(raw.backbone_config, f"{source} backbone_config")
    else:
        backbone = parse_backbone_config(
            _shipped_backbone(raw.embedder, source), f"shipped config of {raw.embedder}"
        )
    is_v2 = isinstance(backbone, ModernBertConfig)
    mode = nomic_rotary_mode or data.get("cde_rag_nomic_rotary_mode") or "hf_remote"
    if mode not in NOMIC_ROTARY_MODES:
        msg = f"nomic_rotary_mode={mode!r}; expected one of {', '.join(NOMIC_ROTARY_MODES)}."
        raise CheckpointFormatError(msg)
    instruction = pool_ignore_instruction_tokens
    if instruction is None:
        instruction = bool(raw.pool_ignore_instruction_tokens) if is_v2 else False
    return CDEConfig(
        version="v2" if is_v2 else "v1",
        embedder=raw.embedder,
        backbone=backbone,
        corpus_size=raw.transductive_corpus_size,
        n_soft_prompt=N_SOFT_PROMPT_TOKENS,
        pool_ignore_contextual_tokens=raw.pool_ignore_contextual_tokens if is_v2 else True,
        pool_ignore_instruction_tokens=instruction,
        output_residual=_switch(output_residual, data.get("cde_rag_output_residual"), is_v2),
        accepts_fewer_context_rows=is_v2,
        nomic_rotary_mode=mode,
        max_seq_length=raw.max_seq_length,
        query_prefix=raw.query_prompt,
        document_prefix=raw.document_prompt,
        has_null_embedding=raw.transductive_sequence_dropout_prob > 0,
        instruction_end_id=instruction_end_id,
    )


def load_config(folder: str | Path, **overrides: Any) -> CDEConfig:
    """Read and validate ``config.json`` from a checkpoint folder.

    The instruction-end id (spec §9) comes from the folder's tokenizer files unless
    ``instruction_end_id`` is among the overrides, so a model built from this config pools
    exactly like :class:`~cde_rag.encoder.CDEEncoder`.

    Args:
        folder: The checkpoint folder.
        **overrides: Keyword overrides passed to :func:`parse_config`.

    Returns:
        The validated configuration.

    Raises:
        CheckpointFormatError: The file is not valid JSON or not a CDE config.
    """
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path} is not valid JSON ({exc}); re-download the checkpoint."
        raise CheckpointFormatError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{path} holds a {type(data).__name__}; expected a JSON object."
        raise CheckpointFormatError(msg)
    if "instruction_end_id" not in overrides:
        from cde_rag.tokenization import folder_instruction_end_id  # lazy: pulls in the hub

        overrides["instruction_end_id"] = folder_instruction_end_id(Path(folder))
    return parse_config(data, source=str(path), **overrides)

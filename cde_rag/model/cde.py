"""The two CDE stages and the full model; parameter names match the upstream state dict."""

from __future__ import annotations

import torch
from torch import nn

from cde_rag.config import CDEConfig, ModernBertConfig
from cde_rag.errors import CheckpointFormatError, ContextMismatchError
from cde_rag.model._ops import mean_pool
from cde_rag.model.modernbert import ModernBertBackbone
from cde_rag.model.nomic_bert import NomicBertBackbone

Backbone = ModernBertBackbone | NomicBertBackbone


def build_backbone(config: CDEConfig) -> Backbone:
    """Instantiate the backbone named by the config (weights uninitialised)."""
    if isinstance(config.backbone, ModernBertConfig):
        return ModernBertBackbone(config.backbone)
    return NomicBertBackbone(config.backbone, config.nomic_rotary_mode)


class FirstStage(nn.Module):
    """Stage 1: minicorpus documents -> dataset embeddings (spec §6)."""

    def __init__(self, config: CDEConfig) -> None:
        """Create the stage from the config."""
        super().__init__()
        d = config.hidden_size
        self.embedder = build_backbone(config)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embed (K, L) token ids into (K, d) dataset embeddings.

        Pooling averages every non-pad token, CLS, prefix and SEP included.
        """
        hidden: torch.Tensor = self.embedder(input_ids, attention_mask)
        out: torch.Tensor = self.mlp(mean_pool(hidden, attention_mask))
        return out


class SecondStage(nn.Module):
    """Stage 2: texts embedded while attending to the dataset embeddings (spec §7)."""

    def __init__(self, config: CDEConfig) -> None:
        """Create the stage from the config."""
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.backbone = build_backbone(config)
        self.prompt_projection = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(), nn.Linear(d, config.n_soft_prompt * d)
        )
        self.output_projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        if config.has_null_embedding:
            # Training-only parameter; kept so such checkpoints load strictly. Unused.
            self.sequence_dropout_null_embedding = nn.Parameter(torch.zeros(d))

    def soft_prompt(self) -> torch.Tensor:
        """The (P, d) soft prompt: prompt_projection(ones) reshaped row-major (spec §7.1.6)."""
        weight = next(self.prompt_projection.parameters())  # first Linear's (d, d) weight
        ones = torch.ones(weight.shape[1], dtype=weight.dtype, device=weight.device)
        prompt: torch.Tensor = self.prompt_projection(ones)
        return prompt.reshape(self.config.n_soft_prompt, -1)

    def prepare_context(self, dataset_embeddings: torch.Tensor) -> torch.Tensor:
        """Validate the context and return the (N, d) rows actually used (spec §7.1).

        More than ``corpus_size`` rows: the first ``corpus_size`` are kept. Fewer: v2 builds a
        shorter sequence, v1 refuses.

        Raises:
            ContextMismatchError: Wrong rank or width, or too few rows for v1.
        """
        cfg = self.config
        rows = dataset_embeddings
        if rows.dim() == 3 and rows.shape[0] == 1:
            rows = rows[0]
        if rows.dim() != 2 or rows.shape[1] != cfg.hidden_size or rows.shape[0] == 0:
            msg = (
                f"dataset embeddings have shape {tuple(dataset_embeddings.shape)}; expected "
                f"(N, {cfg.hidden_size}) or (1, N, {cfg.hidden_size}) with N >= 1. Build them "
                "with CDEEncoder.build_context() for this model."
            )
            raise ContextMismatchError(msg)
        if rows.shape[0] < cfg.corpus_size and not cfg.accepts_fewer_context_rows:
            msg = (
                f"dataset embeddings have {rows.shape[0]} rows; this {cfg.version} model needs "
                f"at least {cfg.corpus_size}. Oversample the corpus to {cfg.corpus_size} "
                "documents (CDEEncoder.build_context does this for you)."
            )
            raise ContextMismatchError(msg)
        weight = next(self.prompt_projection.parameters())
        # spec §8: the soft prompt runs in the context's dtype; use the model's throughout.
        return rows[: cfg.corpus_size].to(device=weight.device, dtype=weight.dtype)

    def pool_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Weights of the text positions for mean pooling (spec §7.5).

        With ``pool_ignore_instruction_tokens``: the first position ``p > 0`` holding the
        instruction-end id under the mask, and every position before it, get weight 0.

        Raises:
            CheckpointFormatError: Instruction pooling is on but the config carries no
                instruction-end id, so the text positions cannot be chosen correctly.
        """
        mask = attention_mask.long()
        if not self.config.pool_ignore_instruction_tokens:
            return mask
        end_id = self.config.instruction_end_id
        if end_id is None:
            msg = (
                "this model drops the instruction tokens from pooling (pool_ignore_instruction_"
                "tokens) but its config has no instruction_end_id, so it cannot tell where the "
                "prefix ends. Build the config with load_config(folder) from a checkpoint folder "
                "holding the tokenizer files, or pass load_config(folder, instruction_end_id="
                "<first id of tokenizer.encode(': ')>); CDEEncoder.from_pretrained does this."
            )
            raise CheckpointFormatError(msg)
        hits = (input_ids == end_id) & mask.bool()
        hits[:, 0] = False
        found = hits.any(dim=1)
        first = hits.int().argmax(dim=1)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        drop = found[:, None] & (positions[None, :] <= first[:, None])
        return mask.masked_fill(drop, 0)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        context: torch.Tensor,
        *,
        full_output: bool = False,
    ) -> torch.Tensor:
        """Backbone output over ``[context; soft prompt; text]`` (text rows unless full)."""
        prefix = torch.cat([context, self.soft_prompt()], dim=0)
        text = self.backbone.embed_tokens(input_ids)
        if isinstance(self.backbone, NomicBertBackbone):
            return self.backbone.forward_contextual(
                prefix,
                text,
                attention_mask,
                rotary_start=self.config.corpus_size,  # never the actual N (spec §7.4)
                full_output=full_output,
            )
        return self.backbone.forward_contextual(
            prefix, text, attention_mask, full_output=full_output
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        """Embed (B, L) token ids under a prepared (N, d) context into (B, d) vectors.

        ``context`` must come from :meth:`prepare_context`.
        """
        weights = self.pool_mask(input_ids, attention_mask)
        if self.config.pool_ignore_contextual_tokens:
            hidden = self.hidden_states(input_ids, attention_mask, context)
        else:
            hidden = self.hidden_states(input_ids, attention_mask, context, full_output=True)
            n_prefix = hidden.shape[1] - input_ids.shape[1]
            weights = torch.cat([weights.new_ones(weights.shape[0], n_prefix), weights], dim=1)
        return self.project(mean_pool(hidden, weights))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Output projection, with the v2 residual when configured (spec §7.6)."""
        out: torch.Tensor = self.output_projection(pooled)
        return pooled + out if self.config.output_residual else out


class CDEModel(nn.Module):
    """Both CDE stages; ``state_dict()`` keys equal the published checkpoints'.

    The config carries everything the computation needs, the tokenizer's instruction-end id
    included (:func:`~cde_rag.config.load_config` reads it from the checkpoint folder).

    Example:
        >>> config = load_config("./cde-small-v2")  # doctest: +SKIP
        >>> model = load_model(config, Path("./cde-small-v2/model.safetensors"))  # doctest: +SKIP
        >>> ctx = model.first_stage_model(ids, mask)  # (K, d) dataset embeddings
        >>> vecs = model.second_stage_model(ids2, mask2, model.prepare_context(ctx))
    """

    def __init__(self, config: CDEConfig) -> None:
        """Create an uninitialised model from its config."""
        super().__init__()
        self.config = config
        self.first_stage_model = FirstStage(config)
        self.second_stage_model = SecondStage(config)

    def prepare_context(self, dataset_embeddings: torch.Tensor) -> torch.Tensor:
        """See :meth:`SecondStage.prepare_context`."""
        return self.second_stage_model.prepare_context(dataset_embeddings)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        dataset_input_ids: torch.Tensor,
        dataset_attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Full model: stage 1 on the dataset ids, then stage 2 (spec §7.7)."""
        context: torch.Tensor = self.first_stage_model(dataset_input_ids, dataset_attention_mask)
        out: torch.Tensor = self.second_stage_model(
            input_ids, attention_mask, self.prepare_context(context)
        )
        return out

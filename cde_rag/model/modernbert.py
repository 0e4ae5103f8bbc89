"""Native ModernBERT backbone for cde-small-v2 (parameter names of transformers' ModernBertModel).

Why native rather than ``transformers.ModernBertModel``: the second stage needs behaviours that
transformers does not promise to keep (spec §15.6) and two shortcuts it cannot express:

* the text tokens pass the embedding LayerNorm twice, context rows and soft prompt once
  (spec §7.3, quirk 5): :meth:`embed_tokens` applies it once, :meth:`forward` again;
* RoPE positions run over the whole concatenated sequence ``[context; soft prompt; text]``
  (spec §7.3, quirk 6), with local layers masking keys further than ``local_attention // 2``;
* the context prefix is identical for every row of a batch, so layer 0 computes its
  projections once, and the last layer skips the prefix rows that pooling never reads.

A test checks this module against ``transformers.ModernBertModel`` on the same weights.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from cde_rag.config import ModernBertConfig
from cde_rag.model._ops import additive_mask, apply_rotary, rotary_tables
from cde_rag.model.unpadded import modernbert_packed
from cde_rag.model.varlen import AttentionMode


class ModernBertEmbeddings(nn.Module):
    """Token table followed by a bias-free LayerNorm."""

    def __init__(self, config: ModernBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)


class ModernBertAttention(nn.Module):
    """Fused-QKV self-attention with rotary embeddings."""

    def __init__(self, config: ModernBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.Wqkv = nn.Linear(d, 3 * d, bias=config.attention_bias)
        self.Wo = nn.Linear(d, d, bias=config.attention_bias)

    def split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S, 3d) -> three (B, H, S, Dh) tensors (rows: all q heads, all k, all v)."""
        b, s, _ = qkv.shape
        qkv = qkv.view(b, s, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Scaled dot-product attention; returns (B, Sq, d) after ``Wo``."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, sq, _ = out.shape
        projected: torch.Tensor = self.Wo(out.transpose(1, 2).reshape(b, sq, -1))
        return projected


class ModernBertMLP(nn.Module):
    """Gated GELU MLP: ``Wo(GELU(a) * g)`` with ``[a; g] = Wi(x)``."""

    def __init__(self, config: ModernBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP."""
        a, g = self.Wi(x).chunk(2, dim=-1)
        out: torch.Tensor = self.Wo(F.gelu(a) * g)
        return out


class ModernBertLayer(nn.Module):
    """Pre-norm transformer layer; layer 0 has no attention norm."""

    def __init__(self, config: ModernBertConfig, index: int) -> None:
        """Create the layer from its config."""
        super().__init__()
        d = config.hidden_size
        self.attn_norm: nn.Module = (
            nn.Identity()
            if index == 0
            else nn.LayerNorm(d, eps=config.norm_eps, bias=config.norm_bias)
        )
        self.attn = ModernBertAttention(config)
        self.mlp_norm = nn.LayerNorm(d, eps=config.norm_eps, bias=config.norm_bias)
        self.mlp = ModernBertMLP(config)
        self.is_global = index % config.global_attn_every_n_layers == 0


class ModernBertBackbone(nn.Module):
    """ModernBERT encoder whose state dict matches ``transformers.ModernBertModel``."""

    def __init__(self, config: ModernBertConfig) -> None:
        """Create the backbone from its config."""
        super().__init__()
        self.config = config
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(
            ModernBertLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.final_norm = nn.LayerNorm(
            config.hidden_size, eps=config.norm_eps, bias=config.norm_bias
        )
        self.attention: AttentionMode = "padded"  # "packed": cde_rag.model.unpadded

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding-layer call on ids: ``LN(T[ids])`` (first of the two norms, §7.3)."""
        out: torch.Tensor = self.embeddings.norm(self.embeddings.tok_embeddings(input_ids))
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Plain encoder pass (stage 1): ids -> last hidden state (B, L, d).

        Ids pass the embedding LayerNorm once, as in ``ModernBertModel(input_ids=...)``.
        """
        raw = self.embeddings.tok_embeddings(input_ids)
        return self.forward_contextual(None, raw, attention_mask)

    def forward_contextual(
        self,
        prefix: torch.Tensor | None,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        *,
        full_output: bool = False,
    ) -> torch.Tensor:
        """Encode ``[prefix; text]`` with the prefix shared by every row of the batch.

        Args:
            prefix: (P, d) rows placed before every text (context rows + soft prompt), or None.
            text_embeds: (B, L, d) text rows; they get the embedding LayerNorm here, so rows
                from :meth:`embed_tokens` are normalised twice, as upstream does.
            text_mask: (B, L) attention mask of the text (1 = token, 0 = right padding).
            full_output: Return all P + L positions (for inspection) instead of the text only.

        Returns:
            (B, L, d) final hidden states of the text positions, or (B, P + L, d).
        """
        if self.attention == "packed":
            return modernbert_packed(self, prefix, text_embeds, text_mask, full_output=full_output)
        cfg = self.config
        b, n_text, _ = text_embeds.shape
        n_prefix = 0 if prefix is None else prefix.shape[0]
        seq = n_prefix + n_text
        device, dtype = text_embeds.device, text_embeds.dtype
        key_mask = torch.ones(b, seq, dtype=torch.bool, device=device)
        key_mask[:, n_prefix:] = text_mask.bool()
        global_mask = additive_mask(key_mask, None, dtype)
        positions = torch.arange(seq, device=device)
        window = (positions[None, :] - positions[:, None]).abs() <= cfg.local_attention // 2
        local_mask = additive_mask(key_mask, window, dtype)
        rope = {
            True: rotary_tables(positions, cfg.head_dim, cfg.global_rope_theta, dtype),
            False: rotary_tables(positions, cfg.head_dim, cfg.local_rope_theta, dtype),
        }
        norm = self.embeddings.norm
        if prefix is None:
            hidden = norm(text_embeds)
        else:
            shared = norm(prefix)  # same rows for every example: normalise once
            hidden = torch.cat([shared.expand(b, -1, -1), norm(text_embeds)], dim=1)

        layers = cast("list[ModernBertLayer]", list(self.layers))
        last = len(layers) - 1
        for i, layer in enumerate(layers):
            mask = global_mask if layer.is_global else local_mask
            cos, sin = rope[layer.is_global]
            attn_in = layer.attn_norm(hidden)
            if i == 0 and prefix is not None:
                # Layer 0 has no attention norm, so the prefix's qkv is batch-independent.
                qkv_prefix = layer.attn.Wqkv(attn_in[:1, :n_prefix])
                qkv_text = layer.attn.Wqkv(attn_in[:, n_prefix:])
                qkv = torch.cat([qkv_prefix.expand(b, -1, -1), qkv_text], dim=1)
            else:
                qkv = layer.attn.Wqkv(attn_in)
            q, k, v = layer.attn.split_heads(qkv)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
            if i == last and not full_output and n_prefix:
                # Pooling reads only the text rows: skip the prefix rows' queries and MLP.
                q, hidden = q[:, :, n_prefix:], hidden[:, n_prefix:]
                if mask.shape[2] > 1:
                    mask = mask[:, :, n_prefix:]
            hidden = hidden + layer.attn.attend(q, k, v, mask)
            hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
        out: torch.Tensor = self.final_norm(hidden)
        return out

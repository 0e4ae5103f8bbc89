"""Native NomicBERT backbone for cde-small-v1 (upstream NomicBERT parameter names).

Upstream has three NomicBERT code paths that disagree numerically (spec §2, §7.4). The
``rotary_mode`` switch reproduces each of them:

``"hf_remote"`` (default)
    nomic's remote code, which ``trust_remote_code`` users of ``jxm/cde-small-v1`` run: ordinary
    RoPE on every position (context rows included), token-type-0 embedding added twice to text.
``"training"``
    the training code (``cde/lib/nomic_bert``): RoPE by sequence position, positions before
    ``rotary_start`` (512 in stage 2) left unrotated, token-type embedding added once.
``"repo_hf"``
    ``cde/hf_model.py`` (the golden fixtures): the rotation angle of head ``h`` is ``h * theta``
    for every token (an upstream head/sequence axis swap), positions before ``rotary_start``
    unrotated, token-type embedding added twice to text.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from cde_rag.config import NomicBertConfig, NomicRotaryMode
from cde_rag.model._ops import additive_mask, apply_rotary, rotary_tables
from cde_rag.model.unpadded import nomic_packed
from cde_rag.model.varlen import AttentionMode


class NomicBertEmbeddings(nn.Module):
    """Word and token-type tables (no position table: rotary)."""

    def __init__(self, config: NomicBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.n_embd)


class NomicBertAttention(nn.Module):
    """Fused-QKV self-attention with rotary embeddings, no biases."""

    def __init__(self, config: NomicBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        d = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = config.head_dim
        self.Wqkv = nn.Linear(d, 3 * d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)


class NomicBertMLP(nn.Module):
    """SwiGLU MLP: ``fc2(fc11(x) * SiLU(fc12(x)))``."""

    def __init__(self, config: NomicBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        width = config.mlp_width
        self.fc11 = nn.Linear(config.n_embd, width, bias=False)
        self.fc12 = nn.Linear(config.n_embd, width, bias=False)
        self.fc2 = nn.Linear(width, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP."""
        out: torch.Tensor = self.fc2(self.fc11(x) * F.silu(self.fc12(x)))
        return out


class NomicBertLayer(nn.Module):
    """Post-norm transformer layer."""

    def __init__(self, config: NomicBertConfig) -> None:
        """Create the layer from its config."""
        super().__init__()
        eps = config.layer_norm_epsilon
        self.attn = NomicBertAttention(config)
        self.mlp = NomicBertMLP(config)
        self.norm1 = nn.LayerNorm(config.n_embd, eps=eps)
        self.norm2 = nn.LayerNorm(config.n_embd, eps=eps)


class NomicBertEncoder(nn.Module):
    """Container matching the upstream ``encoder.layers.{i}`` key names."""

    def __init__(self, config: NomicBertConfig) -> None:
        """Create the layers from the config."""
        super().__init__()
        self.layers = nn.ModuleList(NomicBertLayer(config) for _ in range(config.n_layer))


class NomicBertBackbone(nn.Module):
    """NomicBERT encoder whose state dict matches upstream NomicBERT (no pooler)."""

    def __init__(self, config: NomicBertConfig, rotary_mode: NomicRotaryMode) -> None:
        """Create the backbone.

        Args:
            config: Backbone architecture.
            rotary_mode: Which upstream rotary behaviour to reproduce (module docstring).
        """
        super().__init__()
        self.config = config
        self.rotary_mode = rotary_mode
        self.embeddings = NomicBertEmbeddings(config)
        self.emb_ln = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.encoder = NomicBertEncoder(config)
        self.attention: AttentionMode = "padded"  # "packed": cde_rag.model.unpadded

    def _type0(self) -> torch.Tensor:
        return self.embeddings.token_type_embeddings.weight[0]

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding-layer call on ids: ``W[ids] + TT[0]`` (spec §7.4)."""
        words: torch.Tensor = self.embeddings.word_embeddings(input_ids)
        return words + self._type0()

    def _rotary(
        self, seq: int, rotary_start: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cos/sin of shape (H or 1, S, Dh) for the configured mode (spec §7.4)."""
        cfg = self.config
        dim = cfg.head_dim
        if self.rotary_mode == "repo_hf":
            heads = torch.arange(cfg.n_head, device=device)
            cos_h, sin_h = rotary_tables(heads, dim, cfg.rotary_emb_base, dtype)
            cos = cos_h[:, None, :].expand(-1, seq, -1).clone()
            sin = sin_h[:, None, :].expand(-1, seq, -1).clone()
        else:
            positions = torch.arange(seq, device=device)
            cos_s, sin_s = rotary_tables(positions, dim, cfg.rotary_emb_base, dtype)
            cos, sin = cos_s[None].clone(), sin_s[None].clone()
        if self.rotary_mode != "hf_remote" and rotary_start > 0:
            cos[:, :rotary_start] = 1.0  # identity rotation before rotary_start
            sin[:, :rotary_start] = 0.0
        return cos, sin

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Plain encoder pass (stage 1): ids -> last hidden state (B, L, d)."""
        hidden = self.emb_ln(self.embed_tokens(input_ids))
        return self._encode(hidden, None, attention_mask, rotary_start=0, full_output=True)

    def forward_contextual(
        self,
        prefix: torch.Tensor | None,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        *,
        rotary_start: int = 0,
        full_output: bool = False,
    ) -> torch.Tensor:
        """Encode ``[prefix; text]`` with the prefix shared by every row of the batch.

        Args:
            prefix: (P, d) rows placed before every text (context rows + soft prompt), or None.
            text_embeds: (B, L, d) text rows from :meth:`embed_tokens`.
            text_mask: (B, L) attention mask of the text (1 = token, 0 = right padding).
            rotary_start: Positions before it keep unrotated q/k (modes other than hf_remote).
            full_output: Return all P + L positions instead of the text positions only.

        Returns:
            (B, L, d) final hidden states of the text, or (B, P + L, d).
        """
        if self.rotary_mode != "training":
            # Paths B and C add the token-type-0 embedding again to every input row (§7.4).
            text_embeds = text_embeds + self._type0()
            prefix = None if prefix is None else prefix + self._type0()
        text_hidden = self.emb_ln(text_embeds)
        shared = None if prefix is None else self.emb_ln(prefix)
        return self._encode(
            text_hidden, shared, text_mask, rotary_start=rotary_start, full_output=full_output
        )

    def _encode(
        self,
        text_hidden: torch.Tensor,
        shared: torch.Tensor | None,
        text_mask: torch.Tensor,
        *,
        rotary_start: int,
        full_output: bool,
    ) -> torch.Tensor:
        if self.attention == "packed":
            return nomic_packed(
                self,
                text_hidden,
                shared,
                text_mask,
                rotary_start=rotary_start,
                full_output=full_output,
            )
        b, n_text, _ = text_hidden.shape
        n_prefix = 0 if shared is None else shared.shape[0]
        seq = n_prefix + n_text
        device, dtype = text_hidden.device, text_hidden.dtype
        key_mask = torch.ones(b, seq, dtype=torch.bool, device=device)
        key_mask[:, n_prefix:] = text_mask.bool()
        mask = additive_mask(key_mask, None, dtype)
        cos, sin = self._rotary(seq, rotary_start, device, dtype)
        if shared is None:
            hidden = text_hidden
        else:
            hidden = torch.cat([shared.expand(b, -1, -1), text_hidden], dim=1)
        layers = cast("list[NomicBertLayer]", list(self.encoder.layers))
        for i, layer in enumerate(layers):
            attn = layer.attn
            if i == 0 and shared is not None:
                # Post-norm: layer 0's input prefix rows are batch-independent.
                qkv_prefix = attn.Wqkv(shared[None])
                qkv = torch.cat([qkv_prefix.expand(b, -1, -1), attn.Wqkv(text_hidden)], dim=1)
            else:
                qkv = attn.Wqkv(hidden)
            qkv = qkv.view(b, seq, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = apply_rotary(qkv[0], cos, sin), apply_rotary(qkv[1], cos, sin), qkv[2]
            if i == len(layers) - 1 and not full_output and n_prefix:
                # Pooling reads only the text rows: skip the prefix rows' queries and MLP.
                q, hidden = q[:, :, n_prefix:], hidden[:, n_prefix:]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            out = attn.out_proj(out.transpose(1, 2).reshape(b, q.shape[2], -1))
            hidden = layer.norm1(hidden + out)
            hidden = layer.norm2(hidden + layer.mlp(hidden))
        return hidden

"""Packed (unpadded) forward passes of both backbones: same math, no work on padding rows.

The padded passes in :mod:`~cde_rag.model.modernbert` and :mod:`~cde_rag.model.nomic_bert` run
every layer over ``B x (prefix + longest text)`` rows. These run over the real rows only,
``sum_b (prefix + len_b)``, with attention per sequence (:func:`varlen_attention`: flash varlen
on CUDA in half precision, where ModernBERT's local layers only compute their window). They
keep the padded passes' shortcuts (layer 0 projects the shared prefix once; the last layer
skips the prefix rows) and return the padded passes' ``(B, S, d)`` layout, zeros at padding, so
the stages pool them unchanged. A backbone takes this path when its ``attention`` attribute is
``"packed"`` (:func:`set_attention`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from cde_rag.errors import InvalidInputError
from cde_rag.model._ops import apply_rotary, rotary_tables
from cde_rag.model.varlen import ATTENTION_MODES, AttentionMode, Packing, varlen_attention

if TYPE_CHECKING:
    from cde_rag.model.modernbert import ModernBertBackbone, ModernBertLayer
    from cde_rag.model.nomic_bert import NomicBertBackbone, NomicBertLayer


def set_attention(model: nn.Module, mode: AttentionMode) -> None:
    """Switch every backbone inside ``model`` to the ``"padded"`` or ``"packed"`` pass.

    Raises:
        InvalidInputError: Unknown mode.
    """
    if mode not in ATTENTION_MODES:
        msg = f"attention={mode!r}; expected one of {', '.join(ATTENTION_MODES)}."
        raise InvalidInputError(msg)
    from cde_rag.model.modernbert import ModernBertBackbone  # here: import cycle
    from cde_rag.model.nomic_bert import NomicBertBackbone

    for module in model.modules():
        if isinstance(module, ModernBertBackbone | NomicBertBackbone):
            module.attention = mode


class _Layout:
    """Packings of a ``[prefix; text]`` batch and the scatter back to the padded layout."""

    def __init__(self, text_mask: torch.Tensor, n_prefix: int) -> None:
        on = text_mask.bool()
        text_len = on.sum(dim=1)
        self.text_mask = on
        self.n_prefix = n_prefix
        self.full = Packing.from_lengths(text_len + n_prefix)
        self.text = Packing.from_lengths(text_len)
        is_text = self.full.positions >= n_prefix
        # Row indices computed once per batch (boolean indexing would sync a GPU every layer).
        self.text_rows = torch.nonzero(is_text).squeeze(1)
        self.prefix_rows = torch.nonzero(~is_text).squeeze(1)
        self.text_tokens = torch.nonzero(on.flatten()).squeeze(1)
        self.batch = int(text_mask.shape[0])

    def text_of(self, rows: torch.Tensor) -> torch.Tensor:
        """The text rows of packed ``[prefix; text]`` rows."""
        return rows.index_select(0, self.text_rows)

    def tokens_of(self, padded: torch.Tensor) -> torch.Tensor:
        """(T_text, C) real text rows of right-padded (B, L, C) rows."""
        return padded.flatten(0, 1).index_select(0, self.text_tokens)

    def assemble(self, prefix_rows: torch.Tensor | None, text_rows: torch.Tensor) -> torch.Tensor:
        """Packed ``[prefix; text]`` rows from (P, C) shared prefix rows and (T_text, C) rows."""
        if prefix_rows is None:
            return text_rows
        out = text_rows.new_empty((self.full.total, text_rows.shape[1]))
        out.index_copy_(0, self.text_rows, text_rows)
        out.index_copy_(0, self.prefix_rows, prefix_rows.repeat(self.batch, 1))
        return out

    def to_padded(self, rows: torch.Tensor, *, text_only: bool) -> torch.Tensor:
        """Packed rows -> the padded passes' (B, L, d) (text only) or (B, P + L, d) output."""
        width = self.text_mask.shape[1]
        if text_only:
            return self.text.unpack(rows, width)
        return self.full.unpack(rows, self.n_prefix + width)


def _rope(
    packing: Packing, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (T, 1, Dh) cos/sin at each row's position inside its sequence."""
    table = torch.arange(packing.max_len, device=packing.positions.device)
    cos, sin = rotary_tables(table, head_dim, theta, dtype)
    return cos[packing.positions][:, None], sin[packing.positions][:, None]


def modernbert_packed(
    backbone: ModernBertBackbone,
    prefix: torch.Tensor | None,
    text_embeds: torch.Tensor,
    text_mask: torch.Tensor,
    *,
    full_output: bool,
) -> torch.Tensor:
    """Packed twin of ``ModernBertBackbone.forward_contextual`` (same arguments and output)."""
    cfg = backbone.config
    n_prefix = 0 if prefix is None else prefix.shape[0]
    layout = _Layout(text_mask, n_prefix)
    dtype, d = text_embeds.dtype, text_embeds.shape[-1]
    heads, head_dim = cfg.num_attention_heads, cfg.head_dim
    norm = backbone.embeddings.norm
    shared = None if prefix is None else norm(prefix)
    hidden = layout.assemble(shared, norm(layout.tokens_of(text_embeds)))
    rope = {
        True: _rope(layout.full, head_dim, cfg.global_rope_theta, dtype),
        False: _rope(layout.full, head_dim, cfg.local_rope_theta, dtype),
    }
    layers = cast("list[ModernBertLayer]", list(backbone.layers))
    last = len(layers) - 1
    q_packing, text_only = layout.full, False
    for i, layer in enumerate(layers):
        cos, sin = rope[layer.is_global]
        if i == 0 and shared is not None:
            # Layer 0 has no attention norm: project the shared prefix once.
            qkv = layout.assemble(
                layer.attn.Wqkv(layer.attn_norm(shared)),
                layer.attn.Wqkv(layer.attn_norm(layout.text_of(hidden))),
            )
        else:
            qkv = layer.attn.Wqkv(layer.attn_norm(hidden))
        q, k, v = qkv.view(-1, 3, heads, head_dim).unbind(dim=1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if i == last and not full_output and n_prefix:
            # Pooling reads only the text rows: skip the prefix rows' queries and MLP.
            q, hidden = layout.text_of(q), layout.text_of(hidden)
            q_packing, text_only = layout.text, True
        window = None if layer.is_global else cfg.local_attention // 2
        out = varlen_attention(q, k, v, q_packing, layout.full, window)
        hidden = hidden + layer.attn.Wo(out.reshape(-1, d))
        hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
    final: torch.Tensor = backbone.final_norm(hidden)
    return layout.to_padded(final, text_only=text_only or n_prefix == 0)


def nomic_packed(
    backbone: NomicBertBackbone,
    text_hidden: torch.Tensor,
    shared: torch.Tensor | None,
    text_mask: torch.Tensor,
    *,
    rotary_start: int,
    full_output: bool,
) -> torch.Tensor:
    """Packed twin of ``NomicBertBackbone._encode`` (same arguments and output)."""
    n_prefix = 0 if shared is None else shared.shape[0]
    layout = _Layout(text_mask, n_prefix)
    d = text_hidden.shape[-1]
    text_rows = layout.tokens_of(text_hidden)
    hidden = layout.assemble(shared, text_rows)
    table_cos, table_sin = backbone._rotary(
        layout.full.max_len, rotary_start, text_hidden.device, text_hidden.dtype
    )  # (H or 1, S, Dh)
    cos = table_cos[:, layout.full.positions].transpose(0, 1)  # (T, H or 1, Dh)
    sin = table_sin[:, layout.full.positions].transpose(0, 1)
    layers = cast("list[NomicBertLayer]", list(backbone.encoder.layers))
    q_packing, text_only = layout.full, False
    for i, layer in enumerate(layers):
        attn = layer.attn
        if i == 0 and shared is not None:
            # Post-norm: layer 0's input prefix rows are batch-independent.
            qkv = layout.assemble(attn.Wqkv(shared), attn.Wqkv(text_rows))
        else:
            qkv = attn.Wqkv(hidden)
        q, k, v = qkv.view(-1, 3, attn.num_heads, attn.head_dim).unbind(dim=1)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if i == len(layers) - 1 and not full_output and n_prefix:
            q, hidden = layout.text_of(q), layout.text_of(hidden)
            q_packing, text_only = layout.text, True
        out = varlen_attention(q, k, v, q_packing, layout.full)
        hidden = layer.norm1(hidden + attn.out_proj(out.reshape(-1, d)))
        hidden = layer.norm2(hidden + layer.mlp(hidden))
    return layout.to_padded(hidden, text_only=text_only or n_prefix == 0)

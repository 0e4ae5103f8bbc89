"""Small numerical helpers shared by the two backbones: masks, rotary tables, pooling."""

from __future__ import annotations

import torch


def additive_mask(
    key_mask: torch.Tensor, window: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """Additive attention mask: 0 where a query may see a key, the dtype's minimum elsewhere.

    A finite minimum (not -inf) keeps fully masked rows (padding far from any token in a local
    layer) finite, so they never turn pooled sums into NaN.

    Args:
        key_mask: (B, S) bool, True for real keys.
        window: Optional (S, S) bool, True where query i may see key j.
        dtype: Dtype of the attention scores.

    Returns:
        (B, 1, 1, S) without a window, else (B, 1, S, S).
    """
    allowed = key_mask[:, None, None, :]
    if window is not None:
        allowed = allowed & window[None, None, :, :]
    zero = torch.zeros((), dtype=dtype, device=key_mask.device)
    low = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=key_mask.device)
    return torch.where(allowed, zero, low)


def rotary_tables(
    positions: torch.Tensor, dim: int, base: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos/sin tables (S, dim) for rotate-half (NeoX) RoPE, computed in float32.

    Args:
        positions: (S,) positions (any numeric dtype).
        dim: Rotated width (the full head dimension here).
        base: RoPE base (theta).
        dtype: Dtype of the returned tables.

    Returns:
        ``(cos, sin)``, each (S, dim).
    """
    exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=positions.device).float() / dim
    inv_freq = 1.0 / (base**exponent)
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on the last dim; ``cos``/``sin`` broadcast against ``x``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def mean_pool(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions: ``sum_t w_t h_t / (sum_t w_t + 1e-20)`` (spec §5)."""
    w = weights.to(hidden.dtype)
    summed = (hidden * w[..., None]).sum(dim=1)
    count = w.sum(dim=1, keepdim=True)
    return summed / (count + 1e-20)

"""Packed (unpadded) sequences and variable-length attention for the packed backbone paths.

A batch of sequences of different lengths is stored as one ``(T, ...)`` tensor of its real
rows, ``T = sum(lengths)``, described by a :class:`Packing`. Linear layers, norms and MLPs then
run on real rows only. Attention runs per sequence:

* on CUDA in bfloat16/float16 (compute capability >= 8.0) through PyTorch's flash-attention
  varlen kernel (``torch.nn.attention.varlen.varlen_attn``, torch >= 2.9), with ModernBERT's
  local window passed as ``window_size`` (torch >= 2.11; older: the fallback below) so local
  layers only compute the keys they may see;
* elsewhere (CPU, float32, older GPUs) by padding q/k/v of the batch for one
  ``scaled_dot_product_attention`` call: same result, no kernel requirements.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

AttentionMode = Literal["padded", "packed"]
"""How a backbone lays out a batch: right-padded ``(B, S, d)`` or packed ``(T, d)`` rows."""

ATTENTION_MODES = ("padded", "packed")
_FLASH_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Packing:
    """Where the rows of ``B`` packed sequences lie in a ``(T, ...)`` tensor.

    Attributes:
        lengths: (B,) int64 rows per sequence.
        cu_seqlens: (B + 1,) int32 cumulative lengths (sequence ``b`` is rows
            ``cu_seqlens[b]:cu_seqlens[b + 1]``).
        max_len: Longest sequence.
        positions: (T,) int64 position of each row inside its sequence.
        seq_index: (T,) int64 sequence of each row.
    """

    lengths: torch.Tensor
    cu_seqlens: torch.Tensor
    max_len: int
    positions: torch.Tensor
    seq_index: torch.Tensor

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor) -> Packing:
        """Describe sequences of the given (B,) lengths, packed back to back."""
        lengths = lengths.to(torch.int64)
        device = lengths.device
        cu = torch.zeros(lengths.shape[0] + 1, dtype=torch.int32, device=device)
        cu[1:] = lengths.cumsum(0)
        total = int(cu[-1])
        seq_index = torch.repeat_interleave(
            torch.arange(lengths.shape[0], device=device), lengths, output_size=total
        )
        starts = cu[:-1].to(torch.int64)[seq_index]
        positions = torch.arange(total, device=device) - starts
        max_len = int(lengths.max()) if lengths.numel() else 0
        return cls(lengths, cu, max_len, positions, seq_index)

    @property
    def total(self) -> int:
        """Number of packed rows ``T``."""
        return int(self.positions.shape[0])

    def unpack(self, rows: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """(T, ...) packed rows -> (B, width, ...) right-padded with zeros."""
        width = self.max_len if width is None else width
        out = rows.new_zeros((self.lengths.shape[0], width, *rows.shape[1:]))
        out[self.seq_index, self.positions] = rows
        return out

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, S, ...) right-padded rows -> (T, ...) packed rows."""
        return padded[self.seq_index, self.positions]


def text_positions(full: Packing, n_prefix: int) -> torch.Tensor:
    """(T,) bool: the rows of ``[prefix; text]`` sequences that belong to the text."""
    return full.positions >= n_prefix


@functools.cache
def _varlen_attn() -> Callable[..., torch.Tensor] | None:
    """PyTorch's varlen flash-attention entry point, or None on torch builds without it."""
    try:
        module = importlib.import_module("torch.nn.attention.varlen")
    except ImportError:
        return None
    fn: Callable[..., torch.Tensor] | None = getattr(module, "varlen_attn", None)
    return fn


def flash_varlen_available(device: torch.device, dtype: torch.dtype, head_dim: int = 64) -> bool:
    """Whether :func:`varlen_attention` uses the flash varlen kernel for these inputs.

    Needs CUDA, float16/bfloat16, compute capability >= 8.0, a head size that is a multiple of
    8 up to 256, and a torch build with ``torch.nn.attention.varlen``.
    """
    if device.type != "cuda" or dtype not in _FLASH_DTYPES or _varlen_attn() is None:
        return False
    if head_dim % 8 or head_dim > 256:
        return False
    if not torch.backends.cuda.flash_sdp_enabled():  # type: ignore[no-untyped-call]
        return False
    return _capability(device)[0] >= 8


@functools.cache
def _capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_packing: Packing,
    k_packing: Packing,
    window: int | None = None,
) -> torch.Tensor:
    """Bidirectional attention inside each packed sequence.

    Queries of a sequence may be fewer than its keys (the last rows only, e.g. the text rows
    of ``[prefix; text]``); they are aligned to the end of the key sequence, as flash-attention
    aligns them.

    Args:
        q: (Tq, H, D) queries.
        k: (Tk, H, D) keys.
        v: (Tk, H, D) values.
        q_packing: Layout of the queries.
        k_packing: Layout of the keys and values (same number of sequences).
        window: If set, query at position i sees keys at positions j with ``|i - j| <= window``.

    Returns:
        (Tq, H, D) attention outputs.
    """
    fn = _varlen_attn()
    usable = fn is not None and flash_varlen_available(q.device, q.dtype, q.shape[-1])
    if fn is not None and usable and (window is None or _varlen_has_window()):
        extra = {} if window is None else {"window_size": (window, window)}
        out: torch.Tensor = fn(
            q.contiguous(),
            k.contiguous(),
            v.contiguous(),
            q_packing.cu_seqlens,
            k_packing.cu_seqlens,
            q_packing.max_len,
            k_packing.max_len,
            **extra,
        )
        return out
    return _padded_attention(q, k, v, q_packing, k_packing, window)


@functools.cache
def _varlen_has_window() -> bool:
    """Whether this torch's ``varlen_attn`` takes ``window_size`` (torch >= 2.11)."""
    fn = _varlen_attn()
    return fn is not None and "window_size" in inspect.signature(fn).parameters


def _padded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_packing: Packing,
    k_packing: Packing,
    window: int | None,
) -> torch.Tensor:
    """Reference kernel: pad the batch, one masked SDPA call, pack the result again."""
    qp = q_packing.unpack(q).transpose(1, 2)  # (B, H, Sq, D)
    kp = k_packing.unpack(k).transpose(1, 2)
    vp = k_packing.unpack(v).transpose(1, 2)
    device = q.device
    key_pos = torch.arange(k_packing.max_len, device=device)
    allowed = (key_pos[None, :] < k_packing.lengths[:, None])[:, None, None, :]  # (B,1,1,Sk)
    if window is not None:
        offset = k_packing.lengths - q_packing.lengths  # end-aligned queries
        query_pos = torch.arange(q_packing.max_len, device=device)[None, :] + offset[:, None]
        near = (query_pos[:, :, None] - key_pos[None, None, :]).abs() <= window  # (B,Sq,Sk)
        allowed = allowed & near[:, None]
    zero = torch.zeros((), dtype=q.dtype, device=device)
    low = torch.full((), torch.finfo(q.dtype).min, dtype=q.dtype, device=device)
    mask = torch.where(allowed, zero, low)
    out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask)
    return q_packing.pack(out.transpose(1, 2))

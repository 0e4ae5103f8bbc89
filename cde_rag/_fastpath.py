"""Device-dependent defaults: compute dtype (``dtype="auto"``) and attention layout.

On CUDA the fast path is bfloat16 weights (where the GPU supports them) with packed
(unpadded) attention through flash-attention's varlen kernel; measured against the padded
float32 path by ``benchmarks/bench_gpu.py``. On CPU and MPS the defaults stay float32 and the
padded layout, which the CPU benchmark found at least as fast (README, Performance).
"""

from __future__ import annotations

from typing import Literal

import torch

from cde_rag.errors import InvalidInputError
from cde_rag.model.varlen import ATTENTION_MODES, AttentionMode

AttentionName = Literal["auto", "padded", "packed"]


def auto_dtype(device: torch.device) -> torch.dtype:
    """``dtype="auto"``: bfloat16 on CUDA GPUs that support it, float32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float32


def resolve_attention(attention: str, device: torch.device) -> AttentionMode:
    """Map ``"auto"`` to ``"packed"`` on CUDA and ``"padded"`` elsewhere; check other names.

    Raises:
        InvalidInputError: Unknown name.
    """
    if attention == "auto":
        return "packed" if device.type == "cuda" else "padded"
    if attention == "padded":
        return "padded"
    if attention == "packed":
        return "packed"
    msg = f"attention={attention!r}; expected 'auto' or one of {', '.join(ATTENTION_MODES)}."
    raise InvalidInputError(msg)

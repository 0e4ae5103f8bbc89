"""Build a :class:`CDEModel` from ``model.safetensors``: strict keys, shapes, no pickle."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from cde_rag.config import CDEConfig
from cde_rag.errors import CheckpointFormatError
from cde_rag.model.cde import CDEModel

logger = logging.getLogger(__name__)

# Keys some savers add that the computation never reads (spec §4, §15.5).
HARMLESS_EXTRA_KEYS = re.compile(
    r"(^|\.)(pooler\.dense\.(weight|bias)|position_ids|rotary_emb\.inv_freq)$"
)


def _short_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file onto the CPU.

    Raises:
        CheckpointFormatError: The file is truncated, corrupt or not safetensors.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError) as exc:
        msg = (
            f"{path} is not a readable safetensors file ({exc}). It is probably truncated or "
            "corrupted: delete it and download the checkpoint again."
        )
        raise CheckpointFormatError(msg) from exc


def load_model(
    config: CDEConfig,
    weights_path: Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> CDEModel:
    """Instantiate a :class:`CDEModel` and load its weights strictly.

    The module tree is built on the meta device, so no time is spent on random init.

    Args:
        config: Validated checkpoint config.
        weights_path: Path of ``model.safetensors``.
        device: Where the model runs.
        dtype: Compute dtype of the parameters.

    Returns:
        The model in eval mode, without gradients.

    Raises:
        CheckpointFormatError: Corrupt file, missing or unexpected keys, wrong shapes.
    """
    state = read_safetensors(weights_path)
    with torch.device("meta"):
        model = CDEModel(config)
    expected = {name: p.shape for name, p in model.state_dict().items()}
    ignored = sorted(k for k in state if k not in expected and HARMLESS_EXTRA_KEYS.search(k))
    if ignored:
        logger.info("ignoring %d unused checkpoint keys: %s", len(ignored), _short_list(ignored))
    unexpected = sorted(k for k in state if k not in expected and k not in ignored)
    missing = sorted(k for k in expected if k not in state)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short_list(unexpected)}")
        msg = (
            f"{weights_path} does not match the {config.version} architecture described by "
            f"config.json ({'; '.join(parts)}). Check that config.json and model.safetensors "
            "come from the same checkpoint."
        )
        raise CheckpointFormatError(msg)
    wrong = [
        f"{k}: found {tuple(state[k].shape)}, expected {tuple(shape)}"
        for k, shape in expected.items()
        if state[k].shape != shape
    ]
    if wrong:
        msg = (
            f"{weights_path} has tensors whose shapes contradict config.json: "
            f"{_short_list(wrong, 4)}. Check that config.json belongs to these weights."
        )
        raise CheckpointFormatError(msg)
    bad_dtype = [k for k in expected if not state[k].is_floating_point()]
    if bad_dtype:
        msg = f"{weights_path}: non-floating-point weights for {_short_list(bad_dtype)}."
        raise CheckpointFormatError(msg)
    weights = {k: state[k].to(device=device, dtype=dtype) for k in expected}
    model.load_state_dict(weights, strict=True, assign=True)
    model.eval().requires_grad_(False)
    return model

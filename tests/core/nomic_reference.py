"""An independent, deliberately plain reading of spec §6-§7 for cde-small-v1 (NomicBERT).

It shares no code with ``cde_rag.model``: it reads the safetensors file itself and embeds one
unpadded text at a time with explicit per-head loops. Only the two documented differences
between the upstream code paths (spec §2, §7.4) are switches:

* ``"repo_hf"`` (path C, ``cde/hf_model.py``): rotation angle ``h * theta_j`` for head ``h``,
  positions before ``rotary_start`` unrotated, token-type-0 embedding added again to every
  second-stage input row. The golden fixtures were made by this upstream code, so the
  reference is checked against them.
* ``"hf_remote"`` (path B, nomic's remote code): ordinary RoPE at the absolute position of every
  row (context included), token-type-0 embedding added again as in path C.

Run as a script to rewrite ``tests/data/cde-reference/v1-tiny/hf_remote.safetensors``, the
pinned numbers of path B (``python -m tests.core.nomic_reference``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file

Mode = Literal["repo_hf", "hf_remote"]
V1_TINY = Path(__file__).resolve().parents[1] / "data" / "cde-reference" / "v1-tiny"
PINNED = V1_TINY / "hf_remote.safetensors"


class NomicReference:
    """Both stages of a v1 checkpoint, computed text by text in float64."""

    def __init__(self, folder: Path, mode: Mode) -> None:
        config = json.loads((folder / "config.json").read_text())
        backbone = config["backbone_config"]
        self.mode = mode
        self.heads = int(backbone["n_head"])
        self.layers = int(backbone["n_layer"])
        self.eps = float(backbone["layer_norm_epsilon"])
        self.base = float(backbone["rotary_emb_base"])
        self.corpus_size = int(config["transductive_corpus_size"])
        self.w = {k: v.double() for k, v in load_file(folder / "model.safetensors").items()}

    # -- pieces ------------------------------------------------------------------------

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[
            name + ".bias"
        ]

    def _rotate(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """NeoX rotate-half on one (S, Dh) head with per-row angles (S, Dh/2)."""
        half = x.shape[-1] // 2
        a, b = x[:, :half], x[:, half:]
        cos, sin = torch.cos(angles), torch.sin(angles)
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    def _angles(self, head: int, seq: int, dim: int, rotary_start: int) -> torch.Tensor:
        freqs = torch.tensor(
            [self.base ** (-2.0 * j / dim) for j in range(dim // 2)], dtype=torch.float64
        )
        if self.mode == "hf_remote":  # path B: absolute position, every row
            return torch.arange(seq, dtype=torch.float64)[:, None] * freqs[None, :]
        angles = (head * freqs)[None, :].repeat(seq, 1)  # path C: the head index
        angles[:rotary_start] = 0.0
        return angles

    def _encoder(self, h: torch.Tensor, prefix: str, rotary_start: int) -> torch.Tensor:
        seq, d = h.shape
        dh = d // self.heads
        for i in range(self.layers):
            p = f"{prefix}encoder.layers.{i}."
            qkv = h @ self.w[p + "attn.Wqkv.weight"].T  # (S, 3d): all q, all k, all v
            heads = []
            for head in range(self.heads):
                q = qkv[:, head * dh : (head + 1) * dh]
                k = qkv[:, d + head * dh : d + (head + 1) * dh]
                v = qkv[:, 2 * d + head * dh : 2 * d + (head + 1) * dh]
                angles = self._angles(head, seq, dh, rotary_start)
                q, k = self._rotate(q, angles), self._rotate(k, angles)
                scores = torch.softmax(q @ k.T / math.sqrt(dh), dim=-1)
                heads.append(scores @ v)
            attn = torch.cat(heads, dim=-1) @ self.w[p + "attn.out_proj.weight"].T
            h = self._ln(h + attn, p + "norm1")
            gate = h @ self.w[p + "mlp.fc12.weight"].T
            up = h @ self.w[p + "mlp.fc11.weight"].T
            mlp = (up * torch.nn.functional.silu(gate)) @ self.w[p + "mlp.fc2.weight"].T
            h = self._ln(h + mlp, p + "norm2")
        return h

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _tok(self, prefix: str, ids: list[int]) -> torch.Tensor:
        """The embedding-layer call on ids: word row + token-type-0 row (spec §7.4)."""
        words = self.w[prefix + "embeddings.word_embeddings.weight"][ids]
        return words + self.w[prefix + "embeddings.token_type_embeddings.weight"][0]

    # -- stages ------------------------------------------------------------------------

    def dataset_embedding(self, ids: list[int]) -> torch.Tensor:
        """Stage 1 (spec §6) on one unpadded document: (d,)."""
        pre = "first_stage_model.embedder."
        h = self._ln(self._tok(pre, ids), pre + "emb_ln")
        pooled = self._encoder(h, pre, rotary_start=0).mean(0)
        x = self._linear(pooled, "first_stage_model.mlp.0")
        x = torch.nn.functional.gelu(x)
        return self._linear(x, "first_stage_model.mlp.2")

    def embed(self, ids: list[int], dataset: torch.Tensor) -> torch.Tensor:
        """Stage 2 (spec §7) on one unpadded text under (N, d) dataset embeddings: (d,)."""
        pre = "second_stage_model.backbone."
        context = dataset.double()[: self.corpus_size]
        ones = torch.ones(context.shape[1], dtype=torch.float64)
        prompt = self._linear(
            torch.relu(self._linear(ones, "second_stage_model.prompt_projection.0")),
            "second_stage_model.prompt_projection.2",
        ).reshape(8, -1)
        rows = torch.cat([context, prompt, self._tok(pre, ids)], dim=0)
        rows = rows + self.w[pre + "embeddings.token_type_embeddings.weight"][0]  # again
        h = self._encoder(self._ln(rows, pre + "emb_ln"), pre, rotary_start=self.corpus_size)
        pooled = h[context.shape[0] + 8 :].mean(0)  # text rows only, CLS/prefix/SEP included
        hidden = torch.relu(self._linear(pooled, "second_stage_model.output_projection.0"))
        return self._linear(hidden, "second_stage_model.output_projection.2")  # no residual


def unpadded(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Rows of a right-padded id batch without their padding."""
    return [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]


def reference_outputs(golden: dict[str, torch.Tensor], mode: Mode) -> dict[str, torch.Tensor]:
    """Dataset, document and query embeddings of the v1-tiny golden inputs (float32)."""
    ref = NomicReference(V1_TINY, mode)
    minicorpus = unpadded(golden["minicorpus.input_ids"], golden["minicorpus.attention_mask"])
    dataset = torch.stack([ref.dataset_embedding(ids) for ids in minicorpus])
    out = {"dataset_embeddings": dataset.float()}
    for key in ("docs", "queries"):
        texts = unpadded(golden[f"{key}.input_ids"], golden[f"{key}.attention_mask"])
        out[f"{key}.embeddings"] = torch.stack([ref.embed(t, dataset) for t in texts]).float()
    return out


if __name__ == "__main__":
    outputs = reference_outputs(load_file(V1_TINY / "golden.safetensors"), "hf_remote")
    save_file(outputs, PINNED, metadata={"made_by": "tests/core/nomic_reference.py hf_remote"})
    print(f"wrote {PINNED}")

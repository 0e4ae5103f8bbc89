"""Shared helpers for the benchmarks: a random-weight checkpoint, texts of chosen token lengths.

Speed does not depend on weight values, so the benchmarks build a checkpoint folder in the
real layout (``config.json`` naming ``answerdotai/ModernBERT-base``, ``model.safetensors``,
tokenizer files) filled with random weights. The tokenizer is the 512-token one of the test
fixture ``tests/data/cde-reference/v2-tiny``: its ids are valid rows of the 50368-row table.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Re-exported: the benchmark scripts import them from here (after the sys.path setup above).
from cde_rag import CDEEncoder as CDEEncoder  # noqa: E402
from cde_rag import CorpusContext as CorpusContext  # noqa: E402
from cde_rag.config import ModernBertConfig, parse_config  # noqa: E402
from cde_rag.context import new_provenance  # noqa: E402
from cde_rag.model.cde import CDEModel  # noqa: E402

TINY_TOKENIZER = REPO_ROOT / "tests" / "data" / "cde-reference" / "v2-tiny"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SHIPPED_V2_BACKBONE = REPO_ROOT / "cde_rag" / "_data" / "modernbert-base.json"

# config.json of jxm/cde-small-v2 (spec §3.1), minus keys that do not change the computation.
V2_CONFIG: dict[str, object] = {
    "architecture": "transductive",
    "architectures": ["ContextualDocumentEmbeddingTransformer"],
    "attn_implementation": None,
    "autoregressive_backbone": False,
    "dataset_backbone": None,
    "disable_dropout": True,
    "disable_transductive_rotary_embedding": True,
    "embedder": "answerdotai/ModernBERT-base",
    "embedding_output_dim": None,
    "limit_layers": None,
    "limit_layers_first_stage": None,
    "logit_scale": 50.0,
    "max_seq_length": 512,
    "model_revision": "main",
    "pool_ignore_contextual_tokens": True,
    "pool_ignore_instruction_tokens": True,
    "pooling_strategy": "mean",
    "torch_dtype": "float32",
    "transductive_corpus_size": 512,
    "transductive_sequence_dropout_prob": 0.0,
    "transductive_tie_token_embeddings": False,
    "transductive_tokens_per_document": 1,
}

WORDS_SEED = 1234
_LETTERS = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
_LETTER_P = np.linspace(2.0, 0.2, len(_LETTERS))
_LETTER_P /= _LETTER_P.sum()


def build_random_checkpoint(
    folder: str | Path,
    *,
    version: str = "v2",
    layers: int | None = None,
    corpus_size: int = 512,
    std: float = 0.02,
    seed: int = 0,
) -> Path:
    """Write a random-weight CDE checkpoint in the real folder layout.

    Args:
        folder: Target folder (created).
        version: Only ``"v2"`` (ModernBERT-base backbone) is supported.
        layers: Backbone layers; ``None`` uses the shipped ModernBERT-base config (22 layers)
            through ``"embedder": "answerdotai/ModernBERT-base"``, like the real checkpoint.
            Any other value embeds a ``backbone_config`` with that many layers.
        corpus_size: ``transductive_corpus_size`` (context rows; 512 in the real model).
        std: Standard deviation of the random matrices (ModernBERT's initializer_range).
        seed: Random seed.

    Returns:
        The folder.
    """
    if version != "v2":
        msg = f"version={version!r}: only 'v2' (ModernBERT-base) checkpoints are built here."
        raise ValueError(msg)
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(V2_CONFIG, transductive_corpus_size=corpus_size)
    if layers is not None:
        backbone = json.loads(SHIPPED_V2_BACKBONE.read_text(encoding="utf-8"))
        backbone.pop("_source", None)
        backbone["num_hidden_layers"] = layers
        config["backbone_config"] = backbone
    with torch.device("meta"):
        model = CDEModel(parse_config(config))
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, param in model.state_dict().items():
        if param.dim() == 1 and "norm" in name:
            state[name] = torch.ones(param.shape)
        elif param.dim() == 1:
            state[name] = torch.zeros(param.shape)
        else:
            state[name] = torch.randn(param.shape, generator=generator).mul_(std)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name in TOKENIZER_FILES:
        shutil.copy(TINY_TOKENIZER / name, folder / name)
    return folder


def random_context(encoder: CDEEncoder, *, rows: int | None = None, seed: int = 0) -> CorpusContext:
    """A context of random rows (values do not change speed; avoids 512 stage-1 passes)."""
    n = encoder.context_size if rows is None else rows
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n, encoder.dim, generator=generator)
    provenance = new_provenance(
        encoder.identity, size=n, seed=seed, strategy="uniform", n_source_documents=n
    )
    return CorpusContext(embeddings, provenance)


def _random_words(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(2, 10, size=n)
    letters = rng.choice(_LETTERS, size=int(lengths.sum()), p=_LETTER_P)
    out, start = [], 0
    for k in lengths:
        out.append("".join(letters[start : start + k]))
        start += k
    return out


def token_lengths(encoder: CDEEncoder, texts: Sequence[str], *, document: bool = True) -> list[int]:
    """Token counts as the encoder sees them (prefix and special tokens included)."""
    prefix = encoder.document_prefix if document else encoder.query_prefix
    ids, _ = encoder.tokenizer.encode([prefix + t for t in texts], 10**6)
    return [len(x) for x in ids]


def texts_with_token_lengths(
    encoder: CDEEncoder, targets: Sequence[int], *, seed: int = WORDS_SEED, document: bool = True
) -> list[str]:
    """Random-word texts whose token count (with prefix and specials) is close to each target.

    A vectorised binary search over the number of words, checked with the encoder's tokenizer.
    """
    rng = np.random.default_rng(seed)
    pools = [_random_words(rng, int(t) + 8) for t in targets]  # >= 1 token per word
    lo = np.zeros(len(targets), dtype=np.int64)  # largest word count known to fit
    hi = np.array([len(p) for p in pools], dtype=np.int64)
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        texts = [" ".join(p[: max(int(m), 1)]) for p, m in zip(pools, mid, strict=True)]
        fits = np.array(token_lengths(encoder, texts, document=document)) <= np.array(targets)
        lo = np.where(fits, mid, lo)
        hi = np.where(fits, hi, mid)
    return [" ".join(p[: max(int(m), 1)]) for p, m in zip(pools, lo, strict=True)]


def spread_lengths(n: int, low: int, high: int, *, seed: int = 0) -> list[int]:
    """``n`` token lengths evenly spread over ``low..high``, in a shuffled (seeded) order."""
    lengths = np.linspace(low, high, n).round().astype(int)
    np.random.default_rng(seed).shuffle(lengths)
    return [int(x) for x in lengths]


class Timer:
    """``with Timer() as t: ...``; ``t.seconds`` afterwards (synchronises CUDA)."""

    def __init__(self, device: torch.device | None = None) -> None:
        """Remember the device to synchronise."""
        self.device = device
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Timer:
        """Start."""
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop."""
        self._sync()
        self.seconds = time.perf_counter() - self._start


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16-related flags from /proc/cpuinfo (empty when none or unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return sorted(f for f in flags if f in {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"})


def peak_rss_reset() -> None:
    """Reset the process's peak RSS (VmHWM) on Linux; no-op elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def rss_kib(field: str = "VmRSS") -> int:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def backbone_layers(encoder: CDEEncoder) -> int:
    """Transformer layers of the encoder's backbone (ModernBERT or NomicBERT)."""
    backbone = encoder.config.backbone
    if isinstance(backbone, ModernBertConfig):
        return backbone.num_hidden_layers
    return backbone.n_layer

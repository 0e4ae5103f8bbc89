"""CUDA checks of the fast path (``pytest -m gpu``; deselected by default, run by
``benchmarks/gpu_check.sh`` on a GPU machine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.model.varlen import (
    Packing,
    _padded_attention,
    flash_varlen_available,
    varlen_attention,
)
from tests.conftest import V1_TINY, V2_TINY, corpus_texts

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
OPTIONS: dict[str, tuple[Path, dict[str, Any]]] = {
    "v2": (V2_TINY, {}),
    "v1": (V1_TINY, {"nomic_rotary_mode": "repo_hf"}),
}


@pytest.fixture(scope="module", autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need CUDA (run them with -m gpu on a GPU machine only)")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("window", [None, 64])
def test_flash_varlen_matches_reference_attention(dtype: torch.dtype, window: int | None) -> None:
    assert flash_varlen_available(CUDA, dtype)  # Ampere or newer: the fast path is taken
    generator = torch.Generator(device=CUDA).manual_seed(0)
    k_len = torch.tensor([600, 1, 131, 1032], device=CUDA)
    q_len = torch.tensor([80, 1, 131, 512], device=CUDA)  # end-aligned text queries
    k_pack, q_pack = Packing.from_lengths(k_len), Packing.from_lengths(q_len)
    q = torch.randn(q_pack.total, 12, 64, device=CUDA, generator=generator)
    k = torch.randn(k_pack.total, 12, 64, device=CUDA, generator=generator)
    v = torch.randn(k_pack.total, 12, 64, device=CUDA, generator=generator)
    fast = varlen_attention(q.to(dtype), k.to(dtype), v.to(dtype), q_pack, k_pack, window)
    reference = _padded_attention(q, k, v, q_pack, k_pack, window)
    assert fast.dtype == dtype
    assert_close(fast.float(), reference, rtol=0, atol=2e-2)


def test_cuda_defaults_are_the_fast_path() -> None:
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cuda")
    assert encoder.attention == "packed"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported(False) else torch.float32
    assert encoder.dtype == expected


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cuda_float32_packed_equals_padded(version: str) -> None:
    folder, options = OPTIONS[version]
    padded = CDEEncoder.from_pretrained(
        folder, device="cuda", dtype="float32", attention="padded", **options
    )
    packed = CDEEncoder.from_pretrained(
        folder, device="cuda", dtype="float32", attention="packed", **options
    )
    texts = corpus_texts()
    context = padded.build_context(texts, show_progress_bar=False)
    again = packed.build_context(texts, show_progress_bar=False)
    assert_close(again.embeddings, context.embeddings, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        packed.embed_documents(texts, context, batch_size=7),
        padded.embed_documents(texts, context),
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("version", ["v2", "v1"])
def test_cuda_half_packed_agrees_with_cpu_float32(
    request: pytest.FixtureRequest, version: str, dtype: Literal["bfloat16", "float16"]
) -> None:
    folder, options = OPTIONS[version]
    fast = CDEEncoder.from_pretrained(
        folder, device="cuda", dtype=dtype, attention="packed", **options
    )
    cpu: CDEEncoder = request.getfixturevalue(f"{version}_encoder_session")
    context: CorpusContext = request.getfixturevalue(f"{version}_context")
    texts = corpus_texts()
    built = fast.build_context(texts, show_progress_bar=False)
    assert built.embeddings.dtype == torch.float32
    rows_cos = torch.nn.functional.cosine_similarity(built.embeddings, context.embeddings)
    assert rows_cos.min() >= 0.999
    for embed in ("embed_documents", "embed_queries"):
        vectors = getattr(fast, embed)(texts, context)
        reference = getattr(cpu, embed)(texts, context)
        assert vectors.dtype == np.float32
        assert (vectors * reference).sum(axis=1).min() >= 0.999

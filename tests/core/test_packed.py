"""The packed (unpadded) forward passes equal the padded ones; the attention switch."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from cde_rag import CDEEncoder, CorpusContext
from cde_rag._fastpath import resolve_attention
from cde_rag.config import ModernBertConfig
from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag.model import varlen
from cde_rag.model.cde import CDEModel
from cde_rag.model.unpadded import set_attention
from cde_rag.model.varlen import Packing, _padded_attention, varlen_attention
from tests.conftest import V1_TINY, V2_TINY, corpus_texts, golden

ATOL = 1e-5
CASES: dict[str, tuple[Path, dict[str, Any]]] = {
    "v2": (V2_TINY, {}),
    "v1-repo_hf": (V1_TINY, {"nomic_rotary_mode": "repo_hf"}),
    "v1-hf_remote": (V1_TINY, {"nomic_rotary_mode": "hf_remote"}),
    "v1-training": (V1_TINY, {"nomic_rotary_mode": "training"}),
}

Models = tuple[CDEModel, CDEModel, dict[str, torch.Tensor]]


@pytest.fixture(scope="module", params=list(CASES))
def models(request: pytest.FixtureRequest) -> Models:
    folder, options = CASES[request.param]
    encoder = CDEEncoder.from_pretrained(folder, device="cpu", attention="padded", **options)
    padded = encoder.model
    packed = copy.deepcopy(padded)
    set_attention(packed, "packed")
    assert packed.second_stage_model.backbone.attention == "packed"
    assert padded.first_stage_model.embedder.attention == "padded"
    return padded, packed, golden(folder)


def _mixed_batch(g: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The golden docs plus a 1-token-shorter copy of each: many different lengths."""
    ids, mask = g["docs.input_ids"], g["docs.attention_mask"].clone()
    shorter = mask.clone()
    lengths = mask.sum(dim=1)
    shorter[torch.arange(mask.shape[0]), (lengths - 1).clamp(min=1)] = 0
    both_ids = torch.cat([ids, ids])
    both_mask = torch.cat([mask, shorter])
    assert len(set(both_mask.sum(dim=1).tolist())) >= 4
    return both_ids, both_mask


def test_first_stage_packed_equals_padded(models: Models) -> None:
    padded, packed, g = models
    ids, mask = g["minicorpus.input_ids"], g["minicorpus.attention_mask"]
    assert len(set(mask.sum(dim=1).tolist())) > 1  # mixed lengths
    with torch.inference_mode():
        expected = padded.first_stage_model(ids, mask)
        assert_close(packed.first_stage_model(ids, mask), expected, rtol=0, atol=ATOL)
        one = packed.first_stage_model(ids[:1], mask[:1])
    assert_close(one, expected[:1], rtol=0, atol=ATOL)


@pytest.mark.parametrize("rows", ["exact", "more", "fewer"])
def test_second_stage_packed_equals_padded(models: Models, rows: str) -> None:
    padded, packed, g = models
    config = padded.config
    embeddings = {
        "exact": g["dataset_embeddings"],
        "more": g["dataset_embeddings_more"],
        "fewer": g["dataset_embeddings"][:10],
    }[rows]
    if rows == "fewer" and not config.accepts_fewer_context_rows:
        with pytest.raises(ContextMismatchError, match="needs at least"):
            packed.prepare_context(embeddings)  # v1 refuses them on either path
        return
    ids, mask = _mixed_batch(g)
    with torch.inference_mode():
        context = padded.prepare_context(embeddings)
        expected = padded.second_stage_model(ids, mask, context)
        got = packed.second_stage_model(ids, mask, context)
        assert_close(got, expected, rtol=0, atol=ATOL)
        for i in (0, 3):  # batch of 1, unpadded
            n = int(mask[i].sum())
            one = packed.second_stage_model(ids[i : i + 1, :n], mask[i : i + 1, :n], context)
            assert_close(one, expected[i : i + 1], rtol=0, atol=ATOL)


def test_full_hidden_states_packed_equal_padded(models: Models) -> None:
    """Every row of ``[context; soft prompt; text]``, not only the pooled text rows."""
    padded, packed, g = models
    ids, mask = _mixed_batch(g)
    with torch.inference_mode():
        context = padded.prepare_context(g["dataset_embeddings"])
        expected = padded.second_stage_model.hidden_states(ids, mask, context, full_output=True)
        got = packed.second_stage_model.hidden_states(ids, mask, context, full_output=True)
        text = packed.second_stage_model.hidden_states(ids, mask, context)
    n_prefix = expected.shape[1] - ids.shape[1]
    on = torch.cat([torch.ones(ids.shape[0], n_prefix, dtype=torch.bool), mask.bool()], dim=1)
    assert_close(got[on], expected[on], rtol=0, atol=ATOL)
    assert torch.equal(got[~on], torch.zeros_like(got[~on]))  # padding rows are zeros
    assert_close(text[mask.bool()], expected[:, n_prefix:][mask.bool()], rtol=0, atol=ATOL)


def _reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None
) -> torch.Tensor:
    """One sequence, written out: queries aligned to the end of the keys."""
    offset = k.shape[0] - q.shape[0]
    scores = torch.einsum("qhd,khd->hqk", q, k) / q.shape[-1] ** 0.5
    if window is not None:
        qpos = torch.arange(q.shape[0])[:, None] + offset
        far = (qpos - torch.arange(k.shape[0])[None, :]).abs() > window
        scores = scores.masked_fill(far[None], float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v)


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("queries", ["all", "last"])
def test_varlen_attention_matches_per_sequence_attention(window: int | None, queries: str) -> None:
    generator = torch.Generator().manual_seed(0)
    k_len = torch.tensor([9, 1, 14, 5])
    q_len = k_len if queries == "all" else torch.tensor([4, 1, 2, 5])
    k_pack, q_pack = Packing.from_lengths(k_len), Packing.from_lengths(q_len)
    q = torch.randn(q_pack.total, 2, 8, generator=generator)
    k = torch.randn(k_pack.total, 2, 8, generator=generator)
    v = torch.randn(k_pack.total, 2, 8, generator=generator)
    got = varlen_attention(q, k, v, q_pack, k_pack, window)
    qs, ks = q_pack.cu_seqlens.tolist(), k_pack.cu_seqlens.tolist()
    for b in range(4):
        expected = _reference_attention(
            q[qs[b] : qs[b + 1]], k[ks[b] : ks[b + 1]], v[ks[b] : ks[b + 1]], window
        )
        assert_close(got[qs[b] : qs[b + 1]], expected, rtol=0, atol=1e-5)


def test_packing_round_trip() -> None:
    packing = Packing.from_lengths(torch.tensor([3, 1, 2]))
    assert packing.cu_seqlens.tolist() == [0, 3, 4, 6]
    assert packing.positions.tolist() == [0, 1, 2, 0, 0, 1]
    assert packing.seq_index.tolist() == [0, 0, 0, 1, 2, 2]
    rows = torch.arange(6.0)[:, None]
    padded = packing.unpack(rows, 4)
    assert padded[:, :, 0].tolist() == [[0, 1, 2, 0], [3, 0, 0, 0], [4, 5, 0, 0]]
    assert torch.equal(packing.pack(padded), rows)


# -- the public switch ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed_v2() -> CDEEncoder:
    return CDEEncoder.from_pretrained(V2_TINY, device="cpu", attention="packed")


def test_encoder_packed_equals_padded(
    packed_v2: CDEEncoder, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    assert packed_v2.attention == "packed" and v2_encoder_session.attention == "padded"
    texts = corpus_texts()
    context = packed_v2.build_context(texts, show_progress_bar=False)
    assert_close(context.embeddings, v2_context.embeddings, rtol=0, atol=ATOL)
    docs = packed_v2.embed_documents(texts, v2_context, batch_size=5)
    expected = v2_encoder_session.embed_documents(texts, v2_context)
    np.testing.assert_allclose(docs, expected, rtol=0, atol=ATOL)
    query = packed_v2.embed_queries(["one query"], v2_context)
    expected_query = v2_encoder_session.embed_queries(["one query"], v2_context)
    np.testing.assert_allclose(query, expected_query, rtol=0, atol=ATOL)


def test_cpu_defaults_are_float32_and_padded() -> None:
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    assert encoder.dtype == torch.float32
    assert encoder.attention == "padded"
    assert resolve_attention("auto", torch.device("cuda")) == "packed"
    assert resolve_attention("auto", torch.device("cpu")) == "padded"
    assert resolve_attention("packed", torch.device("cpu")) == "packed"


@pytest.mark.parametrize("bad", ["flash", "", None])
def test_unknown_attention_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match=r"attention=.*; expected 'auto' or one of padded"):
        CDEEncoder.from_pretrained(V2_TINY, device="cpu", attention=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"expected one of padded, packed"):
        set_attention(CDEModel(CDEEncoder.from_pretrained(V2_TINY).config), bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_bfloat16_packed_is_close_to_float32(request: pytest.FixtureRequest, version: str) -> None:
    """bf16 on CPU through the packed path: cosine >= 0.999 against float32 padded."""
    folder = V2_TINY if version == "v2" else V1_TINY
    options: dict[str, Any] = {"nomic_rotary_mode": "repo_hf"} if version == "v1" else {}
    bf16 = CDEEncoder.from_pretrained(
        folder, device="cpu", dtype="bfloat16", attention="packed", **options
    )
    fp32: CDEEncoder = request.getfixturevalue(f"{version}_encoder_session")
    context: CorpusContext = request.getfixturevalue(f"{version}_context")
    texts = corpus_texts()
    vectors = bf16.embed_documents(texts, context)
    reference = fp32.embed_documents(texts, context)
    assert vectors.dtype == np.float32
    cosine = (vectors * reference).sum(axis=1)
    assert cosine.min() >= 0.999
    built = bf16.build_context(texts, show_progress_bar=False)
    row_cos = torch.nn.functional.cosine_similarity(built.embeddings, context.embeddings)
    assert row_cos.min() >= 0.999


@pytest.mark.parametrize("has_window", [True, False])
def test_flash_dispatch_passes_varlen_arguments(
    models: Models, monkeypatch: pytest.MonkeyPatch, has_window: bool
) -> None:
    """The CUDA branch on CPU: a stand-in for ``varlen_attn`` checks what it is given.

    Without ``window_size`` support (torch < 2.11) local layers take the fallback kernel.
    """
    padded, packed, g = models
    calls: list[tuple[int, int] | None] = []

    def fake_varlen_attn(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu_q: torch.Tensor,
        cu_k: torch.Tensor,
        max_q: int,
        max_k: int,
        *,
        window_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        assert cu_q.dtype == cu_k.dtype == torch.int32
        assert q.is_contiguous() and k.is_contiguous() and v.is_contiguous()
        q_pack, k_pack = Packing.from_lengths(cu_q.diff()), Packing.from_lengths(cu_k.diff())
        assert (q_pack.max_len, k_pack.max_len) == (max_q, max_k)
        assert q_pack.total == q.shape[0] and k_pack.total == k.shape[0]
        calls.append(window_size)
        window = None if window_size is None else window_size[0]
        assert window_size is None or window_size == (window, window)
        return _padded_attention(q, k, v, q_pack, k_pack, window)

    monkeypatch.setattr(varlen, "_varlen_attn", lambda: fake_varlen_attn)
    monkeypatch.setattr(varlen, "flash_varlen_available", lambda *args: True)
    monkeypatch.setattr(varlen, "_varlen_has_window", lambda: has_window)
    ids, mask = _mixed_batch(g)
    with torch.inference_mode():
        context = padded.prepare_context(g["dataset_embeddings"])
        expected = padded.second_stage_model(ids, mask, context)
        got = packed.second_stage_model(ids, mask, context)
    assert_close(got, expected, rtol=0, atol=ATOL)
    backbone = packed.config.backbone
    if isinstance(backbone, ModernBertConfig):
        layers = backbone.num_hidden_layers
        n_global = len(range(0, layers, backbone.global_attn_every_n_layers))
        window = backbone.local_attention // 2
        local: list[tuple[int, int] | None] = (
            [(window, window)] * (layers - n_global) if has_window else []
        )
        assert sorted(calls, key=str) == sorted([None] * n_global + local, key=str)
    else:
        assert calls == [None] * backbone.n_layer

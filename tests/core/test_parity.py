"""Numerical parity of the native model with the upstream golden fixtures (spec §14)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from cde_rag import CDEEncoder
from cde_rag.context import CorpusContext, new_provenance
from cde_rag.errors import ContextMismatchError
from cde_rag.model._ops import mean_pool
from tests.conftest import V1_TINY, V2_TINY, fixture_texts, golden

EMB_ATOL = 1e-5
HIDDEN_ATOL = 5e-5


Case = tuple[str, CDEEncoder, dict[str, torch.Tensor], Path]


@pytest.fixture(scope="module", params=["v2-padded", "v2-packed", "v1-padded", "v1-packed"])
def case(request: pytest.FixtureRequest) -> Case:
    """Each model through both batch layouts (``attention="padded"`` and ``"packed"``)."""
    version, attention = request.param.split("-")
    folder = V2_TINY if version == "v2" else V1_TINY
    options: dict[str, Any] = {"nomic_rotary_mode": "repo_hf"} if version == "v1" else {}
    encoder = CDEEncoder.from_pretrained(
        folder, device="cpu", max_length=40, attention=attention, **options
    )
    assert encoder.attention == attention
    return version, encoder, golden(folder), folder


def _ids(encoder: CDEEncoder, texts: list[str], g: dict[str, torch.Tensor], key: str) -> None:
    """The native tokenizer reproduces the golden ids and masks exactly."""
    ids, _ = encoder.tokenizer.encode(texts, 40)
    gold_ids, gold_mask = g[f"{key}.input_ids"], g[f"{key}.attention_mask"]
    for row, tokens in enumerate(ids):
        assert tokens == gold_ids[row][gold_mask[row].bool()].tolist()
        assert int(gold_mask[row].sum()) == len(tokens)


def test_tokenizer_reproduces_golden_ids(case: Case) -> None:
    _, encoder, g, folder = case
    texts = fixture_texts(folder)
    for key in ("minicorpus", "extra_docs", "docs", "queries"):
        _ids(encoder, texts[key], g, key)


def test_first_stage_matches(case: Case) -> None:
    _, encoder, g, _ = case
    stage1 = encoder.model.first_stage_model
    ids, mask = g["minicorpus.input_ids"], g["minicorpus.attention_mask"]
    with torch.inference_mode():
        hidden = stage1.embedder(ids, mask)
        pooled = mean_pool(hidden, g["minicorpus.pool_mask"])
        dataset = stage1(ids, mask)
    on = mask.bool()
    assert_close(
        hidden[on], g["minicorpus.embedder_last_hidden_state"][on], rtol=0, atol=HIDDEN_ATOL
    )
    assert torch.equal(g["minicorpus.pool_mask"], mask)  # CLS, prefix and SEP included
    assert_close(pooled, g["minicorpus.pooled"], rtol=0, atol=EMB_ATOL)
    assert_close(dataset, g["dataset_embeddings"], rtol=0, atol=EMB_ATOL)


def test_first_stage_is_batch_invariant(case: Case) -> None:
    _, encoder, g, _ = case
    stage1 = encoder.model.first_stage_model
    ids, mask = g["minicorpus.input_ids"], g["minicorpus.attention_mask"]
    with torch.inference_mode():
        halves = torch.cat([stage1(ids[:8], mask[:8]), stage1(ids[8:], mask[8:])])
    assert_close(halves, g["dataset_embeddings"], rtol=0, atol=EMB_ATOL)


def test_soft_prompt_matches(case: Case) -> None:
    _, encoder, g, _ = case
    with torch.inference_mode():
        prompt = encoder.model.second_stage_model.soft_prompt()
    assert_close(prompt, g["soft_prompt"], rtol=0, atol=EMB_ATOL)


@pytest.mark.parametrize("key", ["docs", "queries"])
def test_second_stage_matches(case: Case, key: str) -> None:
    _, encoder, g, _ = case
    stage2 = encoder.model.second_stage_model
    ids, mask = g[f"{key}.input_ids"], g[f"{key}.attention_mask"]
    with torch.inference_mode():
        context = stage2.prepare_context(g["dataset_embeddings"])
        pool_mask = stage2.pool_mask(ids, mask)
        hidden = stage2.hidden_states(ids, mask, context)
        pooled = mean_pool(hidden, pool_mask)
        out = stage2(ids, mask, context)
    assert torch.equal(pool_mask, g[f"{key}.pool_mask"])
    assert_close(pooled, g[f"{key}.pooled"], rtol=0, atol=EMB_ATOL)
    assert_close(out, g[f"{key}.embeddings"], rtol=0, atol=EMB_ATOL)


def test_backbone_inputs_and_hidden_states_match(case: Case) -> None:
    _, encoder, g, _ = case
    stage2 = encoder.model.second_stage_model
    ids, mask = g["docs.input_ids"], g["docs.attention_mask"]
    n_prefix = g["dataset_embeddings"].shape[0] + 8
    with torch.inference_mode():
        context = stage2.prepare_context(g["dataset_embeddings"])
        tokens = stage2.backbone.embed_tokens(ids)
        full = stage2.hidden_states(ids, mask, context, full_output=True)
    inputs = g["docs.backbone_inputs_embeds"]
    assert_close(inputs[:, n_prefix:], tokens, rtol=0, atol=EMB_ATOL)
    assert_close(inputs[0, : n_prefix - 8], g["dataset_embeddings"], rtol=0, atol=0)
    assert_close(inputs[0, n_prefix - 8 : n_prefix], g["soft_prompt"], rtol=0, atol=EMB_ATOL)
    on = torch.cat([torch.ones(ids.shape[0], n_prefix, dtype=torch.bool), mask.bool()], dim=1)
    assert_close(full[on], g["docs.backbone_last_hidden_state"][on], rtol=0, atol=HIDDEN_ATOL)


def test_more_context_rows_keep_the_first(case: Case) -> None:
    _, encoder, g, _ = case
    stage2 = encoder.model.second_stage_model
    ids, mask = g["docs.input_ids"], g["docs.attention_mask"]
    with torch.inference_mode():
        out = stage2(ids, mask, stage2.prepare_context(g["dataset_embeddings_more"]))
        out3d = stage2(ids, mask, stage2.prepare_context(g["dataset_embeddings"][None]))
    assert_close(out, g["docs_more_context.embeddings"], rtol=0, atol=EMB_ATOL)
    assert_close(out3d, g["docs.embeddings"], rtol=0, atol=EMB_ATOL)


def test_fewer_context_rows(case: Case) -> None:
    version, encoder, g, _ = case
    stage2 = encoder.model.second_stage_model
    ids, mask = g["docs.input_ids"], g["docs.attention_mask"]
    fewer = g["dataset_embeddings"][:10]
    if version == "v1":
        with pytest.raises(ContextMismatchError, match="needs at least 16"):
            stage2.prepare_context(fewer)
        return
    with torch.inference_mode():
        out = stage2(ids, mask, stage2.prepare_context(fewer))
    assert_close(out, g["docs_fewer_context.embeddings"], rtol=0, atol=EMB_ATOL)


def test_one_at_a_time_equals_batched(case: Case) -> None:
    _, encoder, g, _ = case
    stage2 = encoder.model.second_stage_model
    ids, mask = g["docs.input_ids"], g["docs.attention_mask"]
    with torch.inference_mode():
        context = stage2.prepare_context(g["dataset_embeddings"])
        rows = []
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())  # unpadded: a different sequence length per call
            rows.append(stage2(ids[i : i + 1, :n], mask[i : i + 1, :n], context))
    assert_close(torch.cat(rows), g["docs.embeddings"], rtol=0, atol=EMB_ATOL)


def test_full_model_forward(case: Case) -> None:
    _, encoder, g, _ = case
    with torch.inference_mode():
        out = encoder.model(
            g["docs.input_ids"],
            g["docs.attention_mask"],
            g["minicorpus.input_ids"],
            g["minicorpus.attention_mask"],
        )
    assert_close(out, g["docs.embeddings"], rtol=0, atol=EMB_ATOL)


def test_encoder_end_to_end_matches_golden(case: Case) -> None:
    """Through the public API: build the context from text, embed docs and queries."""
    version, encoder, g, folder = case
    texts = fixture_texts(folder)
    context = encoder.build_context(texts["minicorpus"], show_progress_bar=False)
    assert_close(context.embeddings, g["dataset_embeddings"], rtol=0, atol=EMB_ATOL)
    docs = encoder.embed_documents(
        texts["docs"], context, prefix="", normalize=False, show_progress_bar=False
    )
    queries = encoder.embed_queries(texts["queries"], context, normalize=False, batch_size=3)
    assert_close(torch.from_numpy(docs), g["docs.embeddings"], rtol=0, atol=EMB_ATOL)
    assert_close(torch.from_numpy(queries), g["queries.embeddings"], rtol=0, atol=EMB_ATOL)
    # the prefix-only query and the colon-without-prefix quirk are rows of these tensors
    assert texts["queries"][2] == "search_query: "
    assert ":" in texts["docs"][4] and not texts["docs"][4].startswith("search_")
    # golden context given explicitly: identical to the one built from text
    given = CorpusContext(
        g["dataset_embeddings"],
        new_provenance(
            encoder.identity, size=16, seed=None, strategy="given", n_source_documents=16
        ),
    )
    again = encoder.embed_documents(texts["docs"][:3], given, normalize=False)
    assert_close(torch.from_numpy(again), g["docs.embeddings"][:3], rtol=0, atol=EMB_ATOL)
    assert version in {"v1", "v2"}

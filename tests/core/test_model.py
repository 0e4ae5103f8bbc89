"""The documented model switches, and the native ModernBERT against transformers'."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

from cde_rag import CDEEncoder
from cde_rag.config import parse_config
from cde_rag.model._ops import mean_pool
from cde_rag.model.weights import load_model
from tests.conftest import V1_TINY, V2_TINY, golden

G2 = golden(V2_TINY)
G1 = golden(V1_TINY)


def _docs(encoder: CDEEncoder, g: dict[str, torch.Tensor], context: torch.Tensor) -> torch.Tensor:
    stage2 = encoder.model.second_stage_model
    with torch.inference_mode():
        out: torch.Tensor = stage2(
            g["docs.input_ids"], g["docs.attention_mask"], stage2.prepare_context(context)
        )
    return out


def test_output_residual_switch() -> None:
    on = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    off = CDEEncoder.from_pretrained(V2_TINY, device="cpu", output_residual=False)
    assert on.config.output_residual and not off.config.output_residual
    stage2 = on.model.second_stage_model
    ids, mask = G2["docs.input_ids"], G2["docs.attention_mask"]
    with torch.inference_mode():
        ctx = stage2.prepare_context(G2["dataset_embeddings"])
        pooled = mean_pool(stage2.hidden_states(ids, mask, ctx), stage2.pool_mask(ids, mask))
    # residual on = residual off + the pooled vector itself (spec §7.6)
    assert_close(
        _docs(on, G2, G2["dataset_embeddings"]) - _docs(off, G2, G2["dataset_embeddings"]),
        pooled,
        rtol=0,
        atol=1e-5,
    )


def test_instruction_pooling_switch() -> None:
    off = CDEEncoder.from_pretrained(V2_TINY, device="cpu", pool_ignore_instruction_tokens=False)
    stage2 = off.model.second_stage_model
    mask = G2["docs.attention_mask"]
    assert torch.equal(stage2.pool_mask(G2["docs.input_ids"], mask), mask)
    assert (_docs(off, G2, G2["dataset_embeddings"]) - G2["docs.embeddings"]).abs().max() > 0.1


def test_v2_context_order_matters() -> None:
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    flipped = _docs(encoder, G2, G2["dataset_embeddings"].flip(0))
    assert (flipped - G2["docs.embeddings"]).abs().max() > 1e-2  # RoPE over context rows


@pytest.mark.parametrize(
    ("mode", "order_matters"),
    [("repo_hf", False), ("training", False), ("hf_remote", True)],
)
def test_v1_rotary_modes(mode: str, order_matters: bool) -> None:
    """Modes that leave context rows unrotated are invariant to their order (spec §7.4)."""
    encoder = CDEEncoder.from_pretrained(V1_TINY, device="cpu", nomic_rotary_mode=mode)  # type: ignore[arg-type]
    straight = _docs(encoder, G1, G1["dataset_embeddings"])
    flipped = _docs(encoder, G1, G1["dataset_embeddings"].flip(0))
    diff = float((straight - flipped).abs().max())
    assert (diff > 1e-4) == order_matters, diff
    reference = float((straight - G1["docs.embeddings"]).abs().max())
    assert (reference < 1e-5) == (mode == "repo_hf")  # only repo_hf is the fixture's path


def test_v1_training_mode_adds_token_type_once() -> None:
    encoder = CDEEncoder.from_pretrained(V1_TINY, device="cpu", nomic_rotary_mode="training")
    backbone = encoder.model.second_stage_model.backbone
    text = torch.randn(1, 3, 8)
    mask = torch.ones(1, 3, dtype=torch.long)
    with torch.inference_mode():
        once = backbone.forward_contextual(None, text, mask, full_output=True)
        backbone.rotary_mode = "repo_hf"  # adds TT[0] again, but also rotates by head index
        twice = backbone.forward_contextual(None, text, mask, full_output=True)
    assert (once - twice).abs().max() > 1e-3


def test_native_modernbert_equals_transformers() -> None:
    """Cross-check the native backbone with transformers' ModernBertModel on the same weights."""
    from transformers import ModernBertConfig, ModernBertModel

    data = json.loads((V2_TINY / "config.json").read_text())["backbone_config"]
    # transformers types neither the config's attn_implementation keyword nor eval()
    config = ModernBertConfig(**data, attn_implementation="sdpa")  # type: ignore[call-arg]
    reference = ModernBertModel(config).eval()  # type: ignore[no-untyped-call]
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    native = encoder.model.first_stage_model.embedder
    state = {k: v.clone() for k, v in native.state_dict().items()}
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if "inv_freq" not in k]
    ids, mask = G2["minicorpus.input_ids"], G2["minicorpus.attention_mask"]
    on = mask.bool()
    with torch.inference_mode():
        ours = native(ids, mask)
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        # inputs_embeds path: transformers applies the embedding norm again (spec §7.3)
        embeds = native.embed_tokens(ids)
        theirs2 = reference(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        ours2 = native.forward_contextual(None, embeds, mask, full_output=True)
    assert_close(ours[on], theirs[on], rtol=0, atol=5e-5)
    assert_close(ours2[on], theirs2[on], rtol=0, atol=5e-5)


def test_null_embedding_parameter_exists_only_when_configured() -> None:
    from cde_rag.config import parse_config
    from cde_rag.model.cde import CDEModel

    data = json.loads((V2_TINY / "config.json").read_text())
    with torch.device("meta"):
        plain = CDEModel(parse_config(data))
        dropout = CDEModel(parse_config({**data, "transductive_sequence_dropout_prob": 0.1}))
    key = "second_stage_model.sequence_dropout_null_embedding"
    assert key not in plain.state_dict() and key in dropout.state_dict()


def test_switches_can_be_set_in_config_json() -> None:
    from cde_rag.config import parse_config

    data = json.loads((V2_TINY / "config.json").read_text())
    assert parse_config(data).output_residual is True
    assert parse_config({**data, "cde_rag_output_residual": False}).output_residual is False
    assert parse_config(
        {**data, "cde_rag_output_residual": False}, output_residual=True
    ).output_residual
    v1 = json.loads((V1_TINY / "config.json").read_text())
    assert parse_config(v1).nomic_rotary_mode == "hf_remote"
    assert (
        parse_config({**v1, "cde_rag_nomic_rotary_mode": "repo_hf"}).nomic_rotary_mode == "repo_hf"
    )
    assert parse_config(v1).output_residual is False
    assert parse_config(v1).pool_ignore_instruction_tokens is False


def test_contextual_pooling_switch_averages_the_prefix_rows_in() -> None:
    """``pool_ignore_contextual_tokens=false`` pools context and soft-prompt rows too (§7.5)."""
    data = json.loads((V2_TINY / "config.json").read_text())
    config = parse_config({**data, "pool_ignore_contextual_tokens": False}, instruction_end_id=25)
    assert config.pool_ignore_contextual_tokens is False
    model = load_model(config, V2_TINY / "model.safetensors")
    stage2 = model.second_stage_model
    ids, mask = G2["docs.input_ids"], G2["docs.attention_mask"]
    with torch.inference_mode():
        ctx = stage2.prepare_context(G2["dataset_embeddings"])
        full = stage2.hidden_states(ids, mask, ctx, full_output=True)
        out = stage2(ids, mask, ctx)
    n_prefix = ctx.shape[0] + config.n_soft_prompt
    text_weights = stage2.pool_mask(ids, mask).double()
    expected = []
    for row in range(ids.shape[0]):
        rows = torch.cat([full[row, :n_prefix].double(), full[row, n_prefix:].double()])
        weights = torch.cat([torch.ones(n_prefix, dtype=torch.double), text_weights[row]])
        expected.append((rows * weights[:, None]).sum(0) / weights.sum())
    with torch.inference_mode():
        projected = stage2.project(torch.stack(expected).float())
    assert_close(out, projected, rtol=0, atol=1e-5)
    assert (out - G2["docs.embeddings"]).abs().max() > 1e-2  # differs from the default

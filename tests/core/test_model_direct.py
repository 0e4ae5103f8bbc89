"""The model carries what it needs: ``load_config`` + ``load_model`` alone reproduce the goldens."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from cde_rag import CDEEncoder
from cde_rag.config import load_config
from cde_rag.errors import CheckpointFormatError, InvalidInputError
from cde_rag.model.cde import CDEModel
from cde_rag.model.weights import load_model
from tests.conftest import V1_TINY, V2_TINY, golden

EMB_ATOL = 1e-5


@pytest.mark.parametrize("folder", [V2_TINY, V1_TINY], ids=["v2", "v1"])
def test_model_used_directly_reproduces_the_goldens(folder: Path) -> None:
    """As the CDEModel docstring shows: config from the folder, weights, full forward."""
    options = {"nomic_rotary_mode": "repo_hf"} if folder == V1_TINY else {}
    config = load_config(folder, **options)
    model = load_model(config, folder / "model.safetensors")
    assert isinstance(model, CDEModel)
    g = golden(folder)
    with torch.inference_mode():
        for key in ("docs", "queries"):
            out = model(
                g[f"{key}.input_ids"],
                g[f"{key}.attention_mask"],
                g["minicorpus.input_ids"],
                g["minicorpus.attention_mask"],
            )
            assert_close(out, g[f"{key}.embeddings"], rtol=0, atol=EMB_ATOL)


def test_instruction_end_id_comes_from_the_checkpoint_tokenizer() -> None:
    assert load_config(V2_TINY).instruction_end_id == 25  # ":" in the tiny BPE vocabulary
    assert load_config(V1_TINY).instruction_end_id is not None
    assert load_config(V2_TINY, instruction_end_id=7).instruction_end_id == 7


def test_stage_two_refuses_to_pool_without_the_instruction_end_id(tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(V2_TINY / name, folder / name)
    config = load_config(folder)
    assert config.instruction_end_id is None and config.pool_ignore_instruction_tokens
    model = load_model(config, folder / "model.safetensors")
    g = golden(V2_TINY)
    with (
        torch.inference_mode(),
        pytest.raises(CheckpointFormatError, match=r"no instruction_end_id.*load_config"),
    ):
        model(
            g["docs.input_ids"],
            g["docs.attention_mask"],
            g["minicorpus.input_ids"],
            g["minicorpus.attention_mask"],
        )
    # stage 1 needs no tokenizer and still works
    with torch.inference_mode():
        dataset = model.first_stage_model(g["minicorpus.input_ids"], g["minicorpus.attention_mask"])
    assert_close(dataset, g["dataset_embeddings"], rtol=0, atol=EMB_ATOL)
    # without instruction pooling there is nothing to refuse
    plain = CDEModel(dataclasses.replace(config, pool_ignore_instruction_tokens=False))
    assert torch.equal(
        plain.second_stage_model.pool_mask(g["docs.input_ids"], g["docs.attention_mask"]),
        g["docs.attention_mask"].long(),
    )


def test_encoder_refuses_a_tokenizer_that_disagrees_with_the_model() -> None:
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    config = dataclasses.replace(encoder.config, instruction_end_id=3)
    model = load_model(config, V2_TINY / "model.safetensors")
    with pytest.raises(InvalidInputError, match="instruction_end_id=3 but the tokenizer's is 25"):
        CDEEncoder(model, encoder.tokenizer, encoder.identity)

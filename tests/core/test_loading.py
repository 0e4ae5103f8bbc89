"""Checkpoint loading: folders, hub ids, tokenizers, strict weights and every error path."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

import cde_rag.hub
from cde_rag import CDEEncoder
from cde_rag.config import parse_config
from cde_rag.errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    ModelDownloadError,
    TokenizerNotFoundError,
)
from cde_rag.model.cde import CDEModel
from cde_rag.model.modernbert import ModernBertBackbone
from tests.conftest import V1_TINY, V2_TINY


def _copy(folder: Path, tmp_path: Path, *, skip: tuple[str, ...] = ()) -> Path:
    target = tmp_path / folder.name
    target.mkdir()
    for f in folder.iterdir():
        if f.name not in skip and f.name != "golden.safetensors":
            shutil.copy(f, target / f.name)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def _edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_loads_fixture_folders_by_str_and_path() -> None:
    by_path = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    by_str = CDEEncoder.from_pretrained(str(V2_TINY), device="cpu")
    assert by_path.identity == by_str.identity
    assert by_path.identity.revision is None
    assert by_path.config.version == "v2" and by_path.dim == 64 and by_path.context_size == 16
    assert by_path.max_length == 512  # max_seq_length of the config
    v1 = CDEEncoder.from_pretrained(V1_TINY, device="cpu")
    assert v1.config.version == "v1" and v1.config.nomic_rotary_mode == "hf_remote"


def test_weights_hash_is_the_file_sha256() -> None:
    import hashlib

    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    digest = hashlib.sha256((V2_TINY / "model.safetensors").read_bytes()).hexdigest()
    assert encoder.identity.weights_hash == digest


@pytest.mark.slow
def test_modernbert_base_sized_checkpoint_loads_through_shipped_config(tmp_path: Path) -> None:
    """A real-layout folder without backbone_config: the shipped ModernBERT-base config is used."""
    folder = _copy(V2_TINY, tmp_path, skip=("model.safetensors",))
    _edit_config(folder, backbone_config=None, embedder="answerdotai/ModernBERT-base")
    config = parse_config(json.loads((folder / "config.json").read_text()))
    backbone = config.backbone
    assert (backbone.hidden_size, backbone.num_hidden_layers) == (768, 22)  # type: ignore[union-attr]
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in CDEModel(config).state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    save_file(state, folder / "model.safetensors")
    del state
    encoder = CDEEncoder.from_pretrained(folder, device="cpu")
    assert encoder.dim == 768 and encoder.context_size == 16
    embedder = encoder.model.first_stage_model.embedder
    assert isinstance(embedder, ModernBertBackbone)
    assert embedder.embeddings.tok_embeddings.weight.shape == (50368, 768)
    context = encoder.build_context([f"document number {i}" for i in range(4)], size=4)
    vectors = encoder.embed_documents(["a short text", "another one"], context)
    assert vectors.shape == (2, 768) and bool(torch.isfinite(torch.from_numpy(vectors)).all())


def test_missing_folder() -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        CDEEncoder.from_pretrained("./no/such/folder")


def test_folder_without_safetensors(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path, skip=("model.safetensors",))
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointNotFoundError, match=r"no model\.safetensors.*no pickle"):
        CDEEncoder.from_pretrained(folder)


def test_folder_without_config(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path, skip=("config.json",))
    with pytest.raises(CheckpointNotFoundError, match=r"no config\.json"):
        CDEEncoder.from_pretrained(folder)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_unreadable_config(tmp_path: Path, content: str, match: str) -> None:
    folder = _copy(V2_TINY, tmp_path)
    (folder / "config.json").write_text(content)
    with pytest.raises(CheckpointFormatError, match=match):
        CDEEncoder.from_pretrained(folder)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"embedder": None}, "embedder"),
        ({"transductive_corpus_size": 0}, "transductive_corpus_size"),
        ({"backbone_config": None, "embedder": "someone/other-bert"}, "unknown backbone"),
        ({"backbone_config": {"model_type": "gpt2"}}, "model_type is 'gpt2'"),
        ({"backbone_config": {"model_type": "modernbert"}}, "invalid modernbert backbone"),
        ({"embedding_output_dim": 256}, "embedding_output_dim"),
        ({"dataset_backbone": "other/model"}, "dataset_backbone"),
    ],
)
def test_wrong_config_values(tmp_path: Path, changes: dict[str, Any], match: str) -> None:
    folder = _copy(V2_TINY, tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(CheckpointFormatError, match=match):
        CDEEncoder.from_pretrained(folder)


def test_invalid_rotary_mode() -> None:
    with pytest.raises(CheckpointFormatError, match="nomic_rotary_mode"):
        CDEEncoder.from_pretrained(V1_TINY, nomic_rotary_mode="sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_safetensors(tmp_path: Path, cut: float) -> None:
    folder = _copy(V2_TINY, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointFormatError, match="truncated or corrupted"):
        CDEEncoder.from_pretrained(folder)


def test_garbage_safetensors(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointFormatError, match="not a readable safetensors"):
        CDEEncoder.from_pretrained(folder)


def _rewrite_weights(folder: Path, edit: Any) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


def test_missing_key_is_named(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path)
    _rewrite_weights(folder, lambda s: s.pop("second_stage_model.output_projection.2.bias"))
    with pytest.raises(CheckpointFormatError, match=r"missing keys: second_stage_model\.output"):
        CDEEncoder.from_pretrained(folder)


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path)
    _rewrite_weights(folder, lambda s: s.__setitem__("second_stage_model.extra.w", torch.zeros(2)))
    with pytest.raises(CheckpointFormatError, match=r"unexpected keys: second_stage_model\.extra"):
        CDEEncoder.from_pretrained(folder)


def test_harmless_pooler_keys_are_ignored_with_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _copy(V1_TINY, tmp_path)

    def add_pooler(state: dict[str, torch.Tensor]) -> None:
        state["first_stage_model.embedder.pooler.dense.weight"] = torch.zeros(8, 8)
        state["first_stage_model.embedder.pooler.dense.bias"] = torch.zeros(8)

    _rewrite_weights(folder, add_pooler)
    with caplog.at_level(logging.INFO, logger="cde_rag"):
        encoder = CDEEncoder.from_pretrained(folder, device="cpu")
    assert encoder.dim == 8
    assert "ignoring 2 unused checkpoint keys" in caplog.text


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path)
    key = "second_stage_model.prompt_projection.2.weight"
    _rewrite_weights(folder, lambda s: s.__setitem__(key, torch.zeros(8, 64)))
    with pytest.raises(
        CheckpointFormatError, match=r"prompt_projection\.2\.weight: found \(8, 64\)"
    ):
        CDEEncoder.from_pretrained(folder)


def test_integer_weights_refused(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path)
    key = "first_stage_model.mlp.0.bias"
    _rewrite_weights(folder, lambda s: s.__setitem__(key, torch.zeros(64, dtype=torch.int32)))
    with pytest.raises(CheckpointFormatError, match="non-floating-point"):
        CDEEncoder.from_pretrained(folder)


def test_remote_code_is_never_executed(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path)
    marker = tmp_path / "executed"
    code = f"open({str(marker)!r}, 'w').write('x')\n"
    (folder / "model.py").write_text(code)
    (folder / "misc.py").write_text(code)
    encoder = CDEEncoder.from_pretrained(folder, device="cpu")
    assert encoder.dim == 64
    assert not marker.exists()


def test_hub_id_offline_says_how_to_use_a_local_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        ModelDownloadError, match=r"local-dir.*from_pretrained\('\./cde-small-v2'\)"
    ):
        CDEEncoder.from_pretrained("jxm/cde-small-v2", cache_dir=tmp_path)


def test_hub_download_is_pinned_and_never_fetches_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[dict[str, Any]] = []
    snapshot = tmp_path / "snapshots" / "0123abcd"
    shutil.copytree(V2_TINY, snapshot)
    for f in snapshot.iterdir():
        f.chmod(0o644)

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(cde_rag.hub, "snapshot_download", fake_snapshot_download)
    encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2", revision="0123abcd", device="cpu")
    assert calls[0]["repo_id"] == "jxm/cde-small-v2" and calls[0]["revision"] == "0123abcd"
    patterns = calls[0]["allow_patterns"]
    assert "model.safetensors" in patterns and "config.json" in patterns
    assert not any(p.endswith((".py", ".bin", "*")) for p in patterns)
    assert encoder.identity.model_id == "jxm/cde-small-v2"
    assert encoder.identity.revision == "0123abcd"


def test_network_failure_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(repo_id: str, **kwargs: Any) -> str:
        msg = "Connection refused"
        raise OSError(msg)

    monkeypatch.setattr(cde_rag.hub, "snapshot_download", broken)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelDownloadError, match=r"not reachable.*pass its path"):
        CDEEncoder.from_pretrained("jxm/cde-small-v2")


def test_missing_tokenizer_says_how_to_pass_one(tmp_path: Path) -> None:
    folder = _copy(V2_TINY, tmp_path, skip=("tokenizer.json", "tokenizer_config.json"))
    with pytest.raises(TokenizerNotFoundError, match=r"tokenizer='/path/to/tokenizer-folder'"):
        CDEEncoder.from_pretrained(folder)


@pytest.mark.parametrize("form", ["folder", "file", "object"])
def test_explicit_tokenizer_argument(tmp_path: Path, form: str) -> None:
    folder = _copy(V2_TINY, tmp_path, skip=("tokenizer.json", "tokenizer_config.json"))
    source: Any = {
        "folder": V2_TINY,
        "file": V2_TINY / "tokenizer.json",
        "object": Tokenizer.from_file(str(V2_TINY / "tokenizer.json")),
    }[form]
    encoder = CDEEncoder.from_pretrained(folder, tokenizer=source, device="cpu")
    reference = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    texts = ["search_document: hello there: world"]
    assert encoder.tokenizer.encode(texts, 40) == reference.tokenizer.encode(texts, 40)
    assert encoder.tokenizer.instruction_end_id == 25


def test_tokenizer_argument_that_is_not_a_tokenizer(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerNotFoundError, match=r"holds no tokenizer\.json or vocab\.txt"):
        CDEEncoder.from_pretrained(V2_TINY, tokenizer=empty)

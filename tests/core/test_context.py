"""CorpusContext: sampling through build_context, provenance, fingerprint, persistence."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file

import cde_rag
from cde_rag import CDEEncoder, ContextError, ContextMismatchError, CorpusContext
from cde_rag.context import ModelIdentity, compute_fingerprint, new_provenance
from cde_rag.errors import ContextCorruptError
from tests.conftest import V2_TINY, corpus_texts

N_RANDOM_STRINGS = 40


def _provenance(identity: ModelIdentity, rows: int) -> cde_rag.context.ContextProvenance:
    return new_provenance(identity, size=rows, seed=None, strategy="given", n_source_documents=rows)


def _tensor_offset(data: bytes) -> int:
    """Start of the tensor bytes in a safetensors payload."""
    (header_len,) = struct.unpack("<Q", data[:8])
    return 8 + int(header_len)


def _metadata(context: CorpusContext) -> dict[str, str]:
    """The safetensors metadata a saved ``context`` carries."""
    data = context.to_bytes()
    header = json.loads(data[8 : _tensor_offset(data)])
    return dict(header["__metadata__"])


@pytest.fixture(scope="module")
def copied_encoder(tmp_path_factory: pytest.TempPathFactory) -> CDEEncoder:
    """The v2-tiny weights in another folder, with a random_strings.txt of 40 lines."""
    folder = tmp_path_factory.mktemp("copy") / "v2-copy"
    shutil.copytree(V2_TINY, folder)
    lines = [f"generic text number {i} about topic {i % 7}" for i in range(N_RANDOM_STRINGS)]
    (folder / "random_strings.txt").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return CDEEncoder.from_pretrained(folder, device="cpu")


# -- sampling through build_context ----------------------------------------------------------


def test_same_seed_gives_the_same_context(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    again = v2_encoder_session.build_context(corpus_texts(), seed=0, show_progress_bar=False)
    assert again.fingerprint == v2_context.fingerprint
    assert torch.equal(again.embeddings, v2_context.embeddings)
    assert again.provenance.seed == 0
    assert again.provenance.strategy == "uniform"


def test_different_seed_gives_another_context(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    corpus = corpus_texts()
    assert len(corpus) > v2_encoder_session.context_size
    other = v2_encoder_session.build_context(corpus, seed=1, show_progress_bar=False)
    assert other.fingerprint != v2_context.fingerprint
    assert other.shape == v2_context.shape == (16, 64)
    assert other.provenance.seed == 1
    assert other.provenance.n_source_documents == len(corpus)


def test_build_context_reads_any_iterable_once(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    context = v2_encoder_session.build_context(iter(corpus_texts()), show_progress_bar=False)
    assert context == v2_context


def test_small_corpus_is_oversampled(v2_encoder_session: CDEEncoder) -> None:
    corpus = corpus_texts()[:5]
    context = v2_encoder_session.build_context(corpus, seed=0, show_progress_bar=False)
    assert context.shape == (16, 64)
    p = context.provenance
    assert (p.size, p.n_source_documents, p.strategy, p.seed) == (16, 5, "uniform", 0)
    # every row is the stage-1 embedding of one of the 5 documents, each used 3 or 4 times
    sources = torch.from_numpy(
        v2_encoder_session.first_stage_embeddings(corpus, show_progress_bar=False)
    )
    distances = torch.cdist(context.embeddings, sources)
    assert float(distances.min(dim=1).values.max()) < 1e-5
    counts = torch.bincount(distances.argmin(dim=1), minlength=5)
    assert sorted(counts.tolist()) == [3, 3, 3, 3, 4]


def test_size_is_honoured(v2_encoder_session: CDEEncoder) -> None:
    corpus = corpus_texts()
    context = v2_encoder_session.build_context(corpus, size=8, seed=2, show_progress_bar=False)
    assert context.shape == (8, 64)
    assert (context.provenance.size, context.provenance.seed) == (8, 2)
    assert context.provenance.n_source_documents == len(corpus)


def test_corpus_of_exactly_size_is_used_as_given(v2_encoder_session: CDEEncoder) -> None:
    corpus = corpus_texts()[: v2_encoder_session.context_size]  # more rows are refused
    context = v2_encoder_session.build_context(
        corpus, size=len(corpus), seed=5, strategy="diverse", show_progress_bar=False
    )
    p = context.provenance
    assert (p.strategy, p.seed, p.size, p.n_source_documents) == ("given", None, 16, 16)
    # in the caller's order
    rows = v2_encoder_session.first_stage_embeddings(corpus, show_progress_bar=False)
    torch.testing.assert_close(context.embeddings, torch.from_numpy(rows), rtol=0, atol=1e-6)


@pytest.mark.parametrize("strategy", ["uniform", "diverse"])
def test_strategy_is_recorded(
    v2_encoder_session: CDEEncoder, strategy: Literal["uniform", "diverse"]
) -> None:
    context = v2_encoder_session.build_context(
        corpus_texts(), size=4, seed=3, strategy=strategy, show_progress_bar=False
    )
    assert context.provenance.strategy == strategy
    assert context.provenance.seed == 3
    assert context.shape == (4, 64)


# -- provenance ------------------------------------------------------------------------------


def test_provenance_fields(v2_encoder_session: CDEEncoder, v2_context: CorpusContext) -> None:
    p = v2_context.provenance
    identity = v2_encoder_session.identity
    assert p.model_id == identity.model_id == str(V2_TINY.resolve())
    assert p.weights_hash == identity.weights_hash
    assert len(p.weights_hash) == 64
    int(p.weights_hash, 16)
    assert p.revision is None
    assert p.library_version == cde_rag.__version__
    assert p.size == 16
    created = datetime.fromisoformat(p.created_at)
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - created) < timedelta(hours=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 9  # type: ignore[misc]


# -- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_is_recomputable(v2_context: CorpusContext) -> None:
    fingerprint = v2_context.fingerprint
    assert len(fingerprint) == 64
    int(fingerprint, 16)
    weights_hash = v2_context.provenance.weights_hash
    assert compute_fingerprint(v2_context.embeddings, weights_hash) == fingerprint


def test_same_tensor_and_model_give_the_same_fingerprint(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    identity = v2_encoder_session.identity
    first = CorpusContext(v2_context.embeddings.clone(), _provenance(identity, 16))
    other_provenance = dataclasses.replace(
        _provenance(identity, 16), created_at="2000-01-01T00:00:00+00:00", seed=7
    )
    second = CorpusContext(v2_context.embeddings.clone(), other_provenance)
    assert first.fingerprint == second.fingerprint == v2_context.fingerprint
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second, v2_context}) == 1


def test_fingerprint_changes_with_one_ulp(v2_context: CorpusContext) -> None:
    rows = v2_context.embeddings.clone()
    rows[3, 5] = torch.nextafter(rows[3, 5], torch.tensor(float("inf")))
    assert not torch.equal(rows, v2_context.embeddings)
    changed = CorpusContext(rows, v2_context.provenance)
    assert changed.fingerprint != v2_context.fingerprint
    assert changed != v2_context


def test_fingerprint_changes_with_the_weights_hash(v2_context: CorpusContext) -> None:
    other = dataclasses.replace(v2_context.provenance, weights_hash="0" * 64)
    changed = CorpusContext(v2_context.embeddings, other)
    assert changed.fingerprint != v2_context.fingerprint
    assert changed != v2_context


def test_fingerprint_changes_with_the_shape(v2_context: CorpusContext) -> None:
    weights_hash = v2_context.provenance.weights_hash
    flat = v2_context.embeddings.reshape(32, 32)
    assert compute_fingerprint(flat, weights_hash) != v2_context.fingerprint


def test_context_owns_a_copy_of_its_tensor(v2_context: CorpusContext) -> None:
    rows = v2_context.embeddings.clone()
    context = CorpusContext(rows, v2_context.provenance)
    rows += 1.0
    assert context == v2_context
    assert torch.equal(context.embeddings, v2_context.embeddings)


def test_equality_needs_a_context(v2_context: CorpusContext) -> None:
    assert v2_context != v2_context.fingerprint
    assert v2_context != v2_context.embeddings.sum()


def test_repr_shows_the_short_fingerprint(v2_context: CorpusContext) -> None:
    text = repr(v2_context)
    assert v2_context.fingerprint[:12] in text
    assert "shape=(16, 64)" in text
    assert "strategy='uniform'" in text


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        pytest.param(torch.ones(4, 3, dtype=torch.float64), "must be float32", id="float64"),
        pytest.param(torch.ones(4, 3, dtype=torch.float16), "must be float32", id="float16"),
        pytest.param(torch.ones(12), r"2-D \(N, d\) tensor; got shape", id="rank-1"),
        pytest.param(torch.ones(1, 4, 3), r"2-D \(N, d\) tensor; got shape", id="rank-3"),
        pytest.param(np.ones((4, 3), dtype=np.float32), r"2-D \(N, d\) tensor", id="numpy"),
        pytest.param(torch.ones(0, 3), r"empty \(shape \(0, 3\)\)", id="no-rows"),
        pytest.param(torch.ones(4, 0), r"empty \(shape \(4, 0\)\)", id="no-width"),
    ],
)
def test_malformed_tensors_are_refused(v2_context: CorpusContext, rows: object, match: str) -> None:
    with pytest.raises(ContextCorruptError, match=match):
        CorpusContext(rows, v2_context.provenance)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused(v2_context: CorpusContext, bad: float) -> None:
    rows = v2_context.embeddings.clone()
    rows[2, 7] = bad
    with pytest.raises(ContextCorruptError, match="hold 1 NaN/inf values"):
        CorpusContext(rows, v2_context.provenance)


def test_expected_fingerprint_must_match(v2_context: CorpusContext) -> None:
    same = CorpusContext(
        v2_context.embeddings, v2_context.provenance, expected_fingerprint=v2_context.fingerprint
    )
    assert same == v2_context
    with pytest.raises(ContextCorruptError, match="does not match its bytes"):
        CorpusContext(v2_context.embeddings, v2_context.provenance, expected_fingerprint="0" * 64)


# -- persistence -----------------------------------------------------------------------------


def test_save_and_load_round_trip(v2_context: CorpusContext, tmp_path: Path) -> None:
    path = v2_context.save(tmp_path / "notes.context.safetensors")
    assert path == tmp_path / "notes.context.safetensors"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    loaded = CorpusContext.load(path)
    assert torch.equal(loaded.embeddings, v2_context.embeddings)
    assert loaded.embeddings.dtype == torch.float32
    assert loaded.fingerprint == v2_context.fingerprint
    assert loaded.provenance == v2_context.provenance
    assert CorpusContext.load(str(path)) == v2_context


def test_save_overwrites(v2_context: CorpusContext, tmp_path: Path) -> None:
    path = tmp_path / "ctx.safetensors"
    path.write_bytes(b"old")
    v2_context.save(path)
    assert CorpusContext.load(path) == v2_context


def test_bytes_round_trip(v2_context: CorpusContext) -> None:
    data = v2_context.to_bytes()
    assert isinstance(data, bytes)
    for payload in (data, bytearray(data), memoryview(data)):
        loaded = CorpusContext.from_bytes(payload)  # type: ignore[arg-type]
        assert torch.equal(loaded.embeddings, v2_context.embeddings)
        assert loaded.fingerprint == v2_context.fingerprint
        assert loaded.provenance == v2_context.provenance
    assert b"pickle" not in data
    assert data[:8] != b"PK\x03\x04"


def test_flipped_tensor_byte_is_detected(v2_context: CorpusContext) -> None:
    data = bytearray(v2_context.to_bytes())
    data[_tensor_offset(bytes(data)) + 100] ^= 0x01
    with pytest.raises(ContextCorruptError, match="does not match its bytes"):
        CorpusContext.from_bytes(bytes(data))


def test_tampered_file_is_detected_on_load(v2_context: CorpusContext, tmp_path: Path) -> None:
    path = v2_context.save(tmp_path / "ctx.safetensors")
    data = bytearray(path.read_bytes())
    data[-4] ^= 0x01  # lowest mantissa bit of the last value
    path.write_bytes(bytes(data))
    with pytest.raises(ContextCorruptError, match=r"ctx\.safetensors: .*does not match its bytes"):
        CorpusContext.load(path)


@pytest.mark.parametrize("keep", [0, 4, 8, 20, -1, -4])
def test_truncated_bytes_are_refused(v2_context: CorpusContext, keep: int) -> None:
    data = v2_context.to_bytes()[:keep]
    with pytest.raises(ContextCorruptError, match="not a valid safetensors payload"):
        CorpusContext.from_bytes(data)


def test_truncated_file_is_refused(v2_context: CorpusContext, tmp_path: Path) -> None:
    path = tmp_path / "ctx.safetensors"
    path.write_bytes(v2_context.to_bytes()[:-64])
    with pytest.raises(ContextCorruptError, match=r"ctx\.safetensors: .*not a valid safetensors"):
        CorpusContext.load(path)


def test_edited_fingerprint_is_detected(v2_context: CorpusContext) -> None:
    data = v2_context.to_bytes()
    old = v2_context.fingerprint.encode()
    edited = data.replace(old, b"0" * len(old))
    assert edited != data
    with pytest.raises(ContextCorruptError, match="does not match its bytes"):
        CorpusContext.from_bytes(edited)


def test_edited_provenance_weights_hash_is_detected(v2_context: CorpusContext) -> None:
    data = v2_context.to_bytes()
    old = v2_context.provenance.weights_hash.encode()
    with pytest.raises(ContextCorruptError, match="does not match its bytes"):
        CorpusContext.from_bytes(data.replace(old, b"0" * len(old)))


def test_non_finite_stored_tensor_is_refused(v2_context: CorpusContext) -> None:
    rows = v2_context.embeddings.clone()
    rows[0, 0] = float("nan")
    data = st_save({"dataset_embeddings": rows}, metadata=_metadata(v2_context))
    with pytest.raises(ContextCorruptError, match="NaN/inf"):
        CorpusContext.from_bytes(data)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        pytest.param(torch.ones(16, 64, dtype=torch.float64), "must be float32", id="float64"),
        pytest.param(torch.ones(1, 16, 64), r"2-D \(N, d\)", id="rank-3"),
    ],
)
def test_stored_tensor_of_wrong_type_is_refused(
    v2_context: CorpusContext, rows: torch.Tensor, match: str
) -> None:
    data = st_save({"dataset_embeddings": rows}, metadata=_metadata(v2_context))
    with pytest.raises(ContextCorruptError, match=match):
        CorpusContext.from_bytes(data)


def test_other_format_version_is_refused(v2_context: CorpusContext) -> None:
    meta = {**_metadata(v2_context), "format_version": "99"}
    data = st_save({"dataset_embeddings": v2_context.embeddings}, metadata=meta)
    with pytest.raises(ContextCorruptError, match=r"has context format '99'.*Upgrade cde-rag"):
        CorpusContext.from_bytes(data)


def test_invalid_provenance_metadata_is_refused(v2_context: CorpusContext) -> None:
    meta = {**_metadata(v2_context), "provenance": '{"model_id": "x"}'}
    data = st_save({"dataset_embeddings": v2_context.embeddings}, metadata=meta)
    with pytest.raises(ContextCorruptError, match="invalid provenance metadata"):
        CorpusContext.from_bytes(data)


def test_loading_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no context file at"):
        CorpusContext.load(tmp_path / "missing.safetensors")


def test_a_safetensors_file_that_is_not_a_context_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.ones(2, 2)}, path)
    with pytest.raises(ContextCorruptError, match="is not a cde-rag context"):
        CorpusContext.load(path)


@pytest.mark.parametrize("payload", [b"", b"not safetensors at all", "a string"])
def test_garbage_bytes_are_refused(payload: object) -> None:
    with pytest.raises(ContextCorruptError, match="context bytes"):
        CorpusContext.from_bytes(payload)  # type: ignore[arg-type]


# -- compatibility ---------------------------------------------------------------------------


def test_check_compatible_accepts_its_own_model(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    v2_context.check_compatible(v2_encoder_session)
    v2_context.check_compatible(v2_encoder_session.identity)


def test_check_compatible_refuses_another_model(
    v1_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    pattern = r"built by model '.*v2-tiny'.*but the encoder is '.*v1-tiny'"
    with pytest.raises(ContextMismatchError, match=pattern):
        v2_context.check_compatible(v1_encoder_session)
    with pytest.raises(ContextMismatchError, match=pattern):
        v2_context.check_compatible(v1_encoder_session.identity)


def test_mismatch_message_names_the_revision(v2_context: CorpusContext) -> None:
    pinned = dataclasses.replace(v2_context.provenance, model_id="jxm/cde-small-v2", revision="abc")
    context = CorpusContext(v2_context.embeddings, pinned)
    other = ModelIdentity("other/model", "1" * 64, None, "v2", 64)
    with pytest.raises(ContextMismatchError, match="load 'jxm/cde-small-v2' at revision 'abc'"):
        context.check_compatible(other)


def test_check_compatible_refuses_another_width(v2_context: CorpusContext) -> None:
    identity = ModelIdentity("same/weights", v2_context.provenance.weights_hash, None, "v2", 32)
    with pytest.raises(ContextMismatchError, match="context width 64 != model width 32"):
        v2_context.check_compatible(identity)


def test_compatibility_is_by_weights_hash(
    copied_encoder: CDEEncoder, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    assert copied_encoder.identity.model_id != v2_encoder_session.identity.model_id
    assert copied_encoder.identity.weights_hash == v2_encoder_session.identity.weights_hash
    v2_context.check_compatible(copied_encoder)
    texts = corpus_texts()[:3]
    vectors = copied_encoder.embed_documents(texts, v2_context)
    expected = v2_encoder_session.embed_documents(texts, v2_context)
    np.testing.assert_allclose(vectors, expected, rtol=0, atol=1e-6)
    # a context built by the copy is the same context
    rebuilt = copied_encoder.build_context(corpus_texts(), show_progress_bar=False)
    assert rebuilt == v2_context
    assert rebuilt.provenance.model_id == copied_encoder.identity.model_id


# -- fallback context ------------------------------------------------------------------------


def test_fallback_context_without_random_strings(v2_encoder_session: CDEEncoder) -> None:
    assert not (V2_TINY / "random_strings.txt").exists()
    with pytest.raises(ContextError, match=r"no random_strings\.txt in the checkpoint folder"):
        v2_encoder_session.fallback_context()
    with pytest.raises(ContextError, match=r"encoder\.build_context\(texts\)"):
        v2_encoder_session.fallback_context(show_progress_bar=False)


def test_fallback_context_from_random_strings(copied_encoder: CDEEncoder) -> None:
    context = copied_encoder.fallback_context(show_progress_bar=False)
    p = context.provenance
    assert context.shape == (copied_encoder.context_size, copied_encoder.dim)
    assert (p.strategy, p.size, p.seed) == ("random_strings", copied_encoder.context_size, 0)
    assert p.n_source_documents == N_RANDOM_STRINGS  # blank lines are skipped
    assert p.weights_hash == copied_encoder.identity.weights_hash
    assert copied_encoder.folder is not None
    lines = (copied_encoder.folder / "random_strings.txt").read_text().split("\n")
    lines = [line for line in lines if line.strip()]
    assert context == copied_encoder.build_context(lines, seed=0, show_progress_bar=False)
    other = copied_encoder.fallback_context(seed=1, size=8, show_progress_bar=False)
    assert other.shape == (8, copied_encoder.dim)
    assert (other.provenance.seed, other.provenance.size) == (1, 8)


def test_embeddings_cannot_be_changed_through_the_attribute(v2_context: CorpusContext) -> None:
    before, original = v2_context.fingerprint, v2_context.embeddings
    view = v2_context.embeddings
    view += 1.0  # mutating the returned tensor must not change the context
    assert torch.equal(v2_context.embeddings, original)
    assert v2_context.fingerprint == before
    assert CorpusContext.from_bytes(v2_context.to_bytes()).fingerprint == before


def test_equality_with_other_types_is_not_implemented(v2_context: CorpusContext) -> None:
    assert v2_context.__eq__("not a context") is NotImplemented
    assert v2_context != "not a context"

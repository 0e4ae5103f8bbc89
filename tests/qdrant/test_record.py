"""The context record: bit-exact round trips, and every kind of tampering refused."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import torch
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.context import new_provenance
from cde_rag.errors import ContextCorruptError, ContextMismatchError
from cde_rag_qdrant import (
    METADATA_KEY,
    ContextMissingError,
    ContextRecord,
    ContextualCollection,
    read_context,
)
from cde_rag_qdrant._store import alias_target


def _record(encoder: CDEEncoder, context: CorpusContext) -> dict[str, Any]:
    return ContextRecord.from_context(context, encoder).model_dump(mode="json")


def test_round_trip_is_bit_exact(v2_encoder_session: CDEEncoder, v2_context: CorpusContext) -> None:
    raw = ContextRecord.from_context(v2_context, v2_encoder_session).to_metadata()
    record = ContextRecord.from_metadata(raw, "c")
    back = record.to_context("c")
    assert torch.equal(back.embeddings, v2_context.embeddings)
    assert back.fingerprint == v2_context.fingerprint
    assert back.provenance == v2_context.provenance
    assert record.query_prefix == v2_encoder_session.query_prefix
    assert record.model_version == "v2"
    assert record.record_version == 1


def test_full_size_context_round_trips_through_local_mode(
    tmp_path: Path, v2_encoder_session: CDEEncoder
) -> None:
    """A 512x768 float32 context (~2 MiB of base64) survives the embedded store, reopened."""
    ident = dataclasses.replace(v2_encoder_session.identity, dim=768)
    stand_in = cast(
        CDEEncoder,
        SimpleNamespace(identity=ident, query_prefix="search_query: ", document_prefix="d: "),
    )
    big = torch.randn(512, 768, generator=torch.Generator().manual_seed(0))
    big[0, 0] = 1e-38  # tiny values and a signed zero must survive too
    big[0, 1] = -0.0
    provenance = new_provenance(ident, size=512, seed=0, strategy="uniform", n_source_documents=9)
    context = CorpusContext(big, provenance)
    record = ContextRecord.from_context(context, stand_in)
    assert len(record.tensor_b64) > 2_000_000
    store = str(tmp_path / "store")
    client = QdrantClient(path=store)
    client.create_collection(
        "big",
        vectors_config=models.VectorParams(size=768, distance=models.Distance.COSINE),
        metadata=record.to_metadata(),
    )
    client.close()
    reopened = QdrantClient(path=store)
    try:
        back = read_context(reopened, "big")
    finally:
        reopened.close()
    assert torch.equal(back.embeddings, big)
    assert back.fingerprint == context.fingerprint
    assert str(back.embeddings[0, 1].item()) == "-0.0"


def _flip_one_byte(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[5] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("kind", "error", "match"),
    [
        ("bytes", ContextCorruptError, "does not match its bytes"),
        ("truncated", ContextCorruptError, "not valid base64|bytes, expected"),
        ("truncated4", ContextCorruptError, "bytes, expected"),
        ("weights", ContextCorruptError, "does not match its bytes"),
        ("shape", ContextCorruptError, "bytes, expected"),
        ("version", ContextCorruptError, "version 2"),
        ("field", ContextCorruptError, "invalid context record"),
        ("not_hex", ContextCorruptError, "invalid context record"),
    ],
)
def test_tampered_record_is_refused_and_nothing_written(
    kind: str, error: type[Exception], match: str, v2_encoder_session: CDEEncoder
) -> None:
    client = QdrantClient(":memory:")
    name = "tamper"
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=["a b", "c d"])
    col.add(["one document", "another document"])
    metadata = client.get_collection(name).config.metadata
    assert metadata is not None
    record = dict(metadata[METADATA_KEY])
    b64 = record["tensor_b64"]
    edit: dict[str, Any] = {
        "bytes": {"tensor_b64": _flip_one_byte(b64)},
        "truncated": {"tensor_b64": b64[: len(b64) // 2 + 1]},
        "truncated4": {"tensor_b64": b64[:-8]},
        "weights": {"weights_hash": "0" * 64},
        "shape": {"shape": [8, 64]},
        "version": {"record_version": 2},
        "field": {"dtype": "float16"},
        "not_hex": {"fingerprint": "xyz"},
    }[kind]
    physical = alias_target(client, name)
    assert physical is not None
    client.update_collection(physical, metadata={METADATA_KEY: {**record, **edit}})
    before = client.get_collection(name).config.metadata
    with pytest.raises(error, match=match):
        ContextualCollection.open(client, name, v2_encoder_session)
    with pytest.raises(error, match=match):
        read_context(client, name)
    assert client.get_collection(name).config.metadata == before
    assert client.count(name).count == 2


def test_record_from_another_model_is_refused(
    v2_encoder_session: CDEEncoder, other_v2_encoder: CDEEncoder
) -> None:
    client = QdrantClient(":memory:")
    ContextualCollection.create(client, "m", other_v2_encoder, corpus=["a b", "c d"]).add(["x y"])
    with pytest.raises(ContextMismatchError, match="built by model"):
        ContextualCollection.open(client, "m", v2_encoder_session)
    assert client.count("m").count == 1


def test_record_that_is_not_an_object(v2_encoder_session: CDEEncoder) -> None:
    client = QdrantClient(":memory:")
    client.create_collection(
        "s",
        vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE),
        metadata={METADATA_KEY: "garbage"},
    )
    with pytest.raises(ContextCorruptError, match="overwritten by another tool"):
        ContextualCollection.open(client, "s", v2_encoder_session)


def test_missing_record_says_how_to_attach(v2_encoder_session: CDEEncoder) -> None:
    with pytest.raises(ContextMissingError, match="attach_context"):
        ContextRecord.from_metadata({"other": 1}, "c")
    with pytest.raises(ContextMissingError, match="cde-rag recontextualize"):
        ContextRecord.from_metadata(None, "c")


def test_record_checks_the_encoder(
    v2_encoder_session: CDEEncoder, other_v2_encoder: CDEEncoder, v2_context: CorpusContext
) -> None:
    with pytest.raises(ContextMismatchError):
        ContextRecord.from_context(v2_context, other_v2_encoder)
    assert _record(v2_encoder_session, v2_context)["fingerprint"] == v2_context.fingerprint

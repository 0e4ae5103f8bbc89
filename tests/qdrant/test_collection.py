"""ContextualCollection on every location: :memory:, embedded path, and a server (QDRANT_URL)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag_qdrant import (
    FINGERPRINT_PAYLOAD_KEY,
    METADATA_KEY,
    CollectionConfigError,
    CollectionExistsError,
    CollectionNotFoundError,
    ContextMissingError,
    ContextualCollection,
    SearchHit,
    build_payload,
    point_id,
    read_context,
)
from cde_rag_qdrant._store import alias_target
from tests.conftest import corpus_texts
from tests.qdrant.conftest import make_client

TEXTS = corpus_texts()


@pytest.fixture
def col(client: QdrantClient, name: str, v2_encoder_session: CDEEncoder) -> ContextualCollection:
    """A collection with the 20 corpus texts, ids d0..d19 and metadata."""
    c = ContextualCollection.create(client, name, v2_encoder_session, corpus=TEXTS)
    c.add(
        TEXTS,
        ids=[f"d{i}" for i in range(len(TEXTS))],
        metadatas=[{"i": i, "parity": "even" if i % 2 == 0 else "odd"} for i in range(len(TEXTS))],
        batch_size=6,
    )
    return c


def test_create_stores_the_decoded_context(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, context=v2_context)
    assert col.fingerprint == v2_context.fingerprint
    assert torch.equal(col.context.embeddings, v2_context.embeddings)
    assert col.context is not v2_context  # decoded from the store, not the caller's object
    info = client.get_collection(name)
    params = info.config.params.vectors
    assert isinstance(params, models.VectorParams)
    assert (params.size, params.distance) == (64, models.Distance.COSINE)
    assert info.config.metadata is not None
    assert info.config.metadata[METADATA_KEY]["fingerprint"] == v2_context.fingerprint
    assert alias_target(client, name) == f"{name}__cde_g1"
    assert read_context(client, name) == v2_context


def test_add_search_count_and_payload_layout(col: ContextualCollection) -> None:
    assert col.count() == len(TEXTS)
    hits = col.search(TEXTS[3], limit=3)
    assert all(isinstance(h, SearchHit) for h in hits)
    assert hits[0].text == TEXTS[3]
    assert hits[0].metadata == {"i": 3, "parity": "odd"}
    assert hits[0].id == point_id("d3")
    assert hits[0].score >= hits[1].score >= hits[2].score
    (point,) = col.client.retrieve(col.name, [point_id("d3")], with_payload=True)
    assert point.payload == build_payload(TEXTS[3], {"i": 3, "parity": "odd"}, col.fingerprint)
    assert set(point.payload or {}) == {"page_content", "metadata", FINGERPRINT_PAYLOAD_KEY}


def test_vectors_equal_the_encoder_with_the_stored_context(
    col: ContextualCollection, v2_encoder_session: CDEEncoder
) -> None:
    ids = [point_id(f"d{i}") for i in range(len(TEXTS))]
    points = col.client.retrieve(col.name, ids, with_vectors=True)
    stored = np.array([p.vector for p in sorted(points, key=lambda p: ids.index(str(p.id)))])
    expected = v2_encoder_session.embed_documents(TEXTS, read_context(col.client, col.name))
    np.testing.assert_allclose(stored, expected, rtol=0, atol=1e-6)


def test_readd_is_idempotent(col: ContextualCollection) -> None:
    ids = col.add(TEXTS[:5], ids=[f"d{i}" for i in range(5)])
    assert ids == [point_id(f"d{i}") for i in range(5)]
    assert col.count() == len(TEXTS)
    no_ids = col.add(TEXTS[:3])
    assert col.add(TEXTS[:3]) == no_ids  # text-derived ids are stable too
    assert col.count() == len(TEXTS) + 3
    assert point_id(no_ids[0]) == no_ids[0]  # point ids map to themselves


def test_search_options(col: ContextualCollection) -> None:
    odd = col.search("anything", limit=20, query_filter={"parity": "odd"})
    assert len(odd) == 10 and all(h.metadata["parity"] == "odd" for h in odd)
    some = col.search("anything", limit=20, query_filter={"i": [1, 2, 3]})
    assert sorted(h.metadata["i"] for h in some) == [1, 2, 3]
    qdrant_filter = models.Filter(
        must=[models.FieldCondition(key="metadata.i", match=models.MatchValue(value=7))]
    )
    assert [h.metadata["i"] for h in col.search("x", query_filter=qdrant_filter)] == [7]
    best = col.search(TEXTS[0], limit=20)
    threshold = (best[0].score + best[1].score) / 2
    assert len(col.search(TEXTS[0], limit=20, score_threshold=threshold)) == 1
    with pytest.raises(InvalidInputError, match="empty or whitespace-only"):
        col.search("   ")
    with pytest.raises(InvalidInputError, match="limit"):
        col.search("x", limit=0)


def test_points_from_another_context_are_not_returned(col: ContextualCollection) -> None:
    vector = col.client.retrieve(col.name, [point_id("d0")], with_vectors=True)[0].vector
    assert isinstance(vector, list)
    foreign = point_id("foreign")
    col.client.upsert(
        col.name,
        [models.PointStruct(id=foreign, vector=vector, payload=build_payload("x", {}, "f" * 64))],
    )
    assert foreign not in {h.id for h in col.search(TEXTS[0], limit=50)}
    assert col.count() == len(TEXTS)
    assert col.info().points_total == len(TEXTS) + 1


def test_delete_by_ids_and_filter(col: ContextualCollection) -> None:
    col.delete(["d0", point_id("d1")])
    assert col.count() == len(TEXTS) - 2
    col.delete(query_filter={"parity": "odd"})
    assert col.count() == 9
    with pytest.raises(InvalidInputError, match="exactly one"):
        col.delete()
    with pytest.raises(InvalidInputError, match="single str"):
        col.delete("d2")
    assert col.count() == 9


def test_info_reports_provenance(col: ContextualCollection, v2_encoder_session: CDEEncoder) -> None:
    info = col.info()
    assert info.points == info.points_total == len(TEXTS)
    assert info.fingerprint == col.fingerprint
    assert info.weights_hash == v2_encoder_session.identity.weights_hash
    assert info.context_shape == (16, 64)
    assert info.provenance.n_source_documents == len(TEXTS)
    assert info.physical_name == f"{col.name}__cde_g1"
    assert info.as_dict()["context_shape"] == [16, 64]


def test_add_validates_before_writing(col: ContextualCollection) -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[1\]"):
        col.add(["fine", "  "])
    with pytest.raises(InvalidInputError, match="ids"):
        col.add(["a", "b"], ids=["x"])
    with pytest.raises(InvalidInputError, match="JSON"):
        col.add(["a"], metadatas=[{"bad": object()}])
    with pytest.raises(InvalidInputError, match="single str"):
        col.add("just one")
    with pytest.raises(InvalidInputError, match=r"texts\[0\] holds a lone surrogate '\\udcff'"):
        col.add(["bytes \udcff read with surrogateescape"])
    with pytest.raises(InvalidInputError, match=r"query holds a lone surrogate"):
        col.search("\ud800")
    assert col.count() == len(TEXTS)
    assert col.add([]) == []


def test_empty_collection_search_returns_nothing(
    client: QdrantClient,
    name: str,
    v2_encoder_session: CDEEncoder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=TEXTS)
    with caplog.at_level(logging.WARNING):
        assert col.search("anything") == []
    assert "is empty" in caplog.text


def test_create_never_overwrites(col: ContextualCollection, v2_encoder_session: CDEEncoder) -> None:
    with pytest.raises(CollectionExistsError, match="never overwrites"):
        ContextualCollection.create(col.client, col.name, v2_encoder_session, corpus=TEXTS)
    with pytest.raises(InvalidInputError, match="exactly one"):
        ContextualCollection.create(col.client, "x", v2_encoder_session)
    assert col.count() == len(TEXTS)


def test_open_errors(client: QdrantClient, name: str, v2_encoder_session: CDEEncoder) -> None:
    with pytest.raises(CollectionNotFoundError, match="cde-rag ingest"):
        ContextualCollection.open(client, name, v2_encoder_session)
    cosine64 = models.VectorParams(size=64, distance=models.Distance.COSINE)
    client.create_collection(name, vectors_config=cosine64)  # another tool, no record
    with pytest.raises(ContextMissingError, match="attach_context"):
        ContextualCollection.open(client, name, v2_encoder_session)
    wrong = f"{name}_dim"
    client.create_collection(
        wrong, vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE)
    )
    with pytest.raises(CollectionConfigError, match=r"32-dimensional.*64-dimensional"):
        ContextualCollection.open(client, wrong, v2_encoder_session)
    named = f"{name}_named"
    client.create_collection(named, vectors_config={"dense": cosine64})
    with pytest.raises(CollectionConfigError, match="named vectors"):
        ContextualCollection.open(client, named, v2_encoder_session)
    dot = f"{name}_dot"
    client.create_collection(
        dot, vectors_config=models.VectorParams(size=64, distance=models.Distance.DOT)
    )
    with pytest.raises(CollectionConfigError, match="cosine"):
        ContextualCollection.open(client, dot, v2_encoder_session)
    with pytest.raises(CollectionNotFoundError):
        read_context(client, f"{name}_nothing")


def test_open_with_another_model_is_refused(
    col: ContextualCollection, other_v2_encoder: CDEEncoder
) -> None:
    with pytest.raises(ContextMismatchError, match="not comparable"):
        ContextualCollection.open(col.client, col.name, other_v2_encoder)


def test_attach_context_then_recontextualize_a_foreign_collection(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client.create_collection(
        name, vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    client.upsert(
        name,
        [
            models.PointStruct(
                id=point_id(f"x{i}"),
                vector=[1.0] * 64,
                payload={"page_content": t, "metadata": {"i": i}},
            )
            for i, t in enumerate(TEXTS[:6])
        ],
    )
    col = ContextualCollection.attach_context(client, name, v2_encoder_session, v2_context)
    assert col.count() == 0  # old vectors were not made with this context
    with pytest.raises(CollectionExistsError, match="never overwrites"):
        ContextualCollection.attach_context(client, name, v2_encoder_session, v2_context)
    col.recontextualize()
    assert col.count() == 6
    assert alias_target(client, name) == f"{name}__cde_g2"
    assert col.search(TEXTS[2], limit=1)[0].metadata == {"i": 2}


def test_recontextualize_switches_the_alias(
    col: ContextualCollection, v2_encoder_session: CDEEncoder
) -> None:
    stale = ContextualCollection.open(col.client, col.name, v2_encoder_session)
    old_fp, old_physical = col.fingerprint, alias_target(col.client, col.name)
    report = col.drift()
    assert not report.recommended
    col.recontextualize(seed=7, strategy="diverse")
    assert col.fingerprint != old_fp
    assert alias_target(col.client, col.name) == f"{col.name}__cde_g2"
    names = {c.name for c in col.client.get_collections().collections}
    assert old_physical not in names
    assert col.count() == len(TEXTS)
    hit = col.search(TEXTS[5], limit=1)[0]
    assert (hit.id, hit.metadata) == (point_id("d5"), {"i": 5, "parity": "odd"})
    assert col.info().generation == 2
    assert col.context.provenance.strategy == "diverse"
    with pytest.raises(ContextMismatchError, match="Reopen"):
        stale.search(TEXTS[5])


def test_recontextualize_keep_old_and_textless_points(col: ContextualCollection) -> None:
    col.client.upsert(col.name, [models.PointStruct(id=point_id("t"), vector=[0.5] * 64)])
    with pytest.raises(CollectionConfigError, match="skip_textless"):
        col.recontextualize()
    assert alias_target(col.client, col.name) == f"{col.name}__cde_g1"
    col.recontextualize(skip_textless=True, keep_old=True)
    names = {c.name for c in col.client.get_collections().collections}
    assert {f"{col.name}__cde_g1", f"{col.name}__cde_g2"} <= names
    assert col.info().points_total == len(TEXTS)


def test_drift_flags_documents_far_from_the_context(col: ContextualCollection) -> None:
    near = col.drift(TEXTS)
    far = col.drift(["zzzz qqqq 1234 5678", "SELECT * FROM t WHERE a=1;", "@@@@ #### $$$$ %%%%"])
    assert near.ratio < far.ratio
    assert not near.recommended
    assert far.recommended
    with pytest.raises(InvalidInputError):
        col.drift([])


def test_interrupted_create_is_cleaned_up(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    # a crash between creating the physical collection and its alias leaves it unpublished
    client.create_collection(
        f"{name}__cde_g1",
        vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE),
    )
    col = ContextualCollection.create(client, name, v2_encoder_session, context=v2_context)
    assert col.count() == 0
    assert alias_target(client, name) == f"{name}__cde_g1"


def test_drop(col: ContextualCollection) -> None:
    col.drop()
    assert not col.client.collection_exists(col.name)
    assert col.client.get_collections().collections == [] or all(
        not c.name.startswith(col.name) for c in col.client.get_collections().collections
    )


def test_context_persists_across_clients(
    tmp_path: Path, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    first = make_client("path", tmp_path)
    col = ContextualCollection.create(first, "persist", v2_encoder_session, context=v2_context)
    col.add(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
    before = col.search(TEXTS[4], limit=3)
    first.close()
    second = make_client("path", tmp_path)
    try:
        again = ContextualCollection.open(second, "persist", v2_encoder_session)
        assert torch.equal(again.context.embeddings, v2_context.embeddings)
        assert again.fingerprint == v2_context.fingerprint
        assert again.count() == len(TEXTS)
        after = again.search(TEXTS[4], limit=3)
        assert [h.id for h in after] == [h.id for h in before]
        assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-6)
    finally:
        second.close()

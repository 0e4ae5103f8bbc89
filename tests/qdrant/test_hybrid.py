"""Hybrid (dense CDE + lexical sparse) search, fused by Qdrant, on every location."""

from __future__ import annotations

from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant import CollectionConfigError, ContextualCollection
from cde_rag_qdrant.options import CollectionOptions
from cde_rag_qdrant.sparse import SPARSE_METADATA_KEY, SPARSE_VECTOR_NAME, SparseEncoder
from tests.qdrant.hybrid_corpus import DOCS, QUERIES


@pytest.fixture
def hybrid(client: QdrantClient, name: str, v2_encoder_session: CDEEncoder) -> ContextualCollection:
    """A hybrid collection holding the identifier corpus (ids d0..d11)."""
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=DOCS, hybrid=True)
    col.add(DOCS, ids=[f"d{i}" for i in range(len(DOCS))], batch_size=5)
    return col


def _top(col: ContextualCollection, query: str, k: int, **kw: Any) -> list[str]:
    return [h.text for h in col.search(query, limit=k, **kw)]


def test_hybrid_finds_identifiers_that_dense_misses(hybrid: ContextualCollection) -> None:
    dense_missed = [(q, i) for q, i in QUERIES if DOCS[i] not in _top(hybrid, q, 3, mode="dense")]
    # the tiny random-weight model cannot tell the identifiers apart reliably
    assert len(dense_missed) >= 3
    for query, i in QUERIES:
        assert DOCS[i] in _top(hybrid, query, 3, mode="hybrid"), query
        assert _top(hybrid, query, 1, mode="sparse") == [DOCS[i]], query
        assert _top(hybrid, query, 1, mode="hybrid", fusion="dbsf") == [DOCS[i]], query
    for query, i in dense_missed:
        assert _top(hybrid, query, 1, mode="hybrid", fusion="dbsf") == [DOCS[i]]


def test_fused_scores_come_from_qdrant(
    hybrid: ContextualCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[dict[str, Any], models.QueryResponse]] = []
    real = hybrid.client.query_points

    def recording(*args: Any, **kwargs: Any) -> models.QueryResponse:
        response = real(*args, **kwargs)
        calls.append((kwargs, response))
        return response

    monkeypatch.setattr(hybrid.client, "query_points", recording)
    hits = hybrid.search(QUERIES[0][0], limit=4, mode="hybrid", fusion="rrf")
    assert len(calls) == 1  # one request: Qdrant fuses, the client does not re-rank
    request, response = calls[0]
    assert request["query"] == models.FusionQuery(fusion=models.Fusion.RRF)
    dense, sparse = request["prefetch"]
    assert dense.using is None and isinstance(dense.query, list)
    assert sparse.using == SPARSE_VECTOR_NAME
    assert isinstance(sparse.query, models.SparseVector)
    assert dense.filter == sparse.filter == request["query_filter"]  # same scope everywhere
    assert [(h.id, h.score) for h in hits] == [(str(p.id), p.score) for p in response.points]
    hybrid.search(QUERIES[0][0], limit=4, mode="hybrid", fusion="dbsf")
    assert calls[1][0]["query"] == models.FusionQuery(fusion=models.Fusion.DBSF)


def test_hybrid_config_is_stored_and_survives_recontextualize(
    hybrid: ContextualCollection, client: QdrantClient, name: str
) -> None:
    info = client.get_collection(name)
    sparse = (info.config.params.sparse_vectors or {})[SPARSE_VECTOR_NAME]
    assert sparse.modifier == models.Modifier.IDF  # Qdrant keeps the corpus statistics
    assert (info.config.metadata or {})[SPARSE_METADATA_KEY]["vector_name"] == SPARSE_VECTOR_NAME
    assert hybrid.info().options["hybrid"] is True
    hybrid.recontextualize(size=8)
    reopened = ContextualCollection.open(client, name, hybrid.encoder)
    assert reopened.sparse == SparseEncoder()
    query, i = QUERIES[3]
    assert _top(reopened, query, 1, mode="sparse") == [DOCS[i]]


def test_dense_only_collections_are_unchanged(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, context=v2_context)
    col.add(DOCS[:4])
    assert client.get_collection(name).config.params.sparse_vectors in (None, {})
    assert col.sparse is None
    assert len(col.search("disk", limit=2)) == 2
    with pytest.raises(CollectionConfigError, match="hybrid=True"):
        col.search("disk", mode="hybrid")
    with pytest.raises(InvalidInputError, match="mode="):
        col.search("disk", mode="lexical")
    with pytest.raises(InvalidInputError, match="fusion="):
        col.search("disk", mode="dense", fusion="max")


def test_attach_context_to_a_dense_plus_sparse_collection(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    """The layout LangChain's hybrid mode creates: unnamed dense + named sparse vector."""
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE),
        sparse_vectors_config={
            SPARSE_VECTOR_NAME: models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
    )
    col = ContextualCollection.attach_context(client, name, v2_encoder_session, v2_context)
    col.add(DOCS[:3])
    assert col.count() == 3


def test_sparse_encoder_terms_and_ids() -> None:
    enc = SparseEncoder()
    assert enc.terms("Running ERR_CONN_4012 in parse_config_file()") == [
        "run",
        "err_conn_4012",
        "in",
        "parse_config_fil",
    ]
    assert SparseEncoder(language="").terms("Running") == ["running"]
    assert enc.term_id("err") == SparseEncoder.term_id("err") < 2**32
    doc = enc.embed_documents(["disk disk full"])[0]
    assert len(doc.indices) == 2 and doc.indices == sorted(doc.indices)
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert weights[enc.term_id("disk")] > weights[enc.term_id("full")] > 0
    query = enc.embed_query("disk disk")
    assert query.indices == [enc.term_id("disk")] and query.values == [1.0]
    assert SparseEncoder.from_metadata(enc.to_metadata(), "c") == enc
    assert SparseEncoder.from_metadata({}, "c") is None
    with pytest.raises(InvalidInputError, match="Snowball"):
        SparseEncoder(language="klingon")
    with pytest.raises(CollectionConfigError, match="version-1"):
        SparseEncoder.from_metadata({SPARSE_METADATA_KEY: {"version": 9}}, "c")
    with pytest.raises(InvalidInputError, match="hybrid=True"):
        CollectionOptions(sparse=SparseEncoder())

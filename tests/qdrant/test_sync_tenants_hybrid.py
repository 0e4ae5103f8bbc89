"""Chunk-and-sync on tenant views and hybrid collections (the CLI's ingest path)."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection, Document
from cde_rag_qdrant.tenants import TENANT_PAYLOAD_KEY
from tests.conftest import corpus_texts
from tests.qdrant.hybrid_corpus import DOCS


def _docs(texts: list[str]) -> list[Document]:
    return [Document(f"doc{i}.md", t, text_format="markdown") for i, t in enumerate(texts)]


def _tenant_points(client: QdrantClient, name: str, tenant: str) -> list[models.Record]:
    flt = models.Filter(
        must=[models.FieldCondition(key=TENANT_PAYLOAD_KEY, match=models.MatchValue(value=tenant))]
    )
    points, _ = client.scroll(name, scroll_filter=flt, limit=1000, with_payload=True)
    return points


def test_tenants_sync_the_same_document_ids_without_touching_each_other(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=corpus_texts())
    acme = col.add_tenant("acme", corpus=corpus_texts())
    globex = col.add_tenant("globex", corpus=DOCS)
    first = acme.sync(_docs(corpus_texts()[:4]))
    second = globex.sync(_docs(DOCS[:3]))  # same document ids, other tenant
    assert first.documents_added == 4 and second.documents_added == 3
    assert len(_tenant_points(client, name, "acme")) == first.chunks_added
    assert len(_tenant_points(client, name, "globex")) == second.chunks_added
    assert col.count() == 0  # the untenanted view sees neither tenant

    again = acme.sync(_docs(corpus_texts()[:4]), prune=True)  # unchanged: nothing embedded
    assert again.chunks_embedded == 0 and again.documents_unchanged == 4
    pruned = acme.sync(_docs(corpus_texts()[:2]), prune=True)  # prune stays in the tenant
    assert pruned.documents_removed == 2
    assert len(_tenant_points(client, name, "acme")) == first.chunks_added - pruned.chunks_removed
    assert len(_tenant_points(client, name, "globex")) == second.chunks_added  # untouched
    hits = globex.search("error", limit=50)
    assert hits and all(h.text in DOCS for h in hits)


def test_sync_into_a_hybrid_collection_writes_the_sparse_vector(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=DOCS, hybrid=True)
    report = col.sync(_docs(DOCS))
    assert report.chunks_added >= len(DOCS)
    points, _ = client.scroll(name, limit=1000, with_vectors=True)
    assert points
    for point in points:
        assert isinstance(point.vector, dict)
        assert any(isinstance(v, models.SparseVector) and v.indices for v in point.vector.values())
    hits = col.search("ERR_CONN_4012", limit=3, mode="sparse")
    assert hits, "sparse search found nothing: the synced points carry no lexical vector"


@pytest.mark.parametrize("mode", ["hybrid"])
def test_hybrid_search_over_synced_chunks(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, mode: str
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=DOCS, hybrid=True)
    col.sync(_docs(DOCS))
    assert col.search("ERR_CONN_4012", limit=3, mode=mode)

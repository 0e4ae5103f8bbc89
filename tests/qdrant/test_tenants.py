"""Tenants of one collection, each with its own context, on every location."""

from __future__ import annotations

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag_qdrant import CollectionConfigError, CollectionExistsError, ContextualCollection
from cde_rag_qdrant.errors import TenantContextMissingError
from cde_rag_qdrant.record import METADATA_KEY
from cde_rag_qdrant.tenants import TENANT_PAYLOAD_KEY
from tests.conftest import corpus_texts
from tests.qdrant.hybrid_corpus import DOCS

ACME = corpus_texts()  # plain English
GLOBEX = DOCS  # error codes and function names


@pytest.fixture
def base(client: QdrantClient, name: str, v2_encoder_session: CDEEncoder) -> ContextualCollection:
    """A collection with two tenants, each with its own corpus and context, same ids."""
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=ACME[:5])
    acme = col.add_tenant("acme", corpus=ACME)
    globex = col.add_tenant("globex", corpus=GLOBEX)
    acme.add(ACME, ids=[f"d{i}" for i in range(len(ACME))])
    globex.add(GLOBEX, ids=[f"d{i}" for i in range(len(GLOBEX))])  # same ids: no collision
    return col


def _vectors(client: QdrantClient, name: str, tenant: str) -> dict[str, np.ndarray]:
    flt = models.Filter(
        must=[models.FieldCondition(key=TENANT_PAYLOAD_KEY, match=models.MatchValue(value=tenant))]
    )
    points, _ = client.scroll(name, scroll_filter=flt, limit=1000, with_vectors=True)
    return {str(p.id): np.asarray(p.vector, dtype=np.float32) for p in points}


def test_each_tenant_sees_only_its_points_embedded_with_its_context(
    base: ContextualCollection, client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    acme = ContextualCollection.open(client, name, v2_encoder_session, tenant="acme")
    globex = ContextualCollection.open(client, name, v2_encoder_session, tenant="globex")
    assert acme.fingerprint != globex.fingerprint != base.fingerprint
    assert (acme.count(), globex.count(), base.count()) == (len(ACME), len(GLOBEX), 0)
    assert base.tenants() == ["acme", "globex"]
    for view, corpus in ((acme, ACME), (globex, GLOBEX)):
        hits = view.search("what should I do about the error?", limit=50)
        assert {h.text for h in hits} == set(corpus)
        # the query vector is embed_queries under the tenant's own context
        query = v2_encoder_session.embed_queries(["rotate keys"], view.context)[0]
        top = view.search("rotate keys", limit=1)[0]
        raw = client.retrieve(name, [top.id], with_vectors=True)[0].vector
        stored = np.asarray(raw, dtype=np.float32)
        expected = float(np.dot(query, stored) / np.linalg.norm(query) / np.linalg.norm(stored))
        assert top.score == pytest.approx(expected, abs=1e-4)
    # stored vectors are embed_documents under the tenant's context
    vectors = _vectors(client, name, "globex")
    docs = v2_encoder_session.embed_documents(GLOBEX, globex.context)
    by_text = dict(zip(GLOBEX, docs, strict=True))
    for point in client.retrieve(name, list(vectors), with_payload=True):
        kept = vectors[str(point.id)]
        want = by_text[(point.payload or {})["page_content"]]
        assert np.allclose(kept / np.linalg.norm(kept), want / np.linalg.norm(want), atol=1e-4)


def test_a_tenant_recontextualize_leaves_the_others_untouched(
    base: ContextualCollection, client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    globex_before = _vectors(client, name, "globex")
    acme_before = _vectors(client, name, "acme")
    acme = ContextualCollection.open(client, name, v2_encoder_session, tenant="acme")
    old = acme.fingerprint
    acme.recontextualize(size=6, seed=3)
    assert acme.fingerprint != old
    assert acme.count() == len(ACME)  # every point re-embedded in place (same ids)
    assert set(_vectors(client, name, "acme")) == set(acme_before)
    changed = _vectors(client, name, "acme")
    assert any(not np.allclose(changed[k], acme_before[k]) for k in acme_before)
    after = _vectors(client, name, "globex")
    assert after.keys() == globex_before.keys()
    assert all(np.array_equal(after[k], globex_before[k]) for k in after)
    globex = ContextualCollection.open(client, name, v2_encoder_session, tenant="globex")
    assert globex.count() == len(GLOBEX)
    reopened = ContextualCollection.open(client, name, v2_encoder_session, tenant="acme")
    assert reopened.fingerprint == acme.fingerprint
    assert (client.get_collection(name).config.metadata or {})[METADATA_KEY]["fingerprint"] == (
        base.fingerprint  # the collection's own record is unchanged
    )


def test_a_stale_tenant_view_writes_nothing(
    base: ContextualCollection, client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    stale = ContextualCollection.open(client, name, v2_encoder_session, tenant="acme")
    ContextualCollection.open(client, name, v2_encoder_session, tenant="acme").recontextualize(
        size=6, seed=3
    )
    with pytest.raises(ContextMismatchError, match="Nothing was written"):
        stale.add(["written under a replaced tenant context"])
    fresh = ContextualCollection.open(client, name, v2_encoder_session, tenant="acme")
    assert fresh.count() == len(ACME)
    # the other tenant's view is still current: its writes go through
    globex = ContextualCollection.open(client, name, v2_encoder_session, tenant="globex")
    globex.add(["ERR_NEW_0001: still current"])
    assert globex.count() == len(GLOBEX) + 1


def test_tenant_errors(
    base: ContextualCollection, client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    with pytest.raises(TenantContextMissingError, match="add_tenant") as info:
        ContextualCollection.open(client, name, v2_encoder_session, tenant="initech")
    assert isinstance(info.value, LookupError | ValueError)
    assert "'acme', 'globex'" in str(info.value)
    with pytest.raises(CollectionExistsError, match="never overwritten"):
        base.add_tenant("acme", corpus=GLOBEX)
    with pytest.raises(InvalidInputError, match="tenant="):
        base.add_tenant("", corpus=GLOBEX)
    with pytest.raises(CollectionConfigError, match="--tenant"):
        base.recontextualize()


def test_tenant_deletes_are_scoped(
    base: ContextualCollection, client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    acme = ContextualCollection.open(client, name, v2_encoder_session, tenant="acme")
    globex = ContextualCollection.open(client, name, v2_encoder_session, tenant="globex")
    acme.delete(["d0", "d1"])
    acme.delete(query_filter={"missing": "x"})
    assert (acme.count(), globex.count()) == (len(ACME) - 2, len(GLOBEX))


def test_single_context_collections_read_unchanged(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, corpus=ACME, tenant="solo")
    assert col.tenant == "solo"
    col.add(ACME[:3])
    plain = ContextualCollection.open(client, name, v2_encoder_session)
    assert plain.tenant is None and plain.count() == 0  # tenant points stay in their scope
    meta = client.get_collection(name).config.metadata or {}
    assert meta[METADATA_KEY]["record_version"] == 1


def test_tenants_sharing_one_context_still_see_only_their_points(
    client: QdrantClient, name: str, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    col = ContextualCollection.create(client, name, v2_encoder_session, context=v2_context)
    a = col.add_tenant("a", context=v2_context)
    b = col.add_tenant("b", context=v2_context)
    assert a.fingerprint == b.fingerprint == col.fingerprint  # only the tenant key separates
    a.add(ACME[:4])
    b.add(GLOBEX[:3])
    col.add(ACME[:2])  # no tenant
    assert {h.text for h in a.search("x", limit=50)} == set(ACME[:4])
    assert {h.text for h in b.search("x", limit=50)} == set(GLOBEX[:3])
    assert {h.text for h in col.search("x", limit=50)} == set(ACME[:2])
    assert (a.count(), b.count(), col.count()) == (4, 3, 2)
    col.delete(query_filter=models.Filter())  # the collection's own scope only
    b.delete(query_filter=models.Filter())
    assert (a.count(), b.count(), col.count()) == (4, 0, 0)
    ids = a.add(ACME[4:6])
    a.delete(ids)  # the ids add() returned
    assert a.count() == 4

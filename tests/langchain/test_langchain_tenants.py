"""LangChain stores bound to one tenant of a cde-rag collection (every location)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag.errors import ContextMismatchError
from cde_rag_langchain import qdrant_vector_store
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.errors import TenantContextMissingError
from cde_rag_qdrant.tenants import TENANT_PAYLOAD_KEY
from tests.conftest import corpus_texts
from tests.qdrant.conftest import LOCATIONS, cleanup, make_client
from tests.qdrant.hybrid_corpus import DOCS

PLAIN = corpus_texts()


@pytest.fixture(params=LOCATIONS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    qc = make_client(str(request.param), tmp_path)
    yield qc
    if request.param == "server":
        cleanup(qc, "lc_tenants")
    qc.close()


def test_a_store_per_tenant(client: QdrantClient, v2_encoder_session: CDEEncoder) -> None:
    col = ContextualCollection.create(client, "lc_tenants", v2_encoder_session, corpus=PLAIN)
    col.add_tenant("acme", corpus=PLAIN).add(PLAIN)
    globex_col = col.add_tenant("globex", corpus=DOCS)
    globex_col.add(DOCS)
    acme = qdrant_vector_store(client, "lc_tenants", v2_encoder_session, tenant="acme")
    globex = qdrant_vector_store(client, "lc_tenants", v2_encoder_session, tenant="globex")
    assert globex.embeddings.context == globex_col.context  # type: ignore[union-attr]
    assert {d.page_content for d in acme.similarity_search("error", k=50)} == set(PLAIN)
    assert {d.page_content for d in globex.similarity_search("error", k=50)} == set(DOCS)
    [new_id] = globex.add_texts(["ERR_X_0001: written through LangChain for globex."])
    point = client.retrieve("lc_tenants", [new_id], with_payload=True)[0]
    assert (point.payload or {})[TENANT_PAYLOAD_KEY] == "globex"
    assert globex_col.count() == len(DOCS) + 1  # cde-rag sees it in the tenant's scope
    assert all("ERR_X" not in d.page_content for d in acme.similarity_search("ERR_X", k=50))
    with pytest.raises(TenantContextMissingError, match="initech"):
        qdrant_vector_store(client, "lc_tenants", v2_encoder_session, tenant="initech")


def test_tenant_stores_delete_their_points_and_see_a_tenant_recontextualize(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    col = ContextualCollection.create(client, "lc_tenants", v2_encoder_session, corpus=PLAIN)
    col.add_tenant("acme", corpus=PLAIN).add(PLAIN[:3])
    col.add_tenant("globex", corpus=DOCS).add(DOCS[:3])
    acme = qdrant_vector_store(client, "lc_tenants", v2_encoder_session, tenant="acme")
    globex = qdrant_vector_store(client, "lc_tenants", v2_encoder_session, tenant="globex")
    [shared] = acme.add_texts(["a text acme wrote"], ids=["same-id"])
    # a delete through the other tenant's store does not reach acme's point
    globex.delete(["same-id"])
    assert [d.id for d in acme.get_by_ids([shared])] == ["same-id"]
    acme.delete(["same-id"])
    assert acme.get_by_ids([shared]) == []
    # a tenant recontextualized in place (no alias move) is caught by a short search
    ContextualCollection.open(
        client, "lc_tenants", v2_encoder_session, tenant="globex"
    ).recontextualize(size=4, seed=1)
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        globex.similarity_search("error", k=50)
    assert len(acme.similarity_search("error", k=50)) == 3  # acme's context is unchanged

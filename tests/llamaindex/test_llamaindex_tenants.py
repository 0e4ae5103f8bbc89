"""LlamaIndex stores bound to one tenant of a cde-rag collection (every location)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag_llamaindex import open_qdrant_store
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.errors import TenantContextMissingError
from tests.conftest import corpus_texts
from tests.qdrant.conftest import LOCATIONS, cleanup, make_client
from tests.qdrant.hybrid_corpus import DOCS

PLAIN = corpus_texts()


@pytest.fixture(params=LOCATIONS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    qc = make_client(str(request.param), tmp_path)
    yield qc
    if request.param == "server":
        cleanup(qc, "li_tenants")
    qc.close()


def test_a_store_per_tenant(client: QdrantClient, v2_encoder_session: CDEEncoder) -> None:
    col = ContextualCollection.create(client, "li_tenants", v2_encoder_session, corpus=PLAIN)
    acme_col = col.add_tenant("acme", corpus=PLAIN)
    acme_col.add(PLAIN)
    col.add_tenant("globex", corpus=DOCS)
    store, embed_model = open_qdrant_store(
        client, "li_tenants", v2_encoder_session, tenant="globex"
    )
    assert embed_model.context is not None and embed_model.context != acme_col.context
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
    )
    texts = {n.node.get_content() for n in index.as_retriever(similarity_top_k=50).retrieve("x")}
    assert texts == set(DOCS)
    globex = ContextualCollection.open(client, "li_tenants", v2_encoder_session, tenant="globex")
    assert globex.count() == len(DOCS)
    store.clear()  # only the tenant's points
    assert (globex.count(), acme_col.count()) == (0, len(PLAIN))
    with pytest.raises(TenantContextMissingError):
        open_qdrant_store(client, "li_tenants", v2_encoder_session, tenant="initech")

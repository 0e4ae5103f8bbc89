"""LangChain's ``RetrievalMode.HYBRID`` on cde-rag collections (every location)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_qdrant import RetrievalMode
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag_langchain import CDESparseEmbeddings, create_qdrant_vector_store, qdrant_vector_store
from cde_rag_qdrant import CollectionConfigError, ContextualCollection
from cde_rag_qdrant.sparse import SPARSE_VECTOR_NAME, SparseEncoder
from tests.qdrant.conftest import LOCATIONS, cleanup, make_client
from tests.qdrant.hybrid_corpus import DOCS, QUERIES


@pytest.fixture(params=LOCATIONS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    qc = make_client(str(request.param), tmp_path)
    yield qc
    if request.param == "server":
        cleanup(qc, "lc_hybrid")
    qc.close()


def test_langchain_hybrid_store_on_a_cde_collection(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    store = create_qdrant_vector_store(
        client,
        "lc_hybrid",
        v2_encoder_session,
        corpus=DOCS,
        retrieval_mode=RetrievalMode.HYBRID,
    )
    assert store.sparse_vector_name == SPARSE_VECTOR_NAME
    assert isinstance(store.sparse_embeddings, CDESparseEmbeddings)
    store.add_texts(DOCS)
    for query, i in QUERIES:
        assert DOCS[i] in [d.page_content for d in store.similarity_search(query, k=3)], query
    # cde-rag reads LangChain's sparse vectors: the same encoder wrote them
    col = ContextualCollection.open(client, "lc_hybrid", v2_encoder_session)
    query, i = QUERIES[7]
    assert col.search(query, limit=1, mode="sparse")[0].text == DOCS[i]
    # and LangChain searches points cde-rag wrote, in sparse mode too
    col.add(["ERR_NEW_1111: a code added by cde-rag itself."])
    sparse = qdrant_vector_store(
        client, "lc_hybrid", v2_encoder_session, retrieval_mode=RetrievalMode.SPARSE
    )
    assert sparse.similarity_search("ERR_NEW_1111", k=1)[0].page_content.startswith("ERR_NEW")


def test_hybrid_needs_a_hybrid_collection(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    create_qdrant_vector_store(client, "lc_hybrid_dense", v2_encoder_session, corpus=DOCS)
    with pytest.raises(CollectionConfigError, match=r"RetrievalMode\.HYBRID"):
        qdrant_vector_store(
            client, "lc_hybrid_dense", v2_encoder_session, retrieval_mode=RetrievalMode.HYBRID
        )


def test_sparse_embeddings_match_the_collection_encoder() -> None:
    enc = SparseEncoder(language="")
    sparse = CDESparseEmbeddings(enc)
    [doc] = sparse.embed_documents(["Disks disks"])
    assert (doc.indices, doc.values) == (
        enc.embed_documents(["Disks disks"])[0].indices,
        enc.embed_documents(["Disks disks"])[0].values,
    )
    assert sparse.embed_query("disks").indices == [enc.term_id("disks")]

"""LlamaIndex's hybrid mode (``enable_hybrid=True``) on cde-rag collections (every location)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag.errors import InvalidInputError
from cde_rag_llamaindex import create_qdrant_store, open_qdrant_store
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant.sparse import SPARSE_VECTOR_NAME
from tests.qdrant.conftest import LOCATIONS, cleanup, make_client
from tests.qdrant.hybrid_corpus import DOCS, QUERIES


@pytest.fixture(params=LOCATIONS)
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantClient]:
    qc = make_client(str(request.param), tmp_path)
    yield qc
    if request.param == "server":
        cleanup(qc, "li_hybrid")
    qc.close()


def test_llamaindex_hybrid_store_on_a_cde_collection(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    store, embed_model = create_qdrant_store(
        client, "li_hybrid", v2_encoder_session, corpus=DOCS, enable_hybrid=True
    )
    assert store.enable_hybrid and store.sparse_vector_name == SPARSE_VECTOR_NAME
    assert store.dense_vector_name == ""  # the unnamed CDE vector
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS],
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
    )
    retriever = index.as_retriever(
        vector_store_query_mode="hybrid", similarity_top_k=3, sparse_top_k=5
    )
    for query, i in QUERIES:
        texts = [n.node.get_content() for n in retriever.retrieve(query)]
        assert DOCS[i] in texts, query
    # cde-rag searches LlamaIndex's points with the same sparse vectors
    col = ContextualCollection.open(client, "li_hybrid", v2_encoder_session)
    query, i = QUERIES[2]
    assert col.search(query, limit=1, mode="sparse")[0].text == DOCS[i]
    # a store opened on a collection cde-rag wrote
    reopened, _ = open_qdrant_store(client, "li_hybrid", v2_encoder_session, enable_hybrid=True)
    assert reopened.sparse_vector_name == SPARSE_VECTOR_NAME


def test_hybrid_needs_a_hybrid_collection(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    create_qdrant_store(client, "li_hybrid_dense", v2_encoder_session, corpus=DOCS)
    with pytest.raises(InvalidInputError, match="enable_hybrid"):
        open_qdrant_store(client, "li_hybrid_dense", v2_encoder_session, enable_hybrid=True)
    with pytest.raises(InvalidInputError, match="downloads"):
        open_qdrant_store(
            client, "li_hybrid_dense", v2_encoder_session, fastembed_sparse_model="Qdrant/bm25"
        )

"""LlamaIndex + Qdrant: the collection's context is always the one used (local-path stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, ContextNotSetError, InvalidInputError
from cde_rag_llamaindex import (
    CDEEmbedding,
    CDEQdrantVectorStore,
    create_qdrant_store,
    open_qdrant_store,
    read_nodes,
)
from cde_rag_qdrant import CollectionNotFoundError, ContextualCollection, read_context
from tests.conftest import V2_TINY, corpus_texts

TEXTS = corpus_texts()[:8]
QUERY = "how do I toast spices?"


def documents() -> list[Document]:
    return [Document(text=t, metadata={"n": i}) for i, t in enumerate(TEXTS)]


def index_over(store: CDEQdrantVectorStore, embed_model: CDEEmbedding) -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        documents(),
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
    )


@pytest.fixture
def client() -> QdrantClient:
    return QdrantClient(":memory:")


@pytest.fixture
def built(
    client: QdrantClient, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> tuple[CDEQdrantVectorStore, CDEEmbedding]:
    store, embed_model = create_qdrant_store(client, "docs", v2_encoder_session, context=v2_context)
    index_over(store, embed_model)
    return store, embed_model


def test_build_close_reopen_query_with_the_stored_context(
    tmp_path: Path, v2_encoder_session: CDEEncoder
) -> None:
    path = str(tmp_path / "qdrant")
    client = QdrantClient(path=path)
    store, embed_model = create_qdrant_store(
        client, "notes", CDEEmbedding(encoder=v2_encoder_session), corpus=corpus_texts(), seed=5
    )
    built_with = embed_model.context
    assert built_with is not None
    index_over(store, embed_model)
    client.close()

    client = QdrantClient(path=path)  # a new client, a new model object, a new adapter
    store, fresh = open_qdrant_store(
        client, "notes", CDEEmbedding(model_name=str(V2_TINY), device="cpu")
    )
    assert fresh.encoder is not v2_encoder_session
    assert fresh.context == built_with == read_context(client, "notes")
    want = fresh.encoder.embed_queries([QUERY], read_context(client, "notes"))[0]
    got = np.asarray(fresh.get_query_embedding(QUERY), dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, v2_encoder_session.embed_queries([QUERY], built_with)[0])

    index = VectorStoreIndex.from_vector_store(store, embed_model=fresh)
    hits = index.as_retriever(similarity_top_k=3).retrieve(TEXTS[6])
    assert hits[0].node.get_content() == TEXTS[6]
    assert hits[0].node.metadata == {"n": 6}
    filtered = index.as_retriever(
        similarity_top_k=3, filters=MetadataFilters(filters=[MetadataFilter(key="n", value=1)])
    ).retrieve(QUERY)
    assert [h.node.get_content() for h in filtered] == [TEXTS[1]]
    client.close()


def test_a_different_context_is_refused(
    built: tuple[CDEQdrantVectorStore, CDEEmbedding],
    client: QdrantClient,
    v2_encoder_session: CDEEncoder,
) -> None:
    other = v2_encoder_session.build_context(corpus_texts()[::-1], show_progress_bar=False)
    wrong = CDEEmbedding(encoder=v2_encoder_session, context=other)
    with pytest.raises(ContextMismatchError, match="stores context"):
        open_qdrant_store(client, "docs", wrong)
    with pytest.raises(ContextMismatchError, match="open_qdrant_store"):
        CDEQdrantVectorStore("docs", client, embed_model=wrong)
    unbound = CDEEmbedding(encoder=v2_encoder_session)
    CDEQdrantVectorStore("docs", client, embed_model=unbound)  # binds it to the stored context
    assert unbound.context == read_context(client, "docs")
    with pytest.raises(InvalidInputError, match="hybrid"):
        CDEQdrantVectorStore("docs", client, enable_hybrid=True)


def test_no_lazy_collection_without_context(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    store = CDEQdrantVectorStore("missing", client)  # created by the first add, with a context
    with pytest.raises(ContextNotSetError, match="cannot tell which corpus context"):
        store.add([TextNode(text="x", embedding=[0.0] * 64)])  # vectors of unknown context
    with pytest.raises(CollectionNotFoundError, match="does not exist yet"):
        store.query(VectorStoreQuery(query_str="x"))
    with pytest.raises(CollectionNotFoundError, match=r"ContextualCollection\.create"):
        open_qdrant_store(client, "missing", v2_encoder_session)
    assert not client.collection_exists("missing")


def test_payload_layout_and_re_embedding_reproduces_vectors(
    built: tuple[CDEQdrantVectorStore, CDEEmbedding],
    client: QdrantClient,
    v2_encoder_session: CDEEncoder,
) -> None:
    store, _ = built
    stored = read_context(client, "docs")
    points, _ = client.scroll("docs", limit=100, with_vectors=True)
    assert len(points) == len(TEXTS)
    for point in points:
        payload = point.payload or {}
        assert {"_node_content", "_node_type", "doc_id", "document_id", "ref_doc_id", "n"} <= set(
            payload
        )
        assert payload["cde_context"] == store.fingerprint
        assert payload["metadata"] == {"n": payload["n"]}
        text = TEXTS[payload["n"]]
        assert payload["page_content"] == f"n: {payload['n']}\n\n{text}"  # MetadataMode.EMBED
        again = v2_encoder_session.embed_documents([payload["page_content"]], stored)[0]
        np.testing.assert_allclose(np.asarray(point.vector), again, rtol=0, atol=1e-5)


def test_cde_rag_search_reads_llamaindex_points(
    built: tuple[CDEQdrantVectorStore, CDEEmbedding],
    client: QdrantClient,
    v2_encoder_session: CDEEncoder,
) -> None:
    collection = ContextualCollection.open(client, "docs", v2_encoder_session)
    hits = collection.search(QUERY, limit=3)
    assert len(hits) == 3
    assert hits[0].text.endswith(TEXTS[hits[0].metadata["n"]])
    nodes = read_nodes(client, "docs", [h.id for h in hits])
    assert [n.node_id for n in nodes] == [h.id for h in hits]
    assert nodes[0].get_content() == TEXTS[hits[0].metadata["n"]]  # the full LlamaIndex node


def test_llamaindex_reads_points_written_by_cde_rag(
    client: QdrantClient, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    collection = ContextualCollection.create(client, "kb", v2_encoder_session, context=v2_context)
    ids = collection.add(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))])
    store, embed_model = open_qdrant_store(client, "kb", v2_encoder_session)
    hits = (
        VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
        .as_retriever(similarity_top_k=2)
        .retrieve(TEXTS[3])
    )
    assert isinstance(hits[0].node, TextNode)
    assert (hits[0].node.get_content(), hits[0].node.metadata) == (TEXTS[3], {"n": 3})
    assert hits[0].score == pytest.approx(collection.search(TEXTS[3], limit=1)[0].score, abs=1e-6)
    assert [n.get_content() for n in read_nodes(client, "kb", ids[:2])] == TEXTS[:2]
    # and LlamaIndex nodes added next to cde-rag's points are searchable by both
    VectorStoreIndex.from_vector_store(store, embed_model=embed_model).insert_nodes(
        [TextNode(text="Grind the toasted spices in a mortar.")]
    )
    assert collection.count() == len(TEXTS) + 1


def test_queries_skip_points_without_this_context(
    built: tuple[CDEQdrantVectorStore, CDEEmbedding], client: QdrantClient
) -> None:
    store, embed_model = built
    client.upsert(
        "docs",
        points=[
            models.PointStruct(
                id="00000000-0000-0000-0000-000000000001",
                vector=embed_model.get_query_embedding(QUERY),
                payload={"page_content": "unstamped", "metadata": {}},
            )
        ],
    )
    result = store.query(
        VectorStoreQuery(
            query_embedding=embed_model.get_query_embedding(QUERY), similarity_top_k=20
        )
    )
    assert len(result.nodes or []) == len(TEXTS)
    assert "unstamped" not in [n.get_content() for n in result.nodes or []]


def test_recontextualized_collection_is_detected(
    built: tuple[CDEQdrantVectorStore, CDEEmbedding],
    client: QdrantClient,
    v2_encoder_session: CDEEncoder,
) -> None:
    store, embed_model = built
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    ContextualCollection.open(client, "docs", v2_encoder_session).recontextualize(seed=7)
    new = read_context(client, "docs")
    assert new != embed_model.context

    with pytest.raises(ContextMismatchError, match=r"re-contextualized.*open_qdrant_store"):
        index.as_retriever().retrieve(QUERY)
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        store.add([TextNode(text="x", embedding=[0.0] * 64)])
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        store.query(VectorStoreQuery(query_embedding=[0.1] * 64))

    store, fresh = open_qdrant_store(client, "docs", embed_model)
    assert fresh.context == new
    want = v2_encoder_session.embed_queries([QUERY], new)[0]
    np.testing.assert_array_equal(np.asarray(fresh.get_query_embedding(QUERY), np.float32), want)
    hits = (
        VectorStoreIndex.from_vector_store(store, embed_model=fresh)
        .as_retriever(similarity_top_k=1)
        .retrieve(TEXTS[2])
    )
    assert hits[0].node.get_content() == TEXTS[2]  # the re-embedded LlamaIndex nodes still parse
    assert embed_model.rebind() == new


def test_reserved_metadata_keys_and_clear(
    built: tuple[CDEQdrantVectorStore, CDEEmbedding], client: QdrantClient
) -> None:
    store, embed_model = built
    node = TextNode(text="clash", metadata={"page_content": "x"})
    node.embedding = embed_model.get_text_embedding(node.get_content(MetadataMode.EMBED))
    with pytest.raises(InvalidInputError, match="reserves"):
        store.add([node])
    store.clear()
    assert client.count("docs").count == 0
    assert read_context(client, "docs") == embed_model.context  # the context stays

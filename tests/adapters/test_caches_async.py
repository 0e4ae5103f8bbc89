"""Framework caches never mix contexts; async clients work; bypassing writes are reported."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag_qdrant import AsyncContextualCollection, ClientTypeError, ContextualCollection
from cde_rag_qdrant._store import summarize
from tests.conftest import corpus_texts

TEXTS = corpus_texts()[:8]
TEXT = "Toast the cumin seeds in a dry pan."


@pytest.fixture(scope="module")
def other_context(v2_encoder_session: CDEEncoder) -> CorpusContext:
    return v2_encoder_session.build_context(corpus_texts()[::-1], show_progress_bar=False)


def test_langchain_cache_with_a_model_name_namespace_is_refused(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, other_context: CorpusContext
) -> None:
    from langchain_classic.embeddings import CacheBackedEmbeddings
    from langchain_core.stores import InMemoryByteStore

    from cde_rag_langchain import CDEEmbeddings

    store = InMemoryByteStore()
    a = CDEEmbeddings(encoder=v2_encoder_session, context=v2_context)
    b = CDEEmbeddings(encoder=v2_encoder_session, context=other_context)
    naive = CacheBackedEmbeddings.from_bytes_store(
        a, store, namespace=a.model_name, key_encoder="sha256"
    )
    with pytest.raises(InvalidInputError, match=r"namespace=emb\.cache_namespace"):
        naive.embed_documents([TEXT])  # the silent mix is now an error
    assert list(store.yield_keys()) == []  # nothing was cached
    cached_a = CacheBackedEmbeddings.from_bytes_store(
        a, store, namespace=a.cache_namespace, key_encoder="sha256"
    )
    cached_b = CacheBackedEmbeddings.from_bytes_store(
        b, store, namespace=b.cache_namespace, key_encoder="sha256"
    )
    assert a.cache_namespace != b.cache_namespace
    got_a = cached_a.embed_documents([TEXT])[0]
    got_b = cached_b.embed_documents([TEXT])[0]  # same text, other context: not a cache hit
    np.testing.assert_allclose(got_a, v2_encoder_session.embed_documents([TEXT], v2_context)[0])
    np.testing.assert_allclose(got_b, v2_encoder_session.embed_documents([TEXT], other_context)[0])
    assert cached_a.embed_documents([TEXT])[0] == got_a  # and hits still work


def test_llamaindex_ingestion_cache_keys_include_the_context(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, other_context: CorpusContext
) -> None:
    from llama_index.core.ingestion import IngestionCache, IngestionPipeline
    from llama_index.core.schema import Document

    from cde_rag_llamaindex import CDEEmbedding

    cache = IngestionCache()
    a = CDEEmbedding(encoder=v2_encoder_session, context=v2_context)
    b = CDEEmbedding(encoder=v2_encoder_session, context=other_context)
    assert a.cde_identity != b.cde_identity
    assert a.to_dict()["cde_identity"] == a.cde_identity  # what the pipeline hashes
    got_a = IngestionPipeline(transformations=[a], cache=cache).run(documents=[Document(text=TEXT)])
    got_b = IngestionPipeline(transformations=[b], cache=cache).run(documents=[Document(text=TEXT)])
    want_b = v2_encoder_session.embed_documents([TEXT], other_context)[0]
    np.testing.assert_allclose(np.asarray(got_b[0].embedding), want_b, atol=1e-6)
    assert got_a[0].embedding != got_b[0].embedding
    again = CDEEmbedding.from_dict(a.to_dict())  # the serialised form still loads
    assert again.model_name == a.model_name


def test_collection_refuses_writes_after_recontextualize(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "kb", v2_encoder_session, context=v2_context)
    col.add(TEXTS)
    old = ContextualCollection.open(client, "kb", v2_encoder_session)
    col.recontextualize(seed=3)
    with pytest.raises(ContextMismatchError, match="Nothing was written"):
        old.add(["written under the old context"])
    assert client.count("kb").count == len(TEXTS)


def test_info_counts_points_written_around_cde_rag(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, caplog: pytest.LogCaptureFixture
) -> None:
    from langchain_qdrant import QdrantVectorStore

    from cde_rag_langchain import CDEEmbeddings

    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "kb", v2_encoder_session, context=v2_context)
    col.add(TEXTS)
    bound = CDEEmbeddings.from_qdrant(client, "kb", encoder=v2_encoder_session)
    QdrantVectorStore(client, "kb", embedding=bound).add_texts(["written by stock LangChain"])
    with caplog.at_level(logging.WARNING, logger="cde_rag_qdrant"):
        summary = col.info()
    assert (summary.points, summary.points_total, summary.points_unstamped) == (8, 9, 1)
    assert "recontextualize" in caplog.text
    assert summarize(client, "kb").as_dict()["points_unstamped"] == 1
    col.recontextualize()  # the documented fix: re-embeds every point, stamps it
    assert col.info().points_unstamped == 0
    assert col.count() == 9


def test_sync_api_with_an_async_client_says_so(v2_encoder_session: CDEEncoder) -> None:
    aclient = AsyncQdrantClient(":memory:")
    with pytest.raises(ClientTypeError, match="AsyncContextualCollection"):
        ContextualCollection.create(aclient, "kb", v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]
    from cde_rag_llamaindex import create_qdrant_store

    with pytest.raises(ClientTypeError, match="AsyncContextualCollection"):
        create_qdrant_store(aclient, "kb", v2_encoder_session, corpus=TEXTS)  # type: ignore[arg-type]


async def test_async_client_with_the_collection_and_both_stores(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from cde_rag_langchain import CDEEmbeddings
    from cde_rag_langchain import CDEQdrantVectorStore as LangChainStore
    from cde_rag_llamaindex import CDEEmbedding
    from cde_rag_llamaindex import CDEQdrantVectorStore as LlamaIndexStore

    aclient = AsyncQdrantClient(":memory:")
    col = await AsyncContextualCollection.create(
        aclient, "kb", v2_encoder_session, context=v2_context
    )
    ids = await col.add(TEXTS[:4], ids=["a", "b", "c", "d"])
    hits = await col.search(TEXTS[2], limit=1)
    assert hits[0].text == TEXTS[2]
    assert [h.text for h in await col.retrieve(["b", "a"])] == [TEXTS[1], TEXTS[0]]
    assert ids[0] == (await col.retrieve(["a"]))[0].id
    assert await col.count() == 4

    lc = LangChainStore(aclient, "kb", CDEEmbeddings(encoder=v2_encoder_session))
    with pytest.raises(InvalidInputError, match="AsyncQdrantClient"):
        lc.similarity_search("x")
    assert await lc.aadd_texts([TEXTS[4]], ids=["e"]) == ["e"]
    docs = await lc.asimilarity_search(TEXTS[4], k=1)
    assert (docs[0].page_content, docs[0].id) == (TEXTS[4], "e")
    assert [d.page_content for d in await lc.aget_by_ids(["e"])] == [TEXTS[4]]
    assert await lc.adelete(["e"])

    model = CDEEmbedding(encoder=v2_encoder_session)
    li = LlamaIndexStore("kb", aclient=aclient, embed_model=model)
    node = TextNode(text=TEXTS[5])
    node.embedding = await model.aget_text_embedding(TEXTS[5])  # unbound: fits a context
    with pytest.raises(ContextMismatchError, match="not comparable"):
        await li.async_add([node])  # the store binds on its first async call, and refuses
    model = CDEEmbedding(encoder=v2_encoder_session)
    li = LlamaIndexStore("kb", aclient=aclient, embed_model=model)
    await li.aquery(VectorStoreQuery(query_str="bind first", similarity_top_k=1))
    node.embedding = await model.aget_text_embedding(TEXTS[5])
    await li.async_add([node])
    result = await li.aquery(VectorStoreQuery(query_str=TEXTS[5], similarity_top_k=1))
    assert result.nodes is not None
    assert result.nodes[0].get_content() == TEXTS[5]
    assert await col.count() == 5
    points, _ = await aclient.scroll("kb", limit=10, scroll_filter=models.Filter())
    assert all((p.payload or {}).get("cde_context") == col.fingerprint for p in points)

"""LangChain + Qdrant: the collection's context is always the one used (local-path stores)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import FakeEmbeddings
from langchain_qdrant import QdrantVectorStore
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, ContextNotSetError, InvalidInputError
from cde_rag_langchain import (
    CDEEmbeddings,
    CDEQdrantVectorStore,
    create_qdrant_vector_store,
    qdrant_vector_store,
)
from cde_rag_qdrant import ContextMissingError, ContextualCollection, read_context
from tests.conftest import V2_TINY, corpus_texts

TEXTS = corpus_texts()[:8]
QUERY = "how do I toast spices?"


@pytest.fixture
def client() -> QdrantClient:
    return QdrantClient(":memory:")


@pytest.fixture
def store(
    client: QdrantClient, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> CDEQdrantVectorStore:
    store = create_qdrant_vector_store(client, "docs", v2_encoder_session, context=v2_context)
    store.add_texts(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))])
    return store


def test_build_close_reopen_query_with_the_stored_context(
    tmp_path: Path, v2_encoder_session: CDEEncoder
) -> None:
    path = str(tmp_path / "qdrant")
    client = QdrantClient(path=path)
    embeddings = CDEEmbeddings(encoder=v2_encoder_session).fit(corpus_texts(), seed=3)
    built_with = embeddings.context
    assert built_with is not None
    store = create_qdrant_vector_store(client, "notes", embeddings)
    store.add_documents([Document(page_content=t, metadata={"n": i}) for i, t in enumerate(TEXTS)])
    client.close()

    client = QdrantClient(path=path)  # a new client, a new model object, a new adapter
    fresh = CDEEmbeddings.from_qdrant(client, "notes", model=str(V2_TINY), device="cpu")
    assert fresh.encoder is not v2_encoder_session
    assert fresh.context == built_with
    assert fresh.collection_name == "notes"
    stored = read_context(client, "notes")
    want = fresh.encoder.embed_queries([QUERY], stored)[0]
    np.testing.assert_array_equal(np.asarray(fresh.embed_query(QUERY), dtype=np.float32), want)
    np.testing.assert_array_equal(
        want, v2_encoder_session.embed_queries([QUERY], built_with)[0]
    )  # bit-identical to the context the documents were embedded with

    reopened = qdrant_vector_store(client, "notes", fresh)
    hits = reopened.similarity_search_with_score(TEXTS[2], k=3)
    assert hits[0][0].page_content == TEXTS[2]
    assert hits[0][0].metadata["n"] == 2
    doc = v2_encoder_session.embed_documents([TEXTS[2]], built_with)[0]
    direct = v2_encoder_session.embed_queries([TEXTS[2]], built_with)[0]
    assert hits[0][1] == pytest.approx(float(direct @ doc), abs=1e-5)
    # The bound embeddings also work with a plain langchain_qdrant store.
    plain = QdrantVectorStore(client, "notes", embedding=fresh)
    assert plain.similarity_search(TEXTS[2], k=1)[0].page_content == TEXTS[2]
    client.close()


def test_a_different_context_is_refused(
    store: CDEQdrantVectorStore, client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    other = v2_encoder_session.build_context(corpus_texts()[::-1], show_progress_bar=False)
    wrong = CDEEmbeddings(encoder=v2_encoder_session, context=other)
    with pytest.raises(ContextMismatchError, match="stores context"):
        qdrant_vector_store(client, "docs", wrong)
    with pytest.raises(ContextMismatchError, match="qdrant_vector_store"):
        CDEQdrantVectorStore(client, "docs", embedding=wrong)
    unbound = CDEEmbeddings(encoder=v2_encoder_session)
    CDEQdrantVectorStore(client, "docs", embedding=unbound)  # binds the stored context
    assert unbound.context == read_context(client, "docs")
    with pytest.raises(InvalidInputError, match="CDEEmbeddings"):
        CDEQdrantVectorStore(client, "docs", embedding=FakeEmbeddings(size=64))
    with pytest.raises(InvalidInputError, match="content_payload_key"):
        qdrant_vector_store(client, "docs", v2_encoder_session, content_payload_key="text")


def test_unbound_embeddings_fail_in_langchains_dummy_probe(
    store: CDEQdrantVectorStore, client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    with pytest.raises(ContextNotSetError, match="no corpus context"):
        QdrantVectorStore(client, "docs", embedding=CDEEmbeddings(encoder=v2_encoder_session))


def test_unbound_embeddings_are_bound_by_the_helper(
    store: CDEQdrantVectorStore, client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    given = CDEEmbeddings(encoder=v2_encoder_session, batch_size=3)
    opened = qdrant_vector_store(client, "docs", given)
    assert isinstance(opened.embeddings, CDEEmbeddings)
    assert opened.embeddings.context == store.embeddings.context  # type: ignore[union-attr]
    assert opened.embeddings.batch_size == 3
    assert opened.embeddings.encoder is v2_encoder_session
    assert given.context == read_context(client, "docs")  # bound in place


def test_payload_layout_and_cde_rag_reads_langchain_points(
    store: CDEQdrantVectorStore, client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    points, _ = client.scroll("docs", limit=100, with_vectors=True)
    assert len(points) == len(TEXTS)
    for point in points:
        payload = point.payload or {}
        assert set(payload) == {"page_content", "metadata", "cde_context", "cde_id"}
        assert payload["cde_context"] == store.fingerprint
        vector = v2_encoder_session.embed_documents(
            [payload["page_content"]], read_context(client, "docs")
        )[0]
        np.testing.assert_allclose(np.asarray(point.vector), vector, rtol=0, atol=1e-5)
    hits = ContextualCollection.open(client, "docs", v2_encoder_session).search(TEXTS[4], limit=1)
    assert hits[0].text == TEXTS[4]
    assert hits[0].metadata == {"n": 4}


def test_langchain_reads_points_written_by_cde_rag(
    client: QdrantClient, v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    collection = ContextualCollection.create(client, "kb", v2_encoder_session, context=v2_context)
    collection.add(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))])
    store = qdrant_vector_store(client, "kb", v2_encoder_session)
    doc, score = store.similarity_search_with_score(TEXTS[5], k=1)[0]
    assert (doc.page_content, doc.metadata["n"]) == (TEXTS[5], 5)
    assert score == pytest.approx(collection.search(TEXTS[5], limit=1)[0].score, abs=1e-6)
    mmr = store.max_marginal_relevance_search(TEXTS[5], k=2, fetch_k=4)
    assert mmr[0].page_content == TEXTS[5]


def test_searches_skip_points_without_this_context(
    store: CDEQdrantVectorStore, client: QdrantClient
) -> None:
    plain = QdrantVectorStore(client, "docs", embedding=store.embeddings)
    plain.add_texts(["an unstamped point written by plain LangChain"])
    assert len(plain.similarity_search(TEXTS[0], k=20)) == len(TEXTS) + 1
    found = store.similarity_search(TEXTS[0], k=20)
    assert len(found) == len(TEXTS)
    by_vector = store.similarity_search_by_vector(store.embeddings.embed_query(TEXTS[0]), k=20)  # type: ignore[union-attr]
    assert len(by_vector) == len(TEXTS)
    only_three = models.Filter(
        must=[models.FieldCondition(key="metadata.n", match=models.MatchValue(value=3))]
    )
    assert [d.page_content for d in store.similarity_search(QUERY, k=5, filter=only_three)] == [
        TEXTS[3]
    ]


def test_from_texts_creates_a_cde_collection(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    store = CDEQdrantVectorStore.from_texts(
        corpus_texts(),
        CDEEmbeddings(encoder=v2_encoder_session),
        client=client,
        collection_name="fitted",
    )
    stored = read_context(client, "fitted")
    assert stored == v2_encoder_session.build_context(corpus_texts(), show_progress_bar=False)
    assert store.fingerprint == stored.fingerprint
    assert store.embeddings is not None
    more = CDEQdrantVectorStore.from_documents(
        [Document(page_content="one more document about spices")],
        store.embeddings,
        client=client,
        collection_name="fitted",
    )
    assert more.fingerprint == stored.fingerprint
    assert client.count("fitted").count == len(corpus_texts()) + 1
    with pytest.raises(InvalidInputError, match="not both"):
        CDEQdrantVectorStore.from_texts(TEXTS, store.embeddings, client=client, path="/tmp/x")
    with pytest.raises(InvalidInputError, match="where is the Qdrant store"):
        CDEQdrantVectorStore.from_texts(TEXTS, store.embeddings)


def test_plain_collection_without_context_is_refused(
    client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    client.create_collection(
        "plain", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    with pytest.raises(ContextMissingError, match="no cde-rag context"):
        qdrant_vector_store(client, "plain", v2_encoder_session)


def test_recontextualized_collection_is_detected(
    store: CDEQdrantVectorStore,
    client: QdrantClient,
    v2_encoder_session: CDEEncoder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound = CDEEmbeddings.from_qdrant(client, "docs", encoder=v2_encoder_session)
    auto = CDEEmbeddings.from_qdrant(client, "docs", encoder=v2_encoder_session, on_stale="rebind")
    old = bound.context
    ContextualCollection.open(client, "docs", v2_encoder_session).recontextualize(seed=7)
    new = read_context(client, "docs")
    assert new != old

    with pytest.raises(ContextMismatchError, match=r"re-contextualized.*rebind\(\)"):
        bound.embed_query(QUERY)
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        store.similarity_search(QUERY)
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        store.add_texts(["written under the old context"])
    assert client.count("docs").count == len(TEXTS)  # nothing was written
    reopened = qdrant_vector_store(client, "docs", store.embeddings)  # type: ignore[arg-type]
    assert reopened.fingerprint == new.fingerprint
    assert reopened.similarity_search(TEXTS[1], k=1)[0].page_content == TEXTS[1]

    assert bound.rebind() == new
    want = v2_encoder_session.embed_queries([QUERY], new)[0]
    np.testing.assert_array_equal(np.asarray(bound.embed_query(QUERY), dtype=np.float32), want)
    with caplog.at_level(logging.WARNING, logger="cde_rag_langchain"):
        np.testing.assert_array_equal(np.asarray(auto.embed_query(QUERY), dtype=np.float32), want)
    assert "rebinding" in caplog.text
    assert auto.context == new
    fresh = qdrant_vector_store(client, "docs", bound)
    assert fresh.similarity_search(TEXTS[1], k=1)[0].page_content == TEXTS[1]


def test_check_stale_notices_rebound_embeddings(
    store: CDEQdrantVectorStore, v2_encoder_session: CDEEncoder
) -> None:
    store.check_stale()
    embeddings = store.embeddings
    assert isinstance(embeddings, CDEEmbeddings)
    embeddings.set_context(
        v2_encoder_session.build_context(corpus_texts()[::-1], show_progress_bar=False)
    )
    with pytest.raises(ContextMismatchError, match="now bound to context"):
        store.add_texts(["x"])


def test_model_is_taken_from_the_stored_provenance(
    store: CDEQdrantVectorStore, client: QdrantClient
) -> None:
    embeddings = CDEEmbeddings.from_qdrant(client, "docs", device="cpu")
    assert embeddings.model_name == str(V2_TINY.resolve())
    assert embeddings.context == store.embeddings.context  # type: ignore[union-attr]


def test_a_shared_encoder_serves_several_adapters(
    store: CDEQdrantVectorStore, client: QdrantClient, v2_encoder_session: CDEEncoder
) -> None:
    twin = copy.copy(v2_encoder_session)
    a = CDEEmbeddings.from_qdrant(client, "docs", encoder=twin)
    b = CDEEmbeddings.from_qdrant(client, "docs", encoder=twin)
    assert a.encoder is b.encoder is twin
    assert a.embed_query(QUERY) == b.embed_query(QUERY)


def test_from_texts_with_location_and_from_existing_collection_with_client(
    v2_encoder_session: CDEEncoder,
) -> None:
    store = CDEQdrantVectorStore.from_texts(
        TEXTS, CDEEmbeddings(encoder=v2_encoder_session), location=":memory:", collection_name="m"
    )
    fitted = read_context(store.client, "m")  # no context given: fitted on the texts
    assert fitted == v2_encoder_session.build_context(TEXTS, show_progress_bar=False)
    again = CDEQdrantVectorStore.from_existing_collection(
        "m", CDEEmbeddings(encoder=v2_encoder_session), client=store.client
    )
    assert again.fingerprint == fitted.fingerprint
    assert again.similarity_search(TEXTS[4], k=1)[0].page_content == TEXTS[4]

"""Interoperability: LangChain reads cde-rag collections as-is; one client per embedded store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant import ContextualCollection, StoreLockedError, connect
from tests.conftest import corpus_texts

TEXTS = corpus_texts()


class _Bound(Embeddings):
    """Minimal LangChain embeddings bound to a collection's stored context."""

    def __init__(self, encoder: CDEEncoder, context: CorpusContext) -> None:
        self.encoder, self.context = encoder, context

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self.encoder.embed_documents(texts, self.context, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        vector = self.encoder.embed_queries([text], self.context, show_progress_bar=False)[0]
        return [float(x) for x in vector]


def test_langchain_reads_a_cde_rag_collection_without_configuration(
    v2_encoder_session: CDEEncoder,
) -> None:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "lc", v2_encoder_session, corpus=TEXTS)
    col.add(TEXTS, metadatas=[{"i": i} for i in range(len(TEXTS))])
    store = QdrantVectorStore(
        client=client, collection_name="lc", embedding=_Bound(v2_encoder_session, col.context)
    )
    docs = store.similarity_search_with_score(TEXTS[6], k=3)
    ours = col.search(TEXTS[6], limit=3)
    assert [d.page_content for d, _ in docs] == [h.text for h in ours]
    assert docs[0][0].metadata["i"] == 6
    assert docs[0][0].metadata["_id"] == ours[0].id
    np.testing.assert_allclose([s for _, s in docs], [h.score for h in ours], atol=1e-6)
    assert all(d.page_content.strip() for d in store.similarity_search("anything", k=20))


def test_second_client_on_an_embedded_store_is_refused(tmp_path: Path) -> None:
    first = connect(tmp_path / "store")
    try:
        with pytest.raises(StoreLockedError, match="in use by another client or process"):
            connect(tmp_path / "store")
        with pytest.raises(RuntimeError):  # StoreLockedError is also a RuntimeError
            connect(tmp_path / "store")
    finally:
        first.close()
    connect(tmp_path / "store").close()  # free again once closed
    with pytest.raises(ValueError, match="exactly one"):
        connect(tmp_path / "store", url="http://localhost:6333")

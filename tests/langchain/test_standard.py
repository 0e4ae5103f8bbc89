"""LangChain's standard embeddings suites (langchain-tests) against CDEEmbeddings."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    VectorStoreIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_langchain import CDEEmbeddings, CDEQdrantVectorStore
from cde_rag_qdrant import ContextualCollection
from tests.conftest import V2_TINY, corpus_texts


@functools.cache
def tiny_encoder() -> CDEEncoder:
    """The v2-tiny checkpoint, loaded once per session."""
    return CDEEncoder.from_pretrained(V2_TINY, device="cpu")


@functools.cache
def tiny_context() -> CorpusContext:
    """A context from the v2-tiny checkpoint, built once per session."""
    return tiny_encoder().build_context(corpus_texts(), show_progress_bar=False)


class _Params:
    @property
    def embeddings_class(self) -> type[CDEEmbeddings]:
        return CDEEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": str(V2_TINY), "device": "cpu", "context": tiny_context()}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        env = {"CDE_RAG_MODEL": str(V2_TINY), "CDE_RAG_DEVICE": "cpu"}
        return env, {"context": tiny_context()}, {"model_name": str(V2_TINY), "device": "cpu"}


class TestCDEEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    """``EmbeddingsUnitTests``: construction from the parameters."""


class TestCDEEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    """``EmbeddingsIntegrationTests``: sync and async embedding of queries and documents."""


class TestCDEQdrantVectorStoreStandard(VectorStoreIntegrationTests):
    """``VectorStoreIntegrationTests`` (sync and async) against the cde-rag store."""

    @staticmethod
    def get_embeddings() -> CDEEmbeddings:
        return CDEEmbeddings(model=str(V2_TINY), device="cpu")

    @pytest.fixture
    def vectorstore(self) -> Iterator[CDEQdrantVectorStore]:
        client = QdrantClient(":memory:")
        embeddings = CDEEmbeddings(encoder=tiny_encoder())
        ContextualCollection.create(client, "standard", tiny_encoder(), context=tiny_context())
        yield CDEQdrantVectorStore(client, "standard", embeddings)
        client.close()


def test_init_from_env_reads_the_model_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """LangChain's ``init_from_env`` case: fields come from the environment when not given."""
    monkeypatch.setenv("CDE_RAG_MODEL", str(V2_TINY))
    monkeypatch.setenv("CDE_RAG_DEVICE", "cpu")
    embeddings = CDEEmbeddings(context=tiny_context())
    assert (embeddings.model_name, embeddings.device) == (str(V2_TINY), "cpu")
    assert len(embeddings.embed_query("spices")) == 64
    assert CDEEmbeddings(model="other").model_name == "other"  # explicit wins

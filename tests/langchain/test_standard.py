"""LangChain's standard embeddings suites (langchain-tests) against CDEEmbeddings."""

from __future__ import annotations

import functools
from typing import Any

from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_langchain import CDEEmbeddings
from tests.conftest import V2_TINY, corpus_texts


@functools.cache
def tiny_context() -> CorpusContext:
    """A context from the v2-tiny checkpoint, built once per session."""
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    return encoder.build_context(corpus_texts(), show_progress_bar=False)


class _Params:
    @property
    def embeddings_class(self) -> type[CDEEmbeddings]:
        return CDEEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": str(V2_TINY), "device": "cpu", "context": tiny_context()}


class TestCDEEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    """``EmbeddingsUnitTests``: construction from the parameters."""


class TestCDEEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    """``EmbeddingsIntegrationTests``: sync and async embedding of queries and documents."""

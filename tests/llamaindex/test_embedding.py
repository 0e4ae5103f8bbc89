"""CDEEmbedding: LlamaIndex contract, prefixes, batching, cache refusal, async behaviour."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.core.storage.kvstore import SimpleKVStore

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, ContextNotSetError, InvalidInputError
from cde_rag_llamaindex import CDEEmbedding
from tests.conftest import V2_TINY, corpus_texts

QUERY = "how do I toast spices?"
ROOT = Path(__file__).resolve().parents[2]


def test_class_name_and_fields(v2_context: CorpusContext) -> None:
    embed_model = CDEEmbedding(model_name=str(V2_TINY), device="cpu", context=v2_context)
    assert CDEEmbedding.class_name() == "CDEEmbedding"
    assert embed_model.to_dict()["class_name"] == "CDEEmbedding"
    assert embed_model.embed_batch_size == 32
    assert not embed_model.core.loaded  # loaded on first use
    assert len(embed_model.get_query_embedding(QUERY)) == 64


def test_no_context_refuses_with_the_fix(v2_encoder_session: CDEEncoder) -> None:
    embed_model = CDEEmbedding(encoder=v2_encoder_session)
    with pytest.raises(ContextNotSetError, match=r"set_context.*fit\(corpus\).*from_qdrant"):
        embed_model.get_query_embedding(QUERY)
    strict = CDEEmbedding(encoder=v2_encoder_session, auto_fit=False)
    with pytest.raises(ContextNotSetError):
        strict.get_text_embedding_batch(["a", "b"])
    assert embed_model.context is None  # a query never fits a context


def test_query_and_text_use_their_prefixes(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    embed_model = CDEEmbedding(encoder=v2_encoder_session, context=v2_context)
    docs = corpus_texts()[:3]
    query = np.asarray(embed_model.get_query_embedding(QUERY), dtype=np.float32)
    text = np.asarray(embed_model.get_text_embedding(docs[0]), dtype=np.float32)
    batch = np.asarray(embed_model.get_text_embedding_batch(docs), dtype=np.float32)
    np.testing.assert_array_equal(query, v2_encoder_session.embed_queries([QUERY], v2_context)[0])
    np.testing.assert_array_equal(text, v2_encoder_session.embed_documents(docs[:1], v2_context)[0])
    np.testing.assert_allclose(
        batch, v2_encoder_session.embed_documents(docs, v2_context), rtol=0, atol=1e-6
    )
    assert not np.allclose(query, embed_model.get_text_embedding(QUERY))  # different prefix


def test_batches_follow_embed_batch_size(
    v2_encoder: CDEEncoder, v2_context: CorpusContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    real = v2_encoder.embed_documents

    def spy(texts: Any, context: CorpusContext, **kwargs: Any) -> Any:
        seen.append((len(texts), kwargs["batch_size"]))
        return real(texts, context, **kwargs)

    monkeypatch.setattr(v2_encoder, "embed_documents", spy)
    embed_model = CDEEmbedding(encoder=v2_encoder, context=v2_context, embed_batch_size=2)
    vectors = embed_model.get_text_embedding_batch(corpus_texts()[:5])
    assert len(vectors) == 5
    assert seen == [(2, 2), (2, 2), (1, 2)]


def test_nodes_are_embedded_as_documents_with_their_metadata(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    embed_model = CDEEmbedding(encoder=v2_encoder_session, context=v2_context)
    node = TextNode(text="Toast the cumin seeds.", metadata={"topic": "cooking"})
    (embedded,) = embed_model([node])
    text = node.get_content(metadata_mode=MetadataMode.EMBED)
    assert text == "topic: cooking\n\nToast the cumin seeds."
    np.testing.assert_array_equal(
        np.asarray(embedded.embedding, dtype=np.float32),
        v2_encoder_session.embed_documents([text], v2_context)[0],
    )


def test_embeddings_cache_is_refused(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    with pytest.raises(InvalidInputError, match="keys that cache by text alone"):
        CDEEmbedding(encoder=v2_encoder_session, embeddings_cache=SimpleKVStore())
    embed_model = CDEEmbedding(encoder=v2_encoder_session, context=v2_context)
    with pytest.raises(InvalidInputError, match="embeddings_cache=None"):
        embed_model.embeddings_cache = SimpleKVStore()
    assert embed_model.embeddings_cache is None
    embed_model.embeddings_cache = None  # explicitly off is fine


def test_encoder_fields_context_and_fit(
    v2_encoder_session: CDEEncoder, v1_context: CorpusContext
) -> None:
    with pytest.raises(InvalidInputError, match="model_name"):
        CDEEmbedding(encoder=v2_encoder_session, model_name="other")
    with pytest.raises(ContextMismatchError, match="build a new context"):
        CDEEmbedding(encoder=v2_encoder_session, context=v1_context)
    fitted = CDEEmbedding(encoder=v2_encoder_session).fit(corpus_texts())
    assert fitted.context == v2_encoder_session.build_context(
        corpus_texts(), show_progress_bar=False
    )
    assert fitted.model_name == v2_encoder_session.identity.model_id


async def test_concurrent_async_calls_match_sync(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    embed_model = CDEEmbedding(encoder=v2_encoder_session, context=v2_context, embed_batch_size=2)
    texts = corpus_texts()[:6]
    queries, batch, single = await asyncio.gather(
        asyncio.gather(*(embed_model.aget_query_embedding(t) for t in texts)),
        embed_model.aget_text_embedding_batch(texts),  # 3 batches, gathered concurrently
        embed_model.aget_text_embedding(texts[0]),
    )
    assert list(queries) == [embed_model.get_query_embedding(t) for t in texts]
    np.testing.assert_allclose(
        np.asarray(batch), np.asarray(embed_model.get_text_embedding_batch(texts)), atol=1e-6
    )
    assert single == embed_model.get_text_embedding(texts[0])


async def test_async_calls_do_not_block_the_event_loop(
    v2_encoder: CDEEncoder, v2_context: CorpusContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model call blocks until the event loop releases it: only a worker thread can wait.

    Run on the loop's own thread, the call would hold the loop, the loop could never set
    ``release``, and the call fails after the bound below (a failure bound, not a timing).
    """
    real = v2_encoder.embed_documents
    started, release = threading.Event(), threading.Event()
    callers: list[int] = []

    def gated(texts: Any, context: CorpusContext, **kwargs: Any) -> Any:
        callers.append(threading.get_ident())
        started.set()
        if not release.wait(timeout=60):
            msg = "the event loop never ran while the model was busy: it is blocked"
            raise AssertionError(msg)
        return real(texts, context, **kwargs)

    monkeypatch.setattr(v2_encoder, "embed_documents", gated)
    embed_model = CDEEmbedding(encoder=v2_encoder, context=v2_context, embed_batch_size=1)
    work = asyncio.ensure_future(embed_model.aget_text_embedding_batch(["a", "b"]))
    assert await asyncio.to_thread(started.wait, 60)  # the model call is in progress ...
    release.set()  # ... and the loop, still running, lets it finish
    results = await work
    assert len(results) == 2 and all(len(r) == v2_encoder.dim for r in results)
    assert callers and threading.main_thread().ident not in callers


def test_missing_extra_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules['llama_index.vector_stores.qdrant'] = None\n"
        "from cde_rag.errors import OptionalDependencyError\n"
        "try:\n    import cde_rag_llamaindex\n"
        "except OptionalDependencyError as exc:\n    print(exc.extra, '|', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.startswith("llamaindex |")
    assert "pip install 'cde-rag[llamaindex]'" in out


def test_public_api_is_pinned() -> None:
    import cde_rag_llamaindex

    assert cde_rag_llamaindex.__all__ == [
        "CDEEmbedding",
        "CDEQdrantVectorStore",
        "create_qdrant_store",
        "open_qdrant_store",
        "read_nodes",
    ]

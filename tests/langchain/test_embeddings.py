"""CDEEmbeddings: context binding, numerics against the core, errors, async behaviour."""

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
from pydantic import ValidationError

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import (
    ContextMismatchError,
    ContextNotSetError,
    InvalidInputError,
)
from cde_rag_langchain import CDEEmbeddings
from tests.conftest import V2_TINY, corpus_texts

QUERY = "how do I toast spices?"
ROOT = Path(__file__).resolve().parents[2]


def test_no_context_refuses_with_the_fix(v2_encoder_session: CDEEncoder) -> None:
    embeddings = CDEEmbeddings(encoder=v2_encoder_session)
    for call in (
        lambda: embeddings.embed_query(QUERY),
        lambda: embeddings.embed_documents(["dummy_text"]),
        lambda: asyncio.run(embeddings.aembed_query(QUERY)),
    ):
        with pytest.raises(ContextNotSetError, match=r"set_context.*fit\(corpus\).*from_qdrant"):
            call()


def test_vectors_equal_the_core_under_the_context(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    embeddings = CDEEmbeddings(encoder=v2_encoder_session, context=v2_context)
    docs = corpus_texts()[:3]
    got_docs = embeddings.embed_documents(docs)
    got_query = embeddings.embed_query(QUERY)
    assert all(type(x) is float for row in got_docs for x in row)
    assert all(type(x) is float for x in got_query)
    want_docs = v2_encoder_session.embed_documents(docs, v2_context)
    want_query = v2_encoder_session.embed_queries([QUERY], v2_context)[0]
    np.testing.assert_array_equal(np.asarray(got_docs, dtype=np.float32), want_docs)
    np.testing.assert_array_equal(np.asarray(got_query, dtype=np.float32), want_query)
    assert embeddings.embed_documents([]) == []


def test_lazy_load_from_model_alias_and_fields(v2_context: CorpusContext) -> None:
    embeddings = CDEEmbeddings(
        model=str(V2_TINY), device="cpu", batch_size=2, normalize=False, context=v2_context
    )
    assert embeddings.model_name == str(V2_TINY)
    assert not embeddings.core.loaded  # loaded on first use
    vectors = np.asarray(embeddings.embed_documents(corpus_texts()[:3]))
    assert bool(embeddings.core.loaded)  # bool(): mypy would keep the narrowing above
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)  # normalize=False honoured
    raw = embeddings.encoder.embed_documents(corpus_texts()[:3], v2_context, normalize=False)
    np.testing.assert_allclose(vectors, raw, rtol=0, atol=1e-6)
    assert CDEEmbeddings(model_name="x").model_name == "x"  # populate_by_name


def test_unknown_fields_are_forbidden() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CDEEmbeddings(model_kwargz={"device": "cpu"})


def test_fit_builds_and_binds(v2_encoder_session: CDEEncoder) -> None:
    embeddings = CDEEmbeddings(encoder=v2_encoder_session).fit(corpus_texts(), seed=0)
    expected = v2_encoder_session.build_context(corpus_texts(), seed=0, show_progress_bar=False)
    assert embeddings.context == expected
    assert embeddings.fingerprint == expected.fingerprint
    assert embeddings.collection_name is None


def test_encoder_with_model_fields_is_ambiguous(v2_encoder_session: CDEEncoder) -> None:
    with pytest.raises(InvalidInputError, match="device, model"):
        CDEEmbeddings(encoder=v2_encoder_session, model="other", device="cpu")
    with pytest.raises(InvalidInputError, match="max_length"):
        CDEEmbeddings(encoder=v2_encoder_session, max_length=7)


def test_context_from_another_model_is_refused(
    v2_encoder_session: CDEEncoder, v1_context: CorpusContext
) -> None:
    with pytest.raises(ContextMismatchError, match="build a new context"):
        CDEEmbeddings(encoder=v2_encoder_session, context=v1_context)
    with pytest.raises(InvalidInputError, match="CorpusContext"):
        CDEEmbeddings(encoder=v2_encoder_session).set_context("not a context")  # type: ignore[arg-type]


def test_bad_texts_are_refused(v2_encoder_session: CDEEncoder, v2_context: CorpusContext) -> None:
    embeddings = CDEEmbeddings(encoder=v2_encoder_session, context=v2_context)
    with pytest.raises(InvalidInputError, match="empty or whitespace-only"):
        embeddings.embed_documents(["fine", "  "])
    with pytest.raises(InvalidInputError, match="empty or whitespace-only"):
        embeddings.embed_query("")


def test_dummy_text_probe_is_memoised_per_context(
    v2_encoder: CDEEncoder, v2_context: CorpusContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = v2_encoder.embed_documents

    def counting(texts: Any, context: CorpusContext, **kwargs: Any) -> Any:
        calls.append(len(texts))
        return real(texts, context, **kwargs)

    monkeypatch.setattr(v2_encoder, "embed_documents", counting)
    embeddings = CDEEmbeddings(encoder=v2_encoder, context=v2_context)
    first = embeddings.embed_documents(["dummy_text"])
    second = embeddings.embed_documents(["dummy_text"])
    assert first == second
    assert calls == [1]  # the second probe (langchain_qdrant does one per store) is free
    second[0][0] = 99.0  # callers cannot corrupt the memo
    assert embeddings.embed_documents(["dummy_text"]) == first
    other = v2_encoder.build_context(corpus_texts()[::-1], show_progress_bar=False)
    embeddings.set_context(other)
    assert embeddings.embed_documents(["dummy_text"]) != first
    assert calls == [1, 1]


async def test_concurrent_async_calls_match_sync(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    embeddings = CDEEmbeddings(encoder=v2_encoder_session, context=v2_context)
    texts = corpus_texts()[:6]
    results: list[Any] = await asyncio.gather(
        *(embeddings.aembed_query(t) for t in texts),
        *(embeddings.aembed_documents([t]) for t in texts),
        embeddings.aembed_documents(texts),
    )
    queries, singles, batch = results[:6], results[6:12], results[12]
    assert queries == [embeddings.embed_query(t) for t in texts]
    np.testing.assert_allclose(
        np.asarray([s[0] for s in singles]), np.asarray(batch), rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(batch), np.asarray(embeddings.embed_documents(texts)), rtol=0, atol=1e-6
    )


async def test_async_calls_do_not_block_the_event_loop(
    v2_encoder: CDEEncoder, v2_context: CorpusContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model call blocks until the event loop releases it: only a worker thread can wait.

    Run on the loop's own thread, the call would hold the loop, the loop could never set
    ``release``, and the call fails after the bound below (a failure bound, not a timing).
    """
    real = v2_encoder.embed_queries
    started, release = threading.Event(), threading.Event()
    callers: list[int] = []

    def gated(texts: Any, context: CorpusContext, **kwargs: Any) -> Any:
        callers.append(threading.get_ident())
        started.set()
        if not release.wait(timeout=60):
            msg = "the event loop never ran while the model was busy: it is blocked"
            raise AssertionError(msg)
        return real(texts, context, **kwargs)

    monkeypatch.setattr(v2_encoder, "embed_queries", gated)
    embeddings = CDEEmbeddings(encoder=v2_encoder, context=v2_context)
    work = asyncio.gather(embeddings.aembed_query("a"), embeddings.aembed_query("b"))
    assert await asyncio.to_thread(started.wait, 60)  # the model call is in progress ...
    release.set()  # ... and the loop, still running, lets it finish
    results = await work
    assert len(results) == 2 and all(len(r) == v2_encoder.dim for r in results)
    assert callers and threading.main_thread().ident not in callers


def test_missing_extra_names_the_pip_command() -> None:
    code = (
        "import sys; sys.modules['langchain_qdrant'] = None\n"
        "from cde_rag.errors import OptionalDependencyError\n"
        "try:\n    import cde_rag_langchain\n"
        "except OptionalDependencyError as exc:\n    print(exc.extra, '|', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.startswith("langchain |")
    assert "langchain_qdrant is missing" in out
    assert "pip install 'cde-rag[langchain]'" in out


def test_v1_model_with_its_context(
    v1_encoder_session: CDEEncoder, v1_context: CorpusContext
) -> None:
    embeddings = CDEEmbeddings(encoder=v1_encoder_session, context=v1_context)
    got = np.asarray(embeddings.embed_query(QUERY), dtype=np.float32)
    np.testing.assert_array_equal(got, v1_encoder_session.embed_queries([QUERY], v1_context)[0])
    assert len(got) == v1_encoder_session.dim


def test_public_api_is_pinned() -> None:
    import cde_rag_langchain

    assert cde_rag_langchain.__all__ == [
        "CDEEmbeddings",
        "CDEQdrantVectorStore",
        "CDESparseEmbeddings",
        "create_qdrant_vector_store",
        "qdrant_vector_store",
    ]

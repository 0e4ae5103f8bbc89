"""Behaviours of the binding core, checked through both adapters (parametrized)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError
from cde_rag_qdrant import ContextualCollection, read_context
from tests.conftest import V2_TINY, corpus_texts

TEXTS = corpus_texts()[:8]


@dataclass
class Adapter:
    """Host glue of one framework, as a user would call it."""

    name: str
    embeddings: Callable[..., Any]  # CDEEmbeddings / CDEEmbedding
    open: Callable[[QdrantClient, str, Any], Any]  # framework store over an existing collection
    search: Callable[[Any, str, int], list[str]]  # texts of the hits
    add: Callable[[Any, list[str]], None]
    embed_query: Callable[[Any, str], list[float]]


def _langchain() -> Adapter:
    from cde_rag_langchain import CDEEmbeddings, CDEQdrantVectorStore

    return Adapter(
        "langchain",
        CDEEmbeddings,
        lambda client, name, emb: CDEQdrantVectorStore(client, name, emb),
        lambda store, q, k: [d.page_content for d in store.similarity_search(q, k=k)],
        lambda store, texts: store.add_texts(texts),
        lambda emb, q: emb.embed_query(q),
    )


def _llamaindex() -> Adapter:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode

    from cde_rag_llamaindex import CDEEmbedding, CDEQdrantVectorStore

    def search(store: Any, q: str, k: int) -> list[str]:
        index = VectorStoreIndex.from_vector_store(store, embed_model=store._cde_embed_model)
        return [h.node.get_content() for h in index.as_retriever(similarity_top_k=k).retrieve(q)]

    def add(store: Any, texts: list[str]) -> None:
        model = store._cde_embed_model
        store.add([TextNode(text=t, embedding=model.get_text_embedding(t)) for t in texts])

    return Adapter(
        "llamaindex",
        CDEEmbedding,
        lambda client, name, emb: CDEQdrantVectorStore(name, client, embed_model=emb),
        search,
        add,
        lambda emb, q: emb.get_query_embedding(q),
    )


@pytest.fixture(params=["langchain", "llamaindex"])
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return _langchain() if request.param == "langchain" else _llamaindex()


@pytest.fixture
def collection(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> tuple[QdrantClient, ContextualCollection]:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "docs", v2_encoder_session, context=v2_context)
    col.add(TEXTS)
    return client, col


def count_requests(client: QdrantClient) -> Counter[str]:
    """Count the client calls that reach Qdrant (wrapping the instance's methods)."""
    calls: Counter[str] = Counter()
    for method in ("query_points", "get_aliases", "get_collection", "collection_exists", "count"):
        real = getattr(client, method)

        def wrapped(*args: Any, _real: Any = real, _name: str = method, **kw: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kw)

        setattr(client, method, wrapped)
    return calls


def test_requests_per_query_and_detection(
    adapter: Adapter,
    collection: tuple[QdrantClient, ContextualCollection],
    v2_encoder_session: CDEEncoder,
) -> None:
    client, col = collection
    emb = adapter.embeddings(encoder=v2_encoder_session)
    store = adapter.open(client, "docs", emb)
    calls = count_requests(client)
    assert adapter.search(store, TEXTS[3], 4)[0] == TEXTS[3]
    full = sum(calls.values())
    calls.clear()
    adapter.search(store, TEXTS[3], 50)  # fewer hits than asked: the alias is resolved once
    short = sum(calls.values())
    print(f"\n{adapter.name}: requests per query: {full} (full result), {short} (short result)")
    print(f"{adapter.name}: before this change: 3 (2 alias look-ups + 1 search)")
    assert full == 1
    assert calls["query_points"] == 1
    assert short == 2
    col.recontextualize(seed=5)
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        adapter.search(store, TEXTS[3], 4)
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        adapter.search(store, TEXTS[3], 4)  # and again: the stale binding stays refused
    with pytest.raises(ContextMismatchError, match="re-contextualized"):
        adapter.add(store, ["written under the old context"])


def test_rebind_policy_follows_the_collection(
    adapter: Adapter,
    collection: tuple[QdrantClient, ContextualCollection],
    v2_encoder_session: CDEEncoder,
) -> None:
    client, col = collection
    emb = adapter.embeddings(encoder=v2_encoder_session, on_stale="rebind")
    store = adapter.open(client, "docs", emb)
    col.recontextualize(seed=5)
    new = read_context(client, "docs")
    assert adapter.search(store, TEXTS[2], 3)[0] == TEXTS[2]  # rebound, searched again
    assert emb.context == new
    want = v2_encoder_session.embed_queries([TEXTS[1]], new)[0]
    got = np.asarray(adapter.embed_query(emb, TEXTS[1]), dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    adapter.add(store, ["added after the rebind"])
    assert col.count() == len(TEXTS) + 1  # stamped with the new context: searchable


def test_embeddings_bound_elsewhere_are_refused(
    adapter: Adapter,
    collection: tuple[QdrantClient, ContextualCollection],
    v2_encoder_session: CDEEncoder,
) -> None:
    client, _ = collection
    other = v2_encoder_session.build_context(TEXTS[::-1], show_progress_bar=False)
    with pytest.raises(ContextMismatchError, match="not comparable"):
        adapter.open(client, "docs", adapter.embeddings(encoder=v2_encoder_session, context=other))
    emb = adapter.embeddings(encoder=v2_encoder_session)
    store = adapter.open(client, "docs", emb)
    emb.set_context(other)  # re-bound after pairing: the store refuses to go on
    with pytest.raises(ContextMismatchError, match="now bound to context"):
        adapter.add(store, ["x"])


def test_familiar_options_are_honoured_or_refused(adapter: Adapter, v2_context: Any) -> None:
    folder = str(V2_TINY)
    opts: dict[str, Any] = {"model_name": folder, "context": v2_context}
    emb = adapter.embeddings(**opts, model_kwargs={"device": "cpu", "torch_dtype": "float32"})
    assert emb.core.load_options["device"] == "cpu"
    with pytest.raises(InvalidInputError, match=r"trust_remote_code=True is not needed"):
        adapter.embeddings(**opts, model_kwargs={"trust_remote_code": True})
    with pytest.raises(InvalidInputError, match="no meaning for cde-rag"):
        adapter.embeddings(**opts, model_kwargs={"attn_implementation": "sdpa"})
    with pytest.raises(InvalidInputError, match=r"dtype=\x27int8\x27"):
        adapter.embeddings(**opts, dtype="int8")
    with pytest.raises(Exception, match=r"extra|not permitted"):
        adapter.embeddings(**opts, backend="onnx")
    emb = adapter.embeddings(**opts, cache_folder="/nonexistent/hf-cache")
    assert emb.core.load_options["cache_folder"] == "/nonexistent/hf-cache"
    if adapter.name == "langchain":
        with pytest.raises(InvalidInputError, match="multi_process=True"):
            adapter.embeddings(**opts, multi_process=True)
        with pytest.raises(InvalidInputError, match="no meaning"):
            adapter.embeddings(**opts, encode_kwargs={"convert_to_tensor": True})
        prompted = adapter.embeddings(**opts, query_encode_kwargs={"prompt": "query: "})
        plain = adapter.embeddings(**opts, query_encode_kwargs={"normalize_embeddings": False})
        q = "toast the spices"
        want = prompted.encoder.embed_queries([q], v2_context, prefix="query: ")[0]
        np.testing.assert_allclose(prompted.embed_query(q), want, atol=1e-6)
        raw = plain.encoder.embed_queries([q], v2_context, normalize=False)[0]
        np.testing.assert_allclose(plain.embed_query(q), raw, atol=1e-6)
    else:
        prompted = adapter.embeddings(**opts, query_instruction="query: ")
        q = "toast the spices"
        want = prompted.encoder.embed_queries([q], v2_context, prefix="query: ")[0]
        np.testing.assert_allclose(prompted.get_query_embedding(q), want, atol=1e-6)


def test_instruction_differing_from_the_collection_is_refused(
    adapter: Adapter, collection: tuple[QdrantClient, ContextualCollection]
) -> None:
    client, _ = collection
    key = "query_instruction" if adapter.name == "llamaindex" else "query_encode_kwargs"
    value: Any = "query: " if adapter.name == "llamaindex" else {"prompt": "query: "}
    emb = adapter.embeddings(model_name=str(V2_TINY), device="cpu", **{key: value})
    with pytest.raises(InvalidInputError, match="not be comparable"):
        adapter.open(client, "docs", emb)


def test_a_bare_string_is_refused_not_split_into_characters(
    adapter: Adapter, collection: tuple[QdrantClient, ContextualCollection]
) -> None:
    client, col = collection
    store = adapter.open(client, "docs", adapter.embeddings(model_name=str(V2_TINY), device="cpu"))
    call: Callable[[], object] = (
        (lambda: store.add_texts("abc"))
        if adapter.name == "langchain"
        else (lambda: store._query_model().get_text_embedding_batch("abc"))
    )
    with pytest.raises(InvalidInputError, match="not a single str"):
        call()
    assert col.count() == len(TEXTS)

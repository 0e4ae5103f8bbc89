"""Real OpenAI-compatible clients against a real ``cde-rag serve`` on loopback.

Every vector must equal ``CDEEncoder.embed_queries`` / ``embed_documents`` under the served
collection's (or context file's) context, to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from cde_rag import CDEEncoder
from tests.server.conftest import API_KEY, TEXTS, Served

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])  # loopback only: no downloads

QUERIES = ["which volcano erupted?", "how do plants grow", "tell me about the ocean"]
DOCS = TEXTS[:7]


def _close(got: object, want: np.ndarray) -> None:
    array = np.asarray(got, dtype=np.float64)
    assert array.shape == want.shape
    assert np.abs(array - want).max() <= 1e-6


def test_openai_client_queries_documents_and_formats(
    served: Served, v2_encoder_session: CDEEncoder
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=served.url + "/v1", api_key=API_KEY, max_retries=0)
    enc = v2_encoder_session
    want_q = enc.embed_queries(QUERIES, served.notes, prefix=served.query_prefix)
    want_d = enc.embed_documents(DOCS, served.notes, prefix=served.document_prefix)
    # the client asks for base64 by default and decodes it; float on request
    got = client.embeddings.create(model="notes:query", input=QUERIES)
    _close([d.embedding for d in got.data], want_q)
    assert [d.index for d in got.data] == [0, 1, 2]
    assert got.model == "notes:query"
    n_tokens = sum(
        len(x) for x in enc.tokenizer.encode([served.query_prefix + q for q in QUERIES], 512)[0]
    )
    assert got.usage.prompt_tokens == got.usage.total_tokens == n_tokens
    got = client.embeddings.create(
        model="notes", input=QUERIES, encoding_format="float", extra_body={"input_type": "query"}
    )
    _close([d.embedding for d in got.data], want_q)
    got = client.embeddings.create(model="notes:document", input=DOCS, encoding_format="float")
    _close([d.embedding for d in got.data], want_d)
    # no suffix, no input_type: documents (the documented default)
    got = client.embeddings.create(model="notes", input=DOCS[0], user="someone")
    _close([got.data[0].embedding], want_d[:1])
    # a context file, chosen by name
    want_kb = enc.embed_queries(QUERIES, served.kb)
    got = client.embeddings.create(model="kb:query", input=QUERIES)
    _close([d.embedding for d in got.data], want_kb)
    assert np.abs(want_kb - want_q).max() > 1e-3  # the contexts really differ
    models = {m.id for m in client.models.list()}
    assert {"notes", "notes:query", "notes:document", "kb", "kb:query", "kb:document"} <= models


def test_langchain_openai_embeddings(served: Served, v2_encoder_session: CDEEncoder) -> None:
    from langchain_openai import OpenAIEmbeddings

    kw = {"base_url": served.url + "/v1", "api_key": API_KEY, "max_retries": 0}
    queries = OpenAIEmbeddings(model="notes:query", check_embedding_ctx_length=False, **kw)  # type: ignore[arg-type]
    docs = OpenAIEmbeddings(model="notes:document", check_embedding_ctx_length=False, **kw)  # type: ignore[arg-type]
    enc = v2_encoder_session
    _close([queries.embed_query(QUERIES[0])], enc.embed_queries(QUERIES[:1], served.notes))
    _close(docs.embed_documents(DOCS), enc.embed_documents(DOCS, served.notes))


async def test_langchain_openai_embeddings_async(
    served: Served, v2_encoder_session: CDEEncoder
) -> None:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(
        model="notes:query",
        base_url=served.url + "/v1",
        api_key=API_KEY,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    got = await emb.aembed_documents(QUERIES)
    _close(got, v2_encoder_session.embed_queries(QUERIES, served.notes))


def test_llamaindex_openai_embedding(served: Served, v2_encoder_session: CDEEncoder) -> None:
    from llama_index.embeddings.openai import OpenAIEmbedding
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    enc = v2_encoder_session
    base = served.url + "/v1"
    like_q = OpenAILikeEmbedding(model_name="notes:query", api_base=base, api_key=API_KEY)
    like_d = OpenAILikeEmbedding(model_name="notes:document", api_base=base, api_key=API_KEY)
    _close([like_q.get_query_embedding(QUERIES[1])], enc.embed_queries(QUERIES[1:2], served.notes))
    _close(like_d.get_text_embedding_batch(DOCS), enc.embed_documents(DOCS, served.notes))
    plain = OpenAIEmbedding(model_name="kb:document", api_base=base, api_key=API_KEY, max_retries=0)
    _close(plain.get_text_embedding_batch(DOCS), enc.embed_documents(DOCS, served.kb))

"""The app in-process (Starlette's TestClient, no sockets): routes, contexts, settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant import CollectionNotFoundError, ContextualCollection
from cde_rag_qdrant.server import ContextRegistry, ServerSettings, create_app
from tests.conftest import corpus_texts

TEXTS = corpus_texts()


@pytest.fixture
def store(v2_encoder_session: CDEEncoder) -> Iterator[tuple[QdrantClient, ContextualCollection]]:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(
        client, "notes", v2_encoder_session, corpus=TEXTS[:12], show_progress_bar=False
    )
    col.add(TEXTS[:12], show_progress_bar=False)
    yield client, col
    client.close()


def _app(encoder: CDEEncoder, client: QdrantClient, **settings: object) -> TestClient:
    registry = ContextRegistry.load(encoder, client)
    return TestClient(create_app(encoder, registry, ServerSettings(**settings)))  # type: ignore[arg-type]


def _vectors(response: object) -> np.ndarray:
    data = response.json()["data"]  # type: ignore[attr-defined]
    return np.array([d["embedding"] for d in data])


def test_documents_route_stores_what_embed_documents_computes(
    store: tuple[QdrantClient, ContextualCollection], v2_encoder_session: CDEEncoder
) -> None:
    client, col = store
    docs = [
        {"id": "n1", "text": TEXTS[12], "metadata": {"topic": "a"}},
        {"id": "n2", "text": TEXTS[13], "metadata": {"topic": "b", "n": 2}},
    ]
    with _app(v2_encoder_session, client) as http:
        response = http.post("/collections/notes/documents", json={"documents": docs})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["documents"] == {"added": 2, "updated": 0, "unchanged": 0}
        assert body["chunks"]["added"] == body["chunks"]["embedded"] == 2  # short: one chunk each
        assert body["points"] == 14 and body["fingerprint"] == col.fingerprint
        again = http.post("/collections/notes/documents", json={"documents": docs}).json()
        assert again["points"] == 14  # the same ingest as the CLI: a re-send changes nothing
        assert again["documents"]["unchanged"] == 2 and again["chunks"]["embedded"] == 0
        by_doc = models.Filter(
            must=[
                models.FieldCondition(
                    key="metadata.document_id", match=models.MatchAny(any=["n1", "n2"])
                )
            ]
        )
        stored, _ = client.scroll(
            "notes", scroll_filter=by_doc, with_vectors=True, with_payload=True
        )
        got = {(p.payload or {})["metadata"]["document_id"]: p.vector for p in stored}
        want = v2_encoder_session.embed_documents([TEXTS[12], TEXTS[13]], col.context)
        assert np.abs(np.array([got["n1"], got["n2"]]) - want).max() <= 1e-6
        hits = http.post(
            "/collections/notes/search", json={"query": TEXTS[13], "filter": {"topic": "b"}}
        ).json()["hits"]
        assert len(hits) == 1 and hits[0]["metadata"]["document_id"] == "n2"
        assert {k: hits[0]["metadata"][k] for k in ("topic", "n")} == {"topic": "b", "n": 2}
        flt = {"must": [{"key": "metadata.topic", "match": {"any": ["a", "b"]}}]}
        hits = http.post(
            "/collections/notes/search", json={"query": TEXTS[12], "limit": 5, "filter": flt}
        ).json()["hits"]
        assert {h["text"] for h in hits} == {TEXTS[12], TEXTS[13]}
        top = http.post("/collections/notes/search", json={"query": TEXTS[3], "limit": 3}).json()
        assert top["hits"][0]["text"] == TEXTS[3]
        assert top["hits"] == [
            {"id": h.id, "score": pytest.approx(h.score, abs=1e-6), "text": h.text,
             "metadata": h.metadata}
            for h in col.search(TEXTS[3], limit=3)
        ]  # fmt: skip


def test_a_recontextualized_collection_is_served_with_its_new_context(
    store: tuple[QdrantClient, ContextualCollection], v2_encoder_session: CDEEncoder
) -> None:
    client, col = store
    body = {"model": "notes:query", "input": ["where is the lighthouse?"]}
    with _app(v2_encoder_session, client) as http:
        before = _vectors(http.post("/v1/embeddings", json=body))
        old = col.fingerprint
        col.recontextualize(seed=7, show_progress_bar=False)  # the alias moves
        assert col.fingerprint != old
        after = _vectors(http.post("/v1/embeddings", json=body))
        want = v2_encoder_session.embed_queries(body["input"], col.context)
        assert np.abs(after - want).max() <= 1e-6
        assert np.abs(after - before).max() > 1e-4
        cards = http.get("/v1/models").json()["data"]
        assert {c["fingerprint"] for c in cards} == {col.fingerprint}
        hits = http.post("/collections/notes/search", json={"query": TEXTS[5]}).json()
        assert hits["fingerprint"] == col.fingerprint and hits["hits"][0]["text"] == TEXTS[5]
        metrics = http.get("/metrics").text
        assert 'cde_rag_context_reloads_total{model="notes"} 1.0' in metrics


def test_settings_default_input_type_truncate_and_open_health(
    store: tuple[QdrantClient, ContextualCollection], v2_encoder_session: CDEEncoder
) -> None:
    client, col = store
    long_text = "lighthouse keeper " * 400
    settings = {"default_input_type": "query", "truncate": True, "api_keys": ("k",)}
    with _app(v2_encoder_session, client, **settings) as http:
        auth = {"Authorization": "Bearer k"}
        got = _vectors(
            http.post("/v1/embeddings", json={"model": "notes", "input": "hi"}, headers=auth)
        )
        assert np.abs(got - v2_encoder_session.embed_queries(["hi"], col.context)).max() <= 1e-6
        response = http.post(
            "/v1/embeddings", json={"model": "notes", "input": long_text}, headers=auth
        )
        assert response.status_code == 200
        assert response.json()["usage"]["prompt_tokens"] == v2_encoder_session.max_length
        want = v2_encoder_session.embed_queries([long_text], col.context)
        assert np.abs(_vectors(response) - want).max() <= 1e-6
        assert http.get("/health").json() == {"status": "ok"}  # no key needed
        assert http.get("/ready").json() == {"status": "ready", "models": 1}
        metrics = http.get("/metrics").text
        assert "cde_rag_batch_inputs_count 2.0" in metrics
        assert 'cde_rag_tokens_total{input_type="query",model="notes"}' in metrics
    assert http.app.state.batcher.alive is False  # type: ignore[attr-defined]


def test_registry_names_and_errors(
    store: tuple[QdrantClient, ContextualCollection],
    v2_encoder_session: CDEEncoder,
    tmp_path: Path,
) -> None:
    client, col = store
    enc = v2_encoder_session
    path = col.context.save(tmp_path / "c.safetensors")
    reg = ContextRegistry.load(enc, client, contexts={"kb": path})
    assert sorted(reg.entries) == ["kb", "notes"]
    assert reg.resolve("notes:query", None, default="document")[1] == "query"
    assert reg.resolve("kb", "query", default="document")[1] == "query"
    assert reg.resolve("kb", None, default="document")[1] == "document"
    with pytest.raises(LookupError, match="kb, notes"):
        reg.resolve("nope:query", None, default="document")
    with pytest.raises(ValueError, match="drop one"):
        reg.resolve("kb:document", "query", default="document")
    with pytest.raises(InvalidInputError, match="two contexts are named 'notes'"):
        ContextRegistry.load(enc, client, contexts={"notes": path})
    with pytest.raises(InvalidInputError, match="without ':'"):
        ContextRegistry.load(enc, None, contexts={"a:b": path})
    with pytest.raises(CollectionNotFoundError):
        ContextRegistry.load(enc, client, collections=["missing"])
    with pytest.raises(InvalidInputError, match="nothing to serve"):
        ContextRegistry.load(enc, QdrantClient(":memory:"))
    with pytest.raises(InvalidInputError, match="max_inputs"):
        ServerSettings(max_inputs=0)


@pytest.mark.parametrize(("warmup", "warmed"), [(None, False), (False, False), (True, True)])
def test_warmup_runs_the_model_before_the_first_request(
    store: tuple[QdrantClient, ContextualCollection],
    v2_encoder_session: CDEEncoder,
    monkeypatch: pytest.MonkeyPatch,
    warmup: bool | None,
    warmed: bool,
) -> None:
    from cde_rag_qdrant.server.app import WARMUP_TEXTS

    client, _ = store
    seen: list[tuple[str, int]] = []
    for name in ("embed_queries", "embed_documents"):
        original = getattr(v2_encoder_session, name)

        def spy(
            texts: list[str], *args: object, _n: str = name, _f: object = original, **kw: object
        ) -> object:
            seen.append((_n, len(texts)))
            return _f(texts, *args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(v2_encoder_session, name, spy)
    with _app(v2_encoder_session, client, warmup=warmup) as http:
        # before any request: a query and a batch of documents when warming (None: CPU, off)
        want = [("embed_queries", 1), ("embed_documents", WARMUP_TEXTS)] if warmed else []
        assert seen == want
        body = {"model": "notes:query", "input": "hi"}
        assert http.post("/v1/embeddings", json=body).status_code == 200
        assert seen == [*want, ("embed_queries", 1)]


def test_serve_warmup_flag() -> None:
    from cde_rag_qdrant.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["serve"]).warmup is None
    assert parse(["serve", "--warmup"]).warmup is True
    assert parse(["serve", "--no-warmup"]).warmup is False

"""Bad requests against a real server: the right status, OpenAI's error body; it keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from cde_rag import CDEEncoder
from tests.server.conftest import API_KEY, Served

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

AUTH = {"Authorization": f"Bearer {API_KEY}"}
JSON = {"Content-Type": "application/json"}
OK = {"model": "notes:query", "input": "a fine question"}

# (case, method, path, headers, raw body or JSON-able body, status, param, code)
CASES: list[tuple[str, str, str, dict[str, str], Any, int, str | None, str | None]] = [
    ("no key", "POST", "/v1/embeddings", JSON, OK, 401, None, "missing_api_key"),
    ("wrong key", "POST", "/v1/embeddings", {**JSON, "Authorization": "Bearer nope"}, OK, 401,
     None, "invalid_api_key"),
    ("not bearer", "POST", "/v1/embeddings", {**JSON, "Authorization": f"Basic {API_KEY}"}, OK,
     401, None, "invalid_api_key"),
    ("unknown model", "POST", "/v1/embeddings", AUTH, {**OK, "model": "nope"}, 404, "model",
     "model_not_found"),
    ("empty input", "POST", "/v1/embeddings", AUTH, {**OK, "input": ""}, 400, "input",
     "empty_input"),
    ("empty list", "POST", "/v1/embeddings", AUTH, {**OK, "input": []}, 400, "input", None),
    ("empty string in list", "POST", "/v1/embeddings", AUTH, {**OK, "input": ["a", " "]}, 400,
     "input", "empty_input"),
    ("too many inputs", "POST", "/v1/embeddings", AUTH, {**OK, "input": ["x"] * 65}, 400,
     "input", "too_many_inputs"),
    ("input too long", "POST", "/v1/embeddings", AUTH, {**OK, "input": "word " * 1001}, 400,
     "input", "input_too_long"),
    ("over the token window", "POST", "/v1/embeddings", AUTH, {**OK, "input": "zq " * 1500},
     400, "input", "context_length_exceeded"),
    ("oversized body", "POST", "/v1/embeddings", AUTH, {**OK, "input": ["y" * 4000] * 60}, 413,
     None, "body_too_large"),
    ("input of wrong type", "POST", "/v1/embeddings", AUTH, {**OK, "input": {"a": 1}}, 400,
     "input", "invalid_type"),
    ("model of wrong type", "POST", "/v1/embeddings", AUTH, {**OK, "model": 3}, 400, "model",
     "invalid_value"),
    ("missing model", "POST", "/v1/embeddings", AUTH, {"input": "x"}, 400, "model",
     "invalid_value"),
    ("dimensions", "POST", "/v1/embeddings", AUTH, {**OK, "dimensions": 8}, 400, "dimensions",
     "unsupported_parameter"),
    ("malformed JSON", "POST", "/v1/embeddings", {**AUTH, **JSON}, b'{"model": "notes", "in',
     400, None, "invalid_json"),
    ("body not an object", "POST", "/v1/embeddings", AUTH, [1, 2], 400, None, "invalid_type"),
    ("form body", "POST", "/v1/embeddings",
     {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}, b"model=notes&input=x", 415,
     None, "unsupported_media_type"),
    ("token array", "POST", "/v1/embeddings", AUTH, {**OK, "input": [1, 2, 3]}, 400, "input",
     "unsupported_input"),
    ("token arrays", "POST", "/v1/embeddings", AUTH, {**OK, "input": [[1, 2], [3]]}, 400,
     "input", "unsupported_input"),
    ("unknown input_type", "POST", "/v1/embeddings", AUTH, {**OK, "model": "notes",
     "input_type": "passage"}, 400, "input_type", "invalid_value"),
    ("suffix vs input_type", "POST", "/v1/embeddings", AUTH, {**OK, "input_type": "document"},
     400, "input_type", "invalid_value"),
    ("bad encoding_format", "POST", "/v1/embeddings", AUTH, {**OK, "encoding_format": "int8"},
     400, "encoding_format", "invalid_value"),
    ("unknown field", "POST", "/v1/embeddings", AUTH, {**OK, "temperature": 1}, 400,
     "temperature", "unknown_parameter"),
    ("unknown route", "POST", "/v1/chat/completions", AUTH, OK, 404, None, "unknown_url"),
    ("wrong method", "GET", "/v1/embeddings", AUTH, None, 405, None, "method_not_allowed"),
    ("models without key", "GET", "/v1/models", {}, None, 401, None, "missing_api_key"),
    ("search unknown collection", "POST", "/collections/nope/search", AUTH, {"query": "x"}, 404,
     "name", "collection_not_found"),
    ("search a context file", "POST", "/collections/kb/search", AUTH, {"query": "x"}, 404,
     "name", "collection_not_found"),
    ("search empty query", "POST", "/collections/notes/search", AUTH, {"query": ""}, 400,
     "query", "invalid_value"),
    ("search blank query", "POST", "/collections/notes/search", AUTH, {"query": "  "}, 400,
     None, "InvalidInputError"),
    ("search bad limit", "POST", "/collections/notes/search", AUTH, {"query": "x", "limit": 0},
     400, "limit", "invalid_value"),
    ("search bad filter", "POST", "/collections/notes/search", AUTH,
     {"query": "x", "filter": {"topic": {"nested": 1}}}, 400, "filter", "invalid_filter"),
    ("documents without id", "POST", "/collections/notes/documents", AUTH,
     {"documents": [{"text": "x"}]}, 400, "documents.0.id", "invalid_value"),
    ("documents empty", "POST", "/collections/notes/documents", AUTH, {"documents": []}, 400,
     "documents", "invalid_value"),
]  # fmt: skip


def _send(
    served: Served, method: str, path: str, headers: dict[str, str], body: Any
) -> httpx.Response:
    content = (
        body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    )
    if content is not None and not isinstance(body, bytes):
        headers = {**JSON, **headers}
    return httpx.request(method, served.url + path, headers=headers, content=content, timeout=60)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "param", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_gets_an_openai_error(
    served: Served,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    response = _send(served, method, path, headers, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] in {"invalid_request_error", "authentication_error"}
    assert len(error["message"]) > 20
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


def test_server_keeps_serving_after_bad_requests(
    served: Served, v2_encoder_session: CDEEncoder
) -> None:
    for case in CASES:
        _send(served, *case[1:5])
    response = served.post("/v1/embeddings", {**OK, "encoding_format": "float"})
    assert response.status_code == 200
    want = v2_encoder_session.embed_queries([OK["input"]], served.notes)
    assert np.abs(np.array(response.json()["data"][0]["embedding"]) - want[0]).max() <= 1e-6
    metrics = httpx.get(served.url + "/metrics", timeout=10).text
    assert 'route="/v1/embeddings",status="400"' in metrics
    assert served.process.poll() is None

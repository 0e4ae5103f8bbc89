"""Errors as OpenAI reports them: ``{"error": {"message", "type", "param", "code"}}``.

:class:`ApiError` is raised inside route handlers and turned into a response here; library
errors (``cde_rag.errors``, ``cde_rag_qdrant.errors``) and framework errors (validation,
unknown routes, wrong methods) get the same envelope and a fitting status.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cde_rag.errors import CDERagError, ContextMismatchError, InvalidInputError
from cde_rag_qdrant.errors import (
    CollectionNotFoundError,
    QdrantUnavailableError,
    StoreLockedError,
)
from cde_rag_qdrant.server.batcher import BatcherClosedError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

logger = logging.getLogger(__name__)

INVALID = "invalid_request_error"
SERVER = "server_error"


class ApiError(Exception):
    """An error answered to the client (never escapes the app).

    Attributes:
        status: HTTP status.
        message: What was found, what was expected, how to fix it.
        type: OpenAI error type (``invalid_request_error``, ``authentication_error``, ...).
        param: The request field at fault, if any.
        code: A short machine-readable code, if any.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Create the error."""
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers


def error_response(
    status: int,
    message: str,
    *,
    type: str = INVALID,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON response in OpenAI's error format."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)  # noqa: S101 (registered for this type only)
    return error_response(
        exc.status,
        exc.message,
        type=exc.type,
        param=exc.param,
        code=exc.code,
        headers=exc.headers,
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 (registered for this type only)
    errors = list(exc.errors())
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return error_response(
            400,
            "We could not parse the JSON body of your request: "
            f"{first.get('ctx', {}).get('error', 'invalid JSON')}. Send a JSON object with "
            "Content-Type: application/json.",
            code="invalid_json",
        )
    if isinstance(first.get("input"), bytes):  # FastAPI did not parse the body as JSON
        kind = request.headers.get("content-type", "none")
        message = (
            f"The body was sent as {kind}; send JSON with the header "
            "Content-Type: application/json (curl: -H 'Content-Type: application/json')."
        )
        return error_response(415, message, code="unsupported_media_type")
    param = _loc(tuple(first.get("loc", ())))
    if not param and first.get("type") == "model_attributes_type":
        shown_type = type(first.get("input")).__name__
        message = f"The request body must be a JSON object; got a JSON {shown_type}."
        return error_response(400, message, code="invalid_type")
    if first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}."
        return error_response(400, message, param=param, code="unknown_parameter")
    if first.get("type") == "missing" and not param:
        message = "The request has no JSON body; send a JSON object."
        return error_response(400, message, code="invalid_json")
    given = first.get("input")
    shown = repr(given) if given is not None else "nothing"
    message = f"Invalid value for '{param}': {first.get('msg')} (got {shown:.80})."
    if len(errors) > 1:
        message += f" {len(errors) - 1} more problem(s) in the request."
    return error_response(400, message, param=param or None, code="invalid_value")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 (registered for this type only)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path}); see GET /v1/models."
        return error_response(404, message, code="unknown_url")
    if exc.status_code == 405:
        allowed = (headers or {}).get("allow", (headers or {}).get("Allow", ""))
        message = f"Method {request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}." if allowed else "."
        )
        return error_response(405, message, code="method_not_allowed", headers=headers)
    return error_response(exc.status_code, str(exc.detail), headers=headers)


_LIBRARY_STATUS: list[tuple[type[BaseException], int, str]] = [
    (InvalidInputError, 400, INVALID),
    (CollectionNotFoundError, 404, INVALID),
    (ContextMismatchError, 409, INVALID),
    (QdrantUnavailableError, 503, SERVER),
    (StoreLockedError, 503, SERVER),
    (BatcherClosedError, 503, SERVER),
]


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    for kind, status, kind_name in _LIBRARY_STATUS:
        if isinstance(exc, kind):
            return error_response(status, str(exc), type=kind_name, code=type(exc).__name__)
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error: {exc}", type=SERVER, code=type(exc).__name__)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    message = "The server had an error while processing your request; see its log."
    return error_response(500, message, type=SERVER, code="internal_error")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(CDERagError, _library_error)
    app.add_exception_handler(BatcherClosedError, _library_error)
    app.add_exception_handler(Exception, _unexpected)

"""The ASGI app: OpenAI-compatible embeddings, collection search and upserts, health, metrics.

Build it with :func:`create_app` and run it with any ASGI server (``cde-rag serve`` uses
uvicorn). Routes:

- ``POST /v1/embeddings``: OpenAI's schema; ``model`` names a collection or context, optionally
  suffixed ``:query`` / ``:document``; or pass ``input_type``.
- ``GET /v1/models``: what ``model`` may be.
- ``POST /collections/{name}/search``, ``POST /collections/{name}/documents``.
- ``GET /health`` (alive), ``GET /ready`` (accepting work), ``GET /metrics`` (Prometheus).
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from cde_rag import CDEEncoder, __version__
from cde_rag.tokenization import add_prefix
from cde_rag_qdrant.server import errors
from cde_rag_qdrant.server.batcher import Batcher, Vectors
from cde_rag_qdrant.server.collection_routes import add_collection_routes
from cde_rag_qdrant.server.errors import ApiError
from cde_rag_qdrant.server.metrics import ServerMetrics
from cde_rag_qdrant.server.middleware import BodyLimitMiddleware, MetricsMiddleware
from cde_rag_qdrant.server.registry import INPUT_TYPES, ContextRegistry, InputType, ModelEntry
from cde_rag_qdrant.server.schemas import EmbeddingRequest, EmbeddingResponse, ModelList
from cde_rag_qdrant.server.settings import ServerSettings

logger = logging.getLogger(__name__)

INLINE_TOKENIZE_CHARS = 8192
"""Requests with fewer characters are tokenised on the event loop, larger ones in a thread."""
TOKEN_ARRAY_HELP = (
    "token-id arrays are not supported: CDE uses its own tokenizer, send the text itself. "  # noqa: S105
    "LangChain's OpenAIEmbeddings: pass check_embedding_ctx_length=False."
)


def _auth(keys: tuple[str, ...]) -> Any:
    encoded = [k.encode() for k in keys]

    async def check(request: Request) -> None:
        if not encoded:
            return
        header = request.headers.get("authorization")
        if not header:
            msg = (
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' (the "
                "key given to cde-rag serve --api-key or $CDE_RAG_API_KEY)."
            )
            raise ApiError(401, msg, code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given, k) for k in encoded):
            shown = token.strip()[:3] + "…" if token.strip() else "an empty key"
            msg = (
                f"Incorrect API key provided ({shown}): it is not one of the keys this server "
                "was started with (cde-rag serve --api-key). Send 'Authorization: Bearer KEY'."
            )
            raise ApiError(401, msg, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    return check


def _check_input(value: object, settings: ServerSettings) -> list[str]:
    """The texts of ``input`` (a string or a list of strings), or an ApiError saying why not."""
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
        if not items:
            raise ApiError(400, "'input' is an empty list; send at least one text.", param="input")
    else:
        shown = type(value).__name__ if value is not None else "null"
        msg = f"'input' must be a string or a list of strings; got {shown}."
        raise ApiError(400, msg, param="input", code="invalid_type")
    if len(items) > settings.max_inputs:
        msg = (
            f"'input' has {len(items)} texts; this server accepts at most {settings.max_inputs} "
            "per request (cde-rag serve --max-inputs). Split it over several requests."
        )
        raise ApiError(400, msg, param="input", code="too_many_inputs")
    for i, item in enumerate(items):
        if isinstance(item, int | list) and not isinstance(item, bool):
            raise ApiError(400, TOKEN_ARRAY_HELP, param="input", code="unsupported_input")
        if not isinstance(item, str):
            msg = f"'input[{i}]' is {type(item).__name__}; every item must be a string."
            raise ApiError(400, msg, param="input", code="invalid_type")
        if not item.strip():
            msg = f"'input[{i}]' is empty or whitespace-only; such texts have no embedding."
            raise ApiError(400, msg, param="input", code="empty_input")
        if len(item) > settings.max_input_chars:
            msg = (
                f"'input[{i}]' has {len(item)} characters; this server accepts at most "
                f"{settings.max_input_chars} per text (cde-rag serve --max-input-chars)."
            )
            raise ApiError(400, msg, param="input", code="input_too_long")
    return items


def _model_cards(registry: ContextRegistry, created: int, dim: int) -> ModelList:
    cards = []
    for entry in registry.entries.values():
        for input_type in (None, *INPUT_TYPES):
            name = entry.name if input_type is None else f"{entry.name}:{input_type}"
            card = {"id": name, "created": created, "kind": entry.kind, "input_type": input_type}
            cards.append({**card, "fingerprint": entry.fingerprint, "dim": dim})
    return ModelList.model_validate({"data": cards})


WARMUP_TEXTS = 32
"""Documents in the warm-up call (a batch shape like the ones concurrent requests make)."""


def _warm_up(encoder: CDEEncoder, registry: ContextRegistry, cfg: ServerSettings) -> None:
    """Embed a query and a batch of documents once, before the first request.

    The first calls on a GPU create library handles and workspaces and pick kernels (hundreds
    of milliseconds); without this the first requests wait for that.
    """
    entry = next(iter(registry.entries.values()))
    text = "warm-up: the first call on a device starts its libraries"
    encoder.embed_queries(
        [text], entry.context, prefix=entry.prefix("query"), show_progress_bar=False
    )
    encoder.embed_documents(
        [text] * WARMUP_TEXTS,
        entry.context,
        prefix=entry.prefix("document"),
        batch_size=cfg.forward_batch_size,
        show_progress_bar=False,
    )


def create_app(  # noqa: C901 (one closure per route; splitting them apart hides the flow)
    encoder: CDEEncoder,
    registry: ContextRegistry,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """Build the server app around a loaded encoder and its contexts.

    Args:
        encoder: The model (shared by every context; used by one worker thread).
        registry: The servable contexts (:meth:`ContextRegistry.load`).
        settings: Limits, keys and batching (default :class:`ServerSettings`).

    Returns:
        The FastAPI app. ``app.state`` holds ``batcher``, ``registry``, ``metrics``,
        ``settings``. Its lifespan shutdown finishes every accepted request first.

    Example:
        >>> app = create_app(encoder, ContextRegistry.load(encoder, client))  # doctest: +SKIP
        >>> uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    cfg = settings or ServerSettings()
    metrics = ServerMetrics()
    created = int(time.time())

    def embed(key: Hashable, texts: list[str]) -> Vectors:
        assert isinstance(key, tuple)  # noqa: S101 (type narrowing of an invariant): (context name, input type), built below
        name: str = key[0]
        input_type: InputType = key[1]
        entry = registry.entries[name]
        if entry.refresh():
            metrics.context_reloads.labels(name).inc()
        run = encoder.embed_queries if input_type == "query" else encoder.embed_documents
        return run(
            texts,
            entry.context,
            prefix=entry.prefix(input_type),
            batch_size=cfg.forward_batch_size,
            show_progress_bar=False,
        )

    batcher = Batcher(
        embed,
        enabled=cfg.batching,
        max_batch_tokens=cfg.max_batch_tokens,
        max_batch_inputs=cfg.max_batch_inputs,
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("serving %d contexts (batching %s)", len(registry), cfg.batching)
        warm = cfg.warmup if cfg.warmup is not None else encoder.device.type != "cpu"
        if warm and registry.entries:
            started = time.perf_counter()
            await batcher.call(lambda: _warm_up(encoder, registry, cfg))
            logger.info("model warmed up in %.1f s", time.perf_counter() - started)
        yield
        logger.info("shutting down: finishing %d queued requests", batcher.pending)
        await run_in_threadpool(batcher.close)

    app = FastAPI(title="cde-rag", version=__version__, lifespan=lifespan)
    app.state.batcher, app.state.registry = batcher, registry
    app.state.metrics, app.state.settings = metrics, cfg
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    auth = [Depends(_auth(cfg.api_keys))]

    def count_tokens(entry: ModelEntry, input_type: InputType, texts: list[str]) -> list[int]:
        prefixed = add_prefix(texts, entry.prefix(input_type))
        ids, _ = encoder.tokenizer.encode(prefixed, encoder.max_length + 1)
        return [len(x) for x in ids]

    @app.post("/v1/embeddings", dependencies=auth, response_model=EmbeddingResponse)
    async def embeddings(body: EmbeddingRequest) -> Response:
        texts = _check_input(body.input, cfg)
        if body.dimensions is not None and body.dimensions != encoder.dim:
            msg = (
                f"'dimensions' is {body.dimensions}, but CDE vectors have a fixed width of "
                f"{encoder.dim}; omit 'dimensions' (or pass {encoder.dim})."
            )
            raise ApiError(400, msg, param="dimensions", code="unsupported_parameter")
        try:
            entry, input_type = registry.resolve(
                body.model, body.input_type, default=cfg.default_input_type
            )
        except LookupError as exc:
            raise ApiError(404, str(exc), param="model", code="model_not_found") from exc
        except ValueError as exc:
            raise ApiError(400, str(exc), param="input_type", code="invalid_value") from exc
        if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
            lengths = count_tokens(entry, input_type, texts)  # microseconds: no thread hop
        else:
            lengths = await run_in_threadpool(count_tokens, entry, input_type, texts)
        limit = encoder.max_length
        too_long = [i for i, n in enumerate(lengths) if n > limit]
        if too_long and not cfg.truncate:
            msg = (
                f"{len(too_long)} input(s) exceed the model's window of {limit} tokens (first: "
                f"input[{too_long[0]}]); split them, or start the server with --truncate."
            )
            raise ApiError(400, msg, param="input", code="context_length_exceeded")
        tokens = sum(min(n, limit) for n in lengths)
        vectors = await batcher.embed((entry.name, input_type), texts, tokens)
        metrics.inputs.labels(entry.name, input_type).inc(len(texts))
        metrics.tokens.labels(entry.name, input_type).inc(tokens)
        if body.encoding_format == "base64":
            rows: list[Any] = [
                base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")
                for v in vectors
            ]
        else:
            rows = vectors.tolist()
        data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": body.model, "usage": usage})

    @app.get("/v1/models", dependencies=auth, response_model=ModelList)
    async def list_models() -> ModelList:
        return _model_cards(registry, created, encoder.dim)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        if not batcher.alive:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ready", "models": len(registry)})

    @app.get("/metrics")
    async def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    add_collection_routes(app, registry, batcher, cfg, auth)
    return app

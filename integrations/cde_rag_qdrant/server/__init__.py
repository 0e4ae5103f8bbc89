"""``cde-rag serve``: an OpenAI-compatible embedding and search server that owns the contexts.

Needs the ``server`` extra (``pip install 'cde-rag[server]'``: FastAPI, uvicorn,
prometheus-client).

Example:
    >>> from cde_rag_qdrant.server import ContextRegistry, ServerSettings, create_app
    >>> registry = ContextRegistry.load(encoder, client)  # doctest: +SKIP
    >>> app = create_app(encoder, registry, ServerSettings(api_keys=("secret",)))  # doctest: +SKIP
"""

from __future__ import annotations

from cde_rag.errors import OptionalDependencyError

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    msg = f"cde-rag serve needs FastAPI and prometheus-client ({exc.name} is missing)."
    raise OptionalDependencyError(msg, extra="server") from exc

from cde_rag_qdrant.server.app import create_app
from cde_rag_qdrant.server.registry import ContextRegistry, ModelEntry
from cde_rag_qdrant.server.settings import ServerSettings

__all__ = ["ContextRegistry", "ModelEntry", "ServerSettings", "create_app"]

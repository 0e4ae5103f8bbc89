"""Everything that depends on qdrant-client internals, in one place.

qdrant-client has no public API for these: the local store's lock and folder layout
(``meta.json``), and the wrapped implementation behind ``QdrantClient`` (``_client``). When a
qdrant-client release changes them, only this module needs to follow.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.local.qdrant_local import QdrantLocal

from cde_rag_qdrant.errors import StoreLockedError, StoreUnusableError

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
"""The file qdrant-client's local mode keeps its collection list in."""
_EMPTY_META = '{"collections": {}, "aliases": {}}'


def _local(client: QdrantClient) -> QdrantLocal | None:
    inner = client._client
    return inner if isinstance(inner, QdrantLocal) else None


def is_local(client: QdrantClient) -> bool:
    """True for ``:memory:`` and embedded stores (no server)."""
    return _local(client) is not None


def describe(client: QdrantClient) -> str:
    """Where the client stores data, for messages."""
    local = _local(client)
    if local is not None:
        return "in-memory store" if not local.persistent else f"embedded store {local.location!r}"
    return f"Qdrant server {getattr(client._client, 'rest_uri', '?')!r}"


def is_store(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds an embedded store (qdrant-client writes ``meta.json`` first)."""
    return (Path(folder) / META_FILE).is_file()


def repair_interrupted_init(folder: str) -> None:
    """Re-create a ``meta.json`` that a kill during the store's creation left empty.

    qdrant-client writes later versions of ``meta.json`` atomically, but creates the first one
    with a plain write: a process killed at that instant leaves an empty (or cut) file, and the
    store never opens again. Such a file never held a collection, so it is safe to re-create.
    """
    meta = os.path.join(folder, META_FILE)
    try:
        with open(meta, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return
    if len(text) >= len(_EMPTY_META):
        return  # a complete file (a broken large one is not ours to touch)
    try:
        json.loads(text)
    except ValueError:
        logger.warning("%s was cut by an interrupted store creation; re-creating it", meta)
        tmp = meta + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(_EMPTY_META)
        os.replace(tmp, meta)


def _check_folder(folder: str) -> None:
    path = Path(folder)
    if path.exists() and not path.is_dir():
        msg = (
            f"--qdrant-path {folder!r} is a file, not a folder; an embedded Qdrant store is a "
            "folder. Pass a folder path (it is created when missing)."
        )
        raise StoreUnusableError(msg)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        msg = (
            f"the embedded Qdrant store at {folder!r} cannot be written ({str(existing)!r} is "
            "read-only for this user). Pass a writable --qdrant-path, or fix the permissions."
        )
        raise StoreUnusableError(msg)


def open_local(folder: str) -> QdrantClient:
    """Open (or create) the embedded store in ``folder``.

    Raises:
        StoreLockedError: Another client or process has the store open.
        StoreUnusableError: The path is a file, not writable, or cannot be created.
    """
    _check_folder(folder)
    repair_interrupted_init(folder)
    try:
        return QdrantClient(path=folder)
    except (RuntimeError, BlockingIOError) as exc:
        if "already accessed" not in str(exc) and not isinstance(exc, BlockingIOError):
            raise
        msg = (
            f"the embedded Qdrant store at {folder!r} is in use by another client or "
            "process (local mode allows one at a time). Wait for the other process (for "
            "example a running `cde-rag ingest`) to finish and retry, close the other "
            "QdrantClient, or run a Qdrant server (docker compose up -d) and pass "
            "--qdrant-url http://localhost:6333 for concurrent access."
        )
        raise StoreLockedError(msg) from exc
    except OSError as exc:
        msg = (
            f"could not open the embedded Qdrant store at {folder!r}: {exc.strerror or exc}. "
            "Pass a writable folder as --qdrant-path."
        )
        raise StoreUnusableError(msg) from exc


_LOCAL_ONLY_OPTIONS = frozenset({"location", "path", "force_disable_check_same_thread"})


def server_options(client: QdrantClient) -> dict[str, Any] | None:
    """Keyword arguments that make another ``QdrantClient`` for the same server; None if local.

    qdrant-client keeps its constructor arguments (``url``/``host``, ``port``, ``api_key``,
    ``timeout``, ``https``, ``prefix``, gRPC settings, headers) in ``_init_options``; with
    these, a process elsewhere (a Ray worker) connects exactly as this client does.
    """
    if _local(client) is not None:
        return None
    stored: Any = getattr(client, "_init_options", None)
    if isinstance(stored, dict) and (stored.get("url") or stored.get("host")):
        return {k: v for k, v in stored.items() if k not in _LOCAL_ONLY_OPTIONS}
    inner = client._client  # pragma: no cover - releases without _init_options
    return {  # pragma: no cover
        "url": getattr(inner, "rest_uri", None),
        "api_key": getattr(inner, "_api_key", None),
        "timeout": getattr(inner, "_timeout", None),
    }

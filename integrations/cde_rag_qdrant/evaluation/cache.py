"""On-disk cache of the vectors and contexts an evaluation computes.

An entry's key is the SHA-256 of everything its value depends on (model identity and weights
hash, dtype, token limit, prefix, context fingerprint, the content hash of the texts, ...), so a
changed input never hits an old entry and adding a condition never recomputes the others.
Layout: ``vectors/<key>.npy`` (+ ``<key>.json`` describing it) and
``contexts/<key>.safetensors``. Files are written to a temporary name and renamed, so an
interrupted run leaves no half entry; an unreadable entry is logged and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cde_rag import CorpusContext
from cde_rag.errors import ContextError

logger = logging.getLogger(__name__)

CACHE_FORMAT = "cde-rag-eval-cache:1"

Vectors = npt.NDArray[np.float32]


def cache_key(parts: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``parts`` (plus the cache format version)."""
    text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class EvalCache:
    """Vectors and contexts keyed by what they depend on; ``root=None`` caches nothing.

    Attributes:
        root: The cache folder, or None.
        hits: Entries read from disk in this run.
        misses: Entries computed in this run.
    """

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        """Use (and create on first write) the folder ``root``."""
        self.root = None if root is None else Path(root)
        self.hits = 0
        self.misses = 0

    def vectors(
        self, parts: Mapping[str, Any], compute: Callable[[], Vectors]
    ) -> tuple[Vectors, bool]:
        """The cached array for ``parts``, else ``compute()`` stored; and whether it was cached."""
        key = cache_key(parts)
        if self.root is not None:
            path = self.root / "vectors" / f"{key}.npy"
            if path.is_file():
                try:
                    array = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as exc:
                    logger.warning("ignoring unreadable cache entry %s (%s)", path, exc)
                else:
                    self.hits += 1
                    return np.asarray(array, dtype=np.float32), True
        self.misses += 1
        array = np.ascontiguousarray(compute(), dtype=np.float32)
        if self.root is not None:
            folder = self.root / "vectors"
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{key}.tmp.npy"
            np.save(tmp, array, allow_pickle=False)
            meta = {**parts, "shape": list(array.shape)}
            (folder / f"{key}.json").write_text(json.dumps(meta, indent=1, default=str))
            tmp.replace(folder / f"{key}.npy")
        return array, False

    def context(
        self, parts: Mapping[str, Any], compute: Callable[[], CorpusContext]
    ) -> tuple[CorpusContext, bool]:
        """The cached context for ``parts``, else ``compute()`` stored; and whether cached."""
        key = cache_key(parts)
        if self.root is not None:
            path = self.root / "contexts" / f"{key}.safetensors"
            if path.is_file():
                try:
                    context = CorpusContext.load(path)
                except (OSError, ContextError) as exc:
                    logger.warning("ignoring unreadable cached context %s (%s)", path, exc)
                else:
                    self.hits += 1
                    return context, True
        self.misses += 1
        context = compute()
        if self.root is not None:
            folder = self.root / "contexts"
            folder.mkdir(parents=True, exist_ok=True)
            context.save(folder / f"{key}.safetensors")
        return context, False

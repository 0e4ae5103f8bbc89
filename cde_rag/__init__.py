"""cde-rag: contextual document embeddings (cde-small-v2 / v1) with a managed corpus context.

Example:
    >>> from cde_rag import CDEEncoder
    >>> encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2")  # doctest: +SKIP
    >>> context = encoder.build_context(corpus)  # doctest: +SKIP
    >>> vectors = encoder.embed_documents(corpus, context)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cde_rag._version import __version__
from cde_rag.errors import (
    CDERagError,
    CheckpointError,
    ContextError,
    ContextMismatchError,
    InvalidInputError,
)

if TYPE_CHECKING:
    from cde_rag.context import CorpusContext
    from cde_rag.encoder import CDEEncoder

# torch loads on first use, so `import cde_rag` (and the `cde-rag` command's start) stays fast.
_LAZY = {"CDEEncoder": "cde_rag.encoder", "CorpusContext": "cde_rag.context"}


def __getattr__(name: str) -> object:
    """Import the torch-backed names on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'cde_rag' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CDEEncoder",
    "CDERagError",
    "CheckpointError",
    "ContextError",
    "ContextMismatchError",
    "CorpusContext",
    "InvalidInputError",
    "__version__",
]

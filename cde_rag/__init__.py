"""cde-rag: contextual document embeddings (cde-small-v2 / v1) with a managed corpus context.

Example:
    >>> from cde_rag import CDEEncoder
    >>> encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2")  # doctest: +SKIP
    >>> context = encoder.build_context(corpus)  # doctest: +SKIP
    >>> vectors = encoder.embed_documents(corpus, context)  # doctest: +SKIP
"""

from __future__ import annotations

from cde_rag._version import __version__
from cde_rag.context import CorpusContext
from cde_rag.encoder import CDEEncoder
from cde_rag.errors import (
    CDERagError,
    CheckpointError,
    ContextError,
    ContextMismatchError,
    InvalidInputError,
)

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

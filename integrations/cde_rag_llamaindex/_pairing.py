"""Which CDEEmbedding made a node's vector, and which one names a collection's model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.schema import BaseNode, MetadataMode

from cde_rag.errors import ContextNotSetError
from cde_rag_llamaindex.embedding import CDEEmbedding


def _same_model(model: CDEEmbedding, record: Any) -> bool:
    """Whether ``model`` names the model that made ``record`` (without loading it)."""
    if model.core.loaded:
        return bool(model.encoder.identity.weights_hash == record.weights_hash)
    name = model.model_name
    if os.path.isdir(name):
        name = str(Path(name).resolve())
    return bool(name == record.model_id)


def attribute(node: BaseNode, candidates: Sequence[CDEEmbedding | None]) -> CDEEmbedding:
    """The embedding whose context made ``node.embedding`` (re-embeds the node once each).

    Raises:
        ContextNotSetError: No candidate reproduces the vector.
    """
    vector = node.embedding
    text = node.get_content(metadata_mode=MetadataMode.EMBED)
    seen: set[int] = set()
    for model in candidates:
        if model is None or model.core.bound is None or id(model) in seen or vector is None:
            continue
        seen.add(id(model))
        again = np.asarray(model._embed([text], query=False, check=False)[0], dtype=np.float32)
        if (
            again.shape == (len(vector),)
            and float(np.max(np.abs(again - np.asarray(vector, dtype=np.float32)))) <= 1e-4
        ):
            return model
    msg = (
        "cannot tell which corpus context made these node embeddings, so the new cde-rag "
        "collection cannot store it: embed the nodes with a CDEEmbedding in this process "
        "(VectorStoreIndex(..., embed_model=CDEEmbedding(...))), or create the collection "
        "first with create_qdrant_store(client, name, embed_model, corpus=...)."
    )
    raise ContextNotSetError(msg)

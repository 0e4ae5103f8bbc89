"""Embedding for :mod:`cde_rag.verify`: one progress bar over every text, and a switch sweep.

What each switch affects decides what a sweep over them may share, exactly:

* stage 1 (the context) uses neither switch, so one context serves every combination;
* ``pool_ignore_instruction_tokens`` only changes the pooling weights of stage 2 and
  ``output_residual`` only the output projection, both after the backbone. One stage-2 backbone
  pass therefore yields all four combinations: two poolings, each projected with and without
  the residual. The 2x2 table costs one pass over the texts, not four.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cde_rag._batching import length_sorted_batches, pad_batch
from cde_rag.context import CorpusContext, new_provenance
from cde_rag.encoder import CPU_BATCH_TOKENS, CDEEncoder
from cde_rag.model._ops import mean_pool
from cde_rag.model.cde import SecondStage
from cde_rag.tokenization import add_prefix
from cde_rag.validation import validate_texts

if TYPE_CHECKING:
    from cde_rag.verify import CardData

Switches = tuple[bool, bool]
"""``(output_residual, pool_ignore_instruction_tokens)``."""
ALL_SWITCHES: tuple[Switches, ...] = ((True, True), (True, False), (False, True), (False, False))
CHUNK = 64
"""Texts per public ``embed_*`` call, so the one progress bar moves (and estimates) steadily."""

Vectors = npt.NDArray[np.float32]


def encoder_switches(encoder: CDEEncoder) -> Switches:
    """The switches ``encoder`` was loaded with."""
    return (encoder.config.output_residual, encoder.config.pool_ignore_instruction_tokens)


def build_context(
    encoder: CDEEncoder, texts: Sequence[str], bar: tqdm, *, batch_size: int
) -> CorpusContext:
    """Stage 1 over exactly ``texts``, in order, in chunks that advance ``bar``.

    This is what ``build_context`` does with a corpus of exactly the context size.
    """
    rows = []
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        rows.append(
            encoder.first_stage_embeddings(chunk, batch_size=batch_size, show_progress_bar=False)
        )
        bar.update(len(chunk))
    provenance = new_provenance(
        encoder.identity,
        size=len(texts),
        seed=None,
        strategy="given",
        n_source_documents=len(texts),
    )
    return CorpusContext(torch.from_numpy(np.concatenate(rows)), provenance)


def embed(
    encoder: CDEEncoder,
    texts: Sequence[str],
    context: CorpusContext,
    kind: Literal["document", "query"],
    bar: tqdm,
    *,
    batch_size: int,
) -> Vectors:
    """The public path: ``embed_documents`` / ``embed_queries`` in chunks that advance ``bar``."""
    method = encoder.embed_documents if kind == "document" else encoder.embed_queries
    parts = []
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        parts.append(method(chunk, context, batch_size=batch_size, show_progress_bar=False))
        bar.update(len(chunk))
    return np.concatenate(parts)


def count_truncated(encoder: CDEEncoder, data: CardData) -> int:
    """How many of the card's texts exceed ``encoder.max_length`` tokens (prefix included)."""
    parts = (
        (data.context_documents, encoder.document_prefix),
        (data.documents, encoder.document_prefix),
        (data.queries, encoder.query_prefix),
    )
    return sum(
        encoder.tokenizer.encode(add_prefix(texts, prefix), encoder.max_length)[1]
        for texts, prefix in parts
    )


class _NoTruncationWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("truncated ")


@contextmanager
def one_truncation_warning() -> Iterator[None]:
    """Silence the encoder's per-call truncation warning (the caller logs one for all chunks)."""
    muted = _NoTruncationWarning()
    encoder_logger = logging.getLogger("cde_rag.encoder")
    encoder_logger.addFilter(muted)
    try:
        yield
    finally:
        encoder_logger.removeFilter(muted)


def _twin(stage: SecondStage, switches: Switches) -> SecondStage:
    """A view of ``stage`` sharing its parameters, under other switches."""
    twin = copy.copy(stage)  # shallow: the same parameter and submodule dicts
    twin.config = dataclasses.replace(
        stage.config, output_residual=switches[0], pool_ignore_instruction_tokens=switches[1]
    )
    return twin


def embed_all_switches(
    encoder: CDEEncoder,
    texts: Sequence[str],
    context: CorpusContext,
    kind: Literal["document", "query"],
    bar: tqdm,
    *,
    batch_size: int,
) -> dict[Switches, Vectors]:
    """L2-normalised vectors of ``texts`` under every switch combination, one backbone pass.

    Batching follows :meth:`CDEEncoder.embed_documents` (length-sorted, the CPU token cap), so
    each combination equals what an encoder loaded with those switches returns (within float
    noise; ``tests/core/test_verify.py`` checks it).
    """
    context.check_compatible(encoder)
    items = validate_texts(texts)
    prefix = encoder.document_prefix if kind == "document" else encoder.query_prefix
    token_ids, _ = encoder.tokenizer.encode(add_prefix(items, prefix), encoder.max_length)
    model = encoder.model
    stage = model.second_stage_model
    twins = {s: _twin(stage, s) for s in ALL_SWITCHES}
    contextual = stage.config.pool_ignore_contextual_tokens
    with torch.inference_mode():
        rows = model.prepare_context(context.embeddings.to(encoder.device))
    batches = length_sorted_batches(
        [len(t) for t in token_ids],
        batch_size=batch_size,
        max_batch_tokens=CPU_BATCH_TOKENS if encoder.device.type == "cpu" else None,
        extra_tokens=rows.shape[0] + encoder.config.n_soft_prompt,
    )
    out = {s: torch.empty(len(items), encoder.dim, dtype=torch.float32) for s in ALL_SWITCHES}
    with torch.inference_mode():
        for batch in batches:
            ids, mask = pad_batch([token_ids[i] for i in batch], encoder.tokenizer.pad_id)
            ids, mask = ids.to(encoder.device), mask.to(encoder.device)
            hidden = stage.hidden_states(ids, mask, rows, full_output=not contextual)
            index = torch.tensor(batch)
            for ignore in (True, False):
                weights = twins[(True, ignore)].pool_mask(ids, mask)
                if not contextual:  # pool over the context and prompt rows too
                    n_prefix = hidden.shape[1] - ids.shape[1]
                    weights = torch.cat([weights.new_ones(len(batch), n_prefix), weights], dim=1)
                pooled = mean_pool(hidden, weights)
                for residual in (True, False):
                    projected = twins[(residual, ignore)].project(pooled)
                    out[(residual, ignore)][index] = projected.float().cpu()
            bar.update(len(batch))
    return {s: F.normalize(v, dim=-1).numpy() for s, v in out.items()}

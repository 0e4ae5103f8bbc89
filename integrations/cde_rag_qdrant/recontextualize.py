"""Drift measurement and recontextualization (rebuild + atomic alias switch).

``rebuild`` builds a new context from a collection's own texts, re-embeds every point into a
new physical collection ``{name}__cde_g{n+1}`` and then switches the alias ``name`` to it in one
alias operation, so readers see either the old or the new index, never a half-built one. The old
collection is deleted only after the switch. Writes made to the old collection while a rebuild
runs are not carried over: pause writers first.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextCorruptError, InvalidInputError
from cde_rag.sampling import SamplingStrategy
from cde_rag_qdrant import _store
from cde_rag_qdrant._kill_points import AFTER_ALIAS_SWITCH, kill_point
from cde_rag_qdrant._pipeline import embed_and_upsert, restamped_batches
from cde_rag_qdrant._upload import UploadOptions
from cde_rag_qdrant.errors import (
    CollectionConfigError,
    CollectionEmptyError,
    ContextMissingError,
)
from cde_rag_qdrant.options import options_of
from cde_rag_qdrant.orphans import RETIRE_KEY, drop_orphans
from cde_rag_qdrant.payload import CONTENT_PAYLOAD_KEY
from cde_rag_qdrant.record import ContextRecord
from cde_rag_qdrant.results import DriftReport
from cde_rag_qdrant.sparse import SparseEncoder
from cde_rag_qdrant.tenants import TENANTS_METADATA_KEY

logger = logging.getLogger(__name__)

DRIFT_RATIO_THRESHOLD = 1.5
"""``DriftReport.ratio`` at or above which recontextualizing is recommended."""
DRIFT_OUTLIER_THRESHOLD = 0.25
"""``DriftReport.outlier_fraction`` at or above which recontextualizing is recommended."""


def _unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = rows / np.maximum(norms, 1e-12)
    return out


def measure_drift(
    encoder: CDEEncoder,
    context: CorpusContext,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> DriftReport:
    """Measure how far ``texts`` sit from ``context`` (see :class:`DriftReport`).

    Args:
        encoder: The encoder that built ``context``.
        context: The stored context.
        texts: Documents to measure (new ones, or a sample of the collection).
        batch_size: Stage-1 batch size.
        show_progress_bar: Progress bar (default: when logging at INFO).

    Returns:
        The report.

    Raises:
        InvalidInputError: No texts, or bad texts.
        ContextMismatchError: ``context`` was made by another model.
    """
    context.check_compatible(encoder)
    if len(texts) == 0:
        msg = "measure_drift needs at least one document; got none."
        raise InvalidInputError(msg)
    rows = _unit(np.unique(context.embeddings.numpy(), axis=0))
    docs = _unit(
        encoder.first_stage_embeddings(
            texts, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
    )
    distances = 1.0 - (docs @ rows.T).max(axis=1)
    if rows.shape[0] > 1:
        sims = rows @ rows.T
        np.fill_diagonal(sims, -np.inf)
        baseline = 1.0 - sims.max(axis=1)
    else:
        baseline = np.zeros(1, dtype=np.float32)
    base_mean = float(max(baseline.mean(), 1e-6))
    mean = float(np.clip(distances, 0.0, None).mean())
    ratio = mean / base_mean
    cutoff = float(np.quantile(baseline, 0.95))
    outliers = float((distances > max(cutoff, 1e-6)).mean())
    return DriftReport(
        n_documents=len(texts),
        mean_distance=mean,
        baseline_distance=base_mean,
        ratio=ratio,
        outlier_fraction=outliers,
        recommended=ratio >= DRIFT_RATIO_THRESHOLD or outliers >= DRIFT_OUTLIER_THRESHOLD,
    )


def sample_texts(client: QdrantClient, name: str, *, sample: int, seed: int = 0) -> list[str]:
    """A seeded sample of up to ``sample`` texts of a collection (all when it has fewer)."""
    texts = [
        t for t in (_store.point_text(p) for p in _store.iter_points(client, name)) if t is not None
    ]
    if len(texts) <= sample:
        return texts
    return random.Random(seed).sample(texts, sample)


def _current_generation(client: QdrantClient, name: str) -> int:
    """Generation of the stored record; 0 for a collection with none (or a corrupt one)."""
    try:
        return _store.read_record(client, name).generation
    except (ContextMissingError, ContextCorruptError):
        return 0


def rebuild(
    client: QdrantClient,
    name: str,
    encoder: CDEEncoder,
    *,
    size: int | None = None,
    seed: int = 0,
    strategy: SamplingStrategy = "uniform",
    batch_size: int = 64,
    skip_textless: bool = False,
    keep_old: bool = False,
    show_progress_bar: bool | None = None,
    upload: UploadOptions | None = None,
) -> CorpusContext:
    """Rebuild ``name`` with a new context built from its own texts; switch atomically.

    Works on cde-rag collections and on collections made by other tools (or with a corrupt
    record) as long as their points carry ``page_content``. When ``name`` is a plain
    collection rather than an alias (made by another tool), Qdrant cannot put an alias on an
    existing collection name: the old collection is then deleted just before the alias is
    created, and ``name`` is briefly missing (a warning says so).

    Args:
        client: Any QdrantClient.
        name: Collection or alias name.
        encoder: The encoder (any model with the right width for the vectors).
        size: Context rows (default: the model's ``context_size``).
        seed: Sampling seed.
        strategy: ``"uniform"`` or ``"diverse"``.
        batch_size: Points per upsert (texts are embedded in larger length-sorted windows).
        skip_textless: Drop points without ``page_content`` instead of refusing.
        keep_old: Keep the old physical collection after the switch (aliases only).
        show_progress_bar: Progress bars (default: when logging at INFO).
        upload: How points are sent (see ``UploadOptions``).

    Returns:
        The new context (as stored). The new collection keeps the options (quantization,
        on-disk, HNSW, shards, hybrid sparse vector) of the old one.

    Raises:
        CollectionNotFoundError: No such collection.
        CollectionConfigError: Wrong vector config, or points without text (and not
            ``skip_textless``); nothing was changed.
        CollectionEmptyError: The collection holds no texts.
    """
    info = _store.collection_info(client, name)
    _store.check_vectors(info, name, encoder.dim)
    if TENANTS_METADATA_KEY in (info.config.metadata or {}):
        msg = (
            f"collection {name!r} has tenants with their own contexts; a whole-collection "
            "rebuild would re-embed their points under one context. Recontextualize each "
            f"tenant instead: `cde-rag recontextualize --collection {name} --tenant NAME` "
            "(ContextualCollection.open(..., tenant=NAME).recontextualize())."
        )
        raise CollectionConfigError(msg)
    sparse = SparseEncoder.from_metadata(info.config.metadata, name)
    options = options_of(info, sparse)
    drop_orphans(client, name)
    current = _store.alias_target(client, name)
    source = current or name
    texts: list[str] = []
    textless = 0
    for point in _store.iter_points(client, source):
        text = _store.point_text(point)
        if text is None:
            textless += 1
        else:
            texts.append(text)
    if textless and not skip_textless:
        msg = (
            f"collection {name!r} has {textless} points without a {CONTENT_PAYLOAD_KEY!r} text; "
            "they cannot be re-embedded and would be lost. Nothing was changed. Pass "
            "skip_textless=True (CLI: --skip-textless) to drop them."
        )
        raise CollectionConfigError(msg)
    if not texts:
        msg = f"collection {name!r} holds no texts to build a context from; add documents first."
        raise CollectionEmptyError(msg)
    context = encoder.build_context(
        texts, size=size, seed=seed, strategy=strategy, show_progress_bar=show_progress_bar
    )
    generation = _current_generation(client, name) + 1
    while _store.physical_name(name, generation) in (source, name):
        generation += 1
    record = ContextRecord.from_context(context, encoder, generation=generation)
    target = _store.physical_name(name, generation)
    _store.drop_unpublished(client, target)
    retire = current if current is not None and not keep_old else None
    _store.create_physical(
        client,
        target,
        encoder.dim,
        record,
        options,
        extra_metadata=None if retire is None else {RETIRE_KEY: retire},
    )
    try:
        _fill(
            client,
            source,
            target,
            encoder,
            context,
            batch_size,
            len(texts),
            show_progress_bar,
            sparse=sparse,
            upload=upload,
        )
    except BaseException:
        # the new collection is unpublished and incomplete: remove it, keep the old one
        with contextlib.suppress(Exception):
            client.delete_collection(target)
        raise
    _switch(client, name, current, target, keep_old=keep_old)
    logger.info(
        "recontextualized %s: %d points re-embedded into %s with context %s",
        name,
        len(texts),
        target,
        context.fingerprint[:12],
    )
    return context


def _fill(
    client: QdrantClient,
    source: str,
    target: str,
    encoder: CDEEncoder,
    context: CorpusContext,
    batch_size: int,
    total: int,
    show_progress_bar: bool | None,
    *,
    sparse: SparseEncoder | None,
    upload: UploadOptions | None,
) -> None:
    """Re-embed every point of ``source`` that has text into ``target``, then verify the count.

    Raises:
        CollectionConfigError: ``target`` does not hold exactly the points written.
    """
    points = _store.iter_points(client, source, page_size=batch_size)
    batches = restamped_batches(points, context.fingerprint, batch_size, skip_stamped=False)

    written = embed_and_upsert(
        client,
        target,
        encoder,
        context,
        batches,
        document_prefix=encoder.document_prefix,
        batch_size=batch_size,
        total=total,
        show_progress_bar=show_progress_bar,
        desc="Re-embed",
        sparse=sparse,
        upload=upload,
    )
    with _store.qdrant_errors(client, f"count {target!r}"):
        stored = int(client.count(target, exact=True).count)
    if stored != written:
        msg = (
            f"rebuilt collection {target!r} holds {stored} points, expected {written}; the "
            "alias was not switched and the old collection is unchanged. Were points "
            "written meanwhile? Pause writers and run recontextualize again."
        )
        raise CollectionConfigError(msg)


def _switch(
    client: QdrantClient, name: str, current: str | None, target: str, *, keep_old: bool
) -> None:
    """Point alias ``name`` at ``target`` (atomically when ``name`` already is an alias)."""
    create = models.CreateAliasOperation(
        create_alias=models.CreateAlias(collection_name=target, alias_name=name)
    )
    with _store.qdrant_errors(client, f"switch alias {name!r}"):
        if current is not None:
            delete = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=name))
            client.update_collection_aliases(change_aliases_operations=[delete, create])
            kill_point(AFTER_ALIAS_SWITCH)
            if not keep_old:
                client.delete_collection(current)
            return
        logger.warning(
            "%s is a plain collection, not an alias: deleting it before creating the alias "
            "(readers briefly find no collection)",
            name,
        )
        client.delete_collection(name)
        client.update_collection_aliases(change_aliases_operations=[create])

"""``evaluate`` (a BEIR folder, conditions side by side) and ``evaluate_collection``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cde_rag import CDEEncoder
from cde_rag.errors import InvalidInputError, OptionalDependencyError
from cde_rag_qdrant.errors import CollectionEmptyError, DatasetFormatError
from cde_rag_qdrant.evaluation.beir import RetrievalData, load_beir
from cde_rag_qdrant.evaluation.cache import EvalCache
from cde_rag_qdrant.evaluation.conditions import (
    Condition,
    ContextCondition,
    default_conditions,
    file_name,
    parse_conditions,
)
from cde_rag_qdrant.evaluation.embedders import Representations, Unavailable
from cde_rag_qdrant.evaluation.metrics import METRICS, Run, evaluate_run, write_trec_run
from cde_rag_qdrant.evaluation.report import ConditionResult, EvaluationReport
from cde_rag_qdrant.evaluation.retrieval import collection_run, exact_run
from cde_rag_qdrant.evaluation.significance import N_RESAMPLES, paired_randomization_test

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _data(data: PathLike | RetrievalData, split: str, read_corpus: bool) -> RetrievalData:
    if isinstance(data, RetrievalData):
        return data
    return load_beir(data, split=split, read_corpus=read_corpus)


def _score(result: ConditionResult, run: Run, data: RetrievalData, output_dir: Path | None) -> None:
    values = evaluate_run(run, data.qrels, data.query_ids)
    result.metrics = {m: float(values[m].mean()) for m in METRICS}
    result.per_query = {
        m: dict(zip(data.query_ids, values[m].tolist(), strict=True)) for m in METRICS
    }
    if output_dir is not None:
        path = output_dir / f"{file_name(data.name)}.{data.split}.{file_name(result.name)}.trec"
        write_trec_run(path, run, file_name(result.name))
        result.run_file = path


def _significance(
    results: list[ConditionResult], data: RetrievalData, n_resamples: int
) -> str | None:
    shown = [r for r in results if r.available]
    if not shown:
        return None
    ref = shown[0]
    for other in shown[1:]:
        other.p_values = {
            m: paired_randomization_test(
                [ref.per_query[m][q] for q in data.query_ids],
                [other.per_query[m][q] for q in data.query_ids],
                n_resamples=n_resamples,
            )
            for m in METRICS
        }
    return ref.name


def _finish(
    report: EvaluationReport, output_dir: Path | None, chart: bool, n_resamples: int,
    data: RetrievalData,
) -> EvaluationReport:  # fmt: skip
    report.reference = _significance(report.conditions, data, n_resamples)
    if output_dir is not None and chart and report.reference is not None:
        from cde_rag_qdrant.evaluation.plot import plot_report

        try:
            report.chart = plot_report(
                report, output_dir / f"{file_name(data.name)}.{data.split}.png"
            )
        except OptionalDependencyError as exc:
            report.notes.append(f"no chart: {exc}")
            logger.warning("no chart: %s", exc)
    return report


def evaluate(
    data: PathLike | RetrievalData,
    encoder: CDEEncoder | None = None,
    *,
    conditions: Sequence[str | Condition] | None = None,
    split: str = "test",
    seed: int = 0,
    context_size: int | None = None,
    output_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    chart: bool = True,
    batch_size: int = 32,
    n_resamples: int = N_RESAMPLES,
    show_progress_bar: bool | None = None,
) -> EvaluationReport:
    """Compare retrieval quality of several conditions on a BEIR-format data set.

    Each condition's documents and queries are embedded once (and cached), ranked by exact
    cosine over the whole corpus (or, with ``@hybrid``/``@sparse``/``@int8``/``@binary``, by
    an in-memory Qdrant collection of that configuration holding the same cached vectors),
    and scored with nDCG@10, Recall@10, Recall@100 and MRR@10;
    every condition is tested against the first available one (paired randomization test).

    Args:
        data: A BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) or
            loaded :class:`RetrievalData`.
        encoder: A float32 CDE encoder (None when every condition is a baseline).
        conditions: Spellings (``"uniform"``, ``"diverse@bf16"``, ``"context:other.safetensors"``,
            ``"baseline:sentence-transformers/all-MiniLM-L6-v2"``) or condition objects.
            Default: uniform, diverse, fallback, and uniform@bf16 where the device has native
            bf16.
        split: The qrels split.
        seed: Sampling seed of the context conditions.
        context_size: Context rows (default: the model's).
        output_dir: Where run files (``<data>.<split>.<condition>.trec``) and the chart go;
            None writes nothing.
        cache_dir: Vector and context cache (default: ``output_dir/cache``; none without
            ``output_dir``).
        use_cache: False computes everything afresh and stores nothing.
        chart: Draw the PNG chart into ``output_dir`` (needs the ``plot`` extra; without it
            the report gets a note).
        batch_size: Embedding batch size.
        n_resamples: Random sign assignments of the significance test.
        show_progress_bar: Progress bars (default: when logging at INFO).

    Returns:
        The report; unavailable conditions (no fallback context, no bf16) say why.

    Raises:
        DatasetFormatError: Missing or malformed data files.
        InvalidInputError: Bad condition spellings, or a CDE condition without an encoder.
        ContextMismatchError: A ``context:PATH`` made by another model.
        OptionalDependencyError: A baseline without sentence-transformers (extra ``baseline``).
    """
    dataset = _data(data, split, read_corpus=True)
    if not dataset.doc_ids:
        msg = (
            f"{dataset.name}: no corpus to search; load it with load_beir(path) (read_corpus=True)"
        )
        raise DatasetFormatError(msg)
    chosen = (
        default_conditions(seed, context_size)
        if conditions is None
        else parse_conditions(conditions, seed=seed, size=context_size)
    )
    out = None if output_dir is None else Path(output_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    root = cache_dir if cache_dir is not None else (None if out is None else out / "cache")
    cache = EvalCache(root if use_cache else None)
    reps = Representations(
        dataset, encoder, cache, batch_size=batch_size, show_progress_bar=show_progress_bar
    )
    for cond in chosen:  # refuse foreign context files before any embedding work
        if isinstance(cond, ContextCondition) and cond.source == "file" and encoder is not None:
            from cde_rag import CorpusContext

            if cond.path is not None:
                CorpusContext.load(cond.path).check_compatible(encoder)
    results = []
    for index, cond in enumerate(chosen, start=1):
        logger.info("condition %d/%d: %s", index, len(chosen), cond.name)
        result = ConditionResult(cond.name, cond.description)
        start = time.perf_counter()
        try:
            vectors = reps.vectors(cond)
        except Unavailable as exc:
            result.available, result.reason = False, str(exc)
            logger.warning("condition %s unavailable: %s", cond.name, exc)
            results.append(result)
            continue
        if isinstance(cond, ContextCondition) and cond.indexed:
            from cde_rag_qdrant.evaluation.indexed import indexed_run

            run = indexed_run(cond, vectors, dataset)
        else:
            run = exact_run(vectors.documents, vectors.queries, dataset.doc_ids, dataset.query_ids)
        _score(result, run, dataset, out)
        result.cached, result.notes = vectors.cached, vectors.notes
        result.seconds = time.perf_counter() - start
        results.append(result)
    report = EvaluationReport(
        dataset=dataset.name,
        split=dataset.split,
        n_documents=len(dataset.doc_ids),
        n_queries=len(dataset.query_ids),
        model=None if encoder is None else encoder.identity.model_id,
        conditions=results,
        notes=list(dataset.notes),
    )
    return _finish(report, out, chart, n_resamples, dataset)


def evaluate_collection(
    client: QdrantClient,
    collection_name: str,
    data: PathLike | RetrievalData,
    encoder: CDEEncoder,
    *,
    split: str = "test",
    id_key: str = "_id",
    output_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    chart: bool = True,
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
) -> EvaluationReport:
    """Evaluate an existing cde-rag collection with the queries and qrels of ``data``.

    Queries are embedded with the collection's stored context (and prefix) and searched in
    the collection (top 100, only points of that context). A point's corpus id is its
    payload ``metadata[id_key]`` (``_id``: what ``cde-rag ingest corpus.jsonl`` stores for a
    BEIR corpus), else its point id mapped back through the ids the qrels judge.

    Args:
        client: The Qdrant client.
        collection_name: The collection (or alias).
        data: BEIR folder (``queries.jsonl`` and ``qrels/``; ``corpus.jsonl`` is not read).
        encoder: An encoder of the collection's model.
        split: The qrels split.
        id_key: Metadata key holding the corpus id.
        output_dir: Where the run file and chart go (None: nowhere).
        cache_dir: Query-vector cache (default: ``output_dir/cache``).
        use_cache: False computes afresh.
        chart: Draw the chart (extra ``plot``).
        batch_size: Query embedding batch size.
        show_progress_bar: Progress bars (default: when logging at INFO).

    Raises:
        CollectionNotFoundError, ContextMissingError, ContextMismatchError: As
            ``ContextualCollection.open``.
        DatasetFormatError: Missing or malformed queries or qrels.
    """
    from cde_rag_qdrant.collection import ContextualCollection

    dataset = _data(data, split, read_corpus=False)
    if not id_key:
        msg = "id_key must name the metadata key holding corpus ids (default '_id')"
        raise InvalidInputError(msg)
    col = ContextualCollection.open(client, collection_name, encoder)
    points = col.count()
    if points == 0:
        msg = (
            f"collection {collection_name!r} holds no documents of its context; ingest the "
            f"corpus first: cde-rag ingest corpus.jsonl --collection {collection_name}"
        )
        raise CollectionEmptyError(msg)
    out = None if output_dir is None else Path(output_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    root = cache_dir if cache_dir is not None else (None if out is None else out / "cache")
    cache = EvalCache(root if use_cache else None)
    start = time.perf_counter()
    parts = {
        "kind": "collection-queries",
        "weights": encoder.identity.weights_hash,
        "max_length": encoder.max_length,
        "context": col.fingerprint,
        "prefix": col.record.query_prefix,
        "texts": dataset.queries_hash,
    }
    queries, hit = cache.vectors(
        parts,
        lambda: encoder.embed_queries(
            dataset.query_texts,
            col.context,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            prefix=col.record.query_prefix,
        ),
    )
    judged = sorted({d for rels in dataset.qrels.values() for d in rels})
    run, keyless = collection_run(
        client, collection_name, queries, dataset.query_ids, col.fingerprint, judged,
        id_key=id_key,
    )  # fmt: skip
    name = f"collection:{collection_name}"
    result = ConditionResult(name, f"collection {collection_name!r} with its stored context")
    _score(result, run, dataset, out)
    result.cached = ["queries"] if hit else []
    result.seconds = time.perf_counter() - start
    result.notes.append(f"context {col.fingerprint[:12]}; {points} points")
    notes = list(dataset.notes)
    if keyless:
        notes.append(
            f"{keyless} hits carry no metadata[{id_key!r}]; they were matched to judged corpus "
            "ids through their point ids (UUIDv5 of the id given at ingest)"
        )
    report = EvaluationReport(
        dataset=dataset.name,
        split=dataset.split,
        n_documents=0,
        n_queries=len(dataset.query_ids),
        model=encoder.identity.model_id,
        conditions=[result],
        notes=notes,
    )
    return _finish(report, out, chart, N_RESAMPLES, dataset)

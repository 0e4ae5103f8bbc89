"""The ``cde-rag`` command: ingest files into a contextual Qdrant collection, search it, inspect it.

Run ``cde-rag --help`` (or ``python -m cde_rag_qdrant.cli --help``) for usage and exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cde_rag
from cde_rag.errors import (
    CDERagError,
    CheckpointError,
    ContextCorruptError,
    ContextMismatchError,
    DatasetDownloadError,
    InvalidInputError,
    OptionalDependencyError,
)
from cde_rag_qdrant import cli_qdrant_options as qopts
from cde_rag_qdrant import cli_serve, cli_verify
from cde_rag_qdrant.cli_eval import add_eval_parser, run_eval
from cde_rag_qdrant.errors import (
    CollectionEmptyError,
    CollectionNotFoundError,
    ContextMissingError,
    QdrantUnavailableError,
    StoreLockedError,
)
from cde_rag_qdrant.names import collection_name_arg

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from cde_rag import CDEEncoder
    from cde_rag_qdrant.chunking import Chunker
    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.documents import Skipped
    from cde_rag_qdrant.record import ContextRecord
    from cde_rag_qdrant.results import CollectionSummary

# Only argparse and the light error modules load at start: `cde-rag --help`, `cde-rag CMD
# --help` and usage errors never import torch or qdrant-client (tests/test_startup.py).

logger = logging.getLogger("cde_rag_qdrant.cli")

DEFAULT_MODEL = "jxm/cde-small-v2"
DEFAULT_PATH = "./cde_data"
DEFAULT_COLLECTION = "documents"
DRIFT_SAMPLE = 256

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_MODEL = 4
EXIT_LOCKED = 5
EXIT_NO_COLLECTION = 6
EXIT_CONTEXT = 7
EXIT_UNAVAILABLE = 8
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes:
  0    success
  1    other error (message on stderr)
  2    usage error: bad arguments, missing paths, no supported files
  3    partial: some inputs were skipped (each reported as path:line: reason)
  4    model could not be loaded (offline/unknown hub id: pass a local folder to --model),
       or verify's dataset could not be downloaded (pass a local copy to --dataset)
  5    the embedded store is in use by another process
  6    collection missing, empty, or without a cde-rag context
  7    stored context refused: corrupted, or made by another model
  8    Qdrant server unreachable or refused the API key
  9    verify: the embeddings do not reproduce the model card's table
  130  interrupted

examples:
  cde-rag ingest notes/ papers.jsonl          # embedded store in ./cde_data
  cde-rag search "how do I rotate keys?" --limit 5
  cde-rag info --json
  cde-rag recontextualize --check             # is a new context worth it?
  cde-rag eval ./scifact                      # does the context pay on this data set?
  cde-rag search "q" --qdrant-url http://localhost:6333   # a server (docker compose up -d)
  cde-rag verify --all-switches               # reproduce the cde-small-v2 card (needs the Hub)
"""


class _Fail(Exception):
    """A CLI-level failure with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("store and model")
    g.add_argument(
        "--collection",
        default=DEFAULT_COLLECTION,
        type=collection_name_arg,
        help="collection (default: %(default)s)",
    )
    g.add_argument(
        "--model",
        default=None,
        help="hub id or local folder (default: the model recorded in the collection, "
        f"else {DEFAULT_MODEL})",
    )
    g.add_argument("--revision", default=None, help="hub revision to pin")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    where = g.add_mutually_exclusive_group()
    where.add_argument(
        "--qdrant-path",
        default=None,
        help=f"embedded store folder (default: {DEFAULT_PATH})",
    )
    where.add_argument("--qdrant-url", default=None, help="Qdrant server URL")
    g.add_argument(
        "--api-key",
        default=os.environ.get("QDRANT_API_KEY"),
        help="server API key (default: $QDRANT_API_KEY)",
    )
    out = parent.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    out.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return parent


def _context_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("context (when one is built)")
    g.add_argument("--context-size", type=int, default=None, help="context rows (default: model's)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    g.add_argument("--strategy", choices=["uniform", "diverse"], default="uniform")


def _ray_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("engine (extra ray: embed on a Ray cluster)")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process embeds (default); ray: a pool of Ray actors embeds with the "
        "same context and this process writes",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster (auto, ray://head:10001); default: start or join a local instance",
    )
    g.add_argument("--actors", type=int, default=2, help="Ray actors, one model each (default 2)")
    g.add_argument(
        "--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (0: CPU actors)"
    )
    g.add_argument(
        "--cpus-per-actor", type=float, default=1.0, help="CPUs reserved per actor (default 1)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="cde-rag",
        description="Contextual document embeddings (CDE) in a Qdrant collection.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cde-rag {cde_rag.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    kw: dict[str, Any] = {"parents": [common], "epilog": EPILOG}
    kw["formatter_class"] = argparse.RawDescriptionHelpFormatter
    ingest = sub.add_parser(
        "ingest", help="chunk, embed and sync files (.md .txt .rst .jsonl .html .pdf)", **kw
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    ingest.add_argument("--batch-size", type=int, default=64, help="chunks per upsert")
    ingest.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="most tokens per chunk (default: the model window minus prefix and special tokens)",
    )
    ingest.add_argument(
        "--chunk-overlap", type=int, default=0, help="tokens shared by neighbouring chunks"
    )
    ingest.add_argument(
        "--prune",
        action="store_true",
        help="delete stored documents of these folders/files that are gone",
    )
    _context_options(ingest)
    _ray_options(ingest)
    qopts.add_ingest_options(ingest)
    qopts.add_tenant_option(ingest)
    search = sub.add_parser("search", help="search the collection", **kw)
    search.add_argument("query", help="the query text")
    search.add_argument("-k", "--limit", type=int, default=5, help="results (default: 5)")
    search.add_argument("--score-threshold", type=float, default=None)
    search.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata filter (repeatable; VALUE parsed as JSON when possible)",
    )
    qopts.add_search_options(search)
    qopts.add_tenant_option(search)
    info = sub.add_parser("info", help="collection and context provenance", **kw)
    qopts.add_tenant_option(info)
    recon = sub.add_parser(
        "recontextualize", help="rebuild the context from the collection's texts", **kw
    )
    recon.add_argument("--check", action="store_true", help="only report drift, change nothing")
    recon.add_argument("--batch-size", type=int, default=64)
    recon.add_argument("--skip-textless", action="store_true", help="drop points without text")
    recon.add_argument("--keep-old", action="store_true", help="keep the old collection")
    _context_options(recon)
    qopts.add_tenant_option(recon)
    cli_verify.add_parser(sub, EPILOG)
    add_eval_parser(sub, argparse.RawDescriptionHelpFormatter, EPILOG)
    cli_serve.add_parser(sub, EPILOG)
    return parser


# -- helpers ------------------------------------------------------------------------------


def _emit(args: argparse.Namespace, data: dict[str, Any], human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human)


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def _connect(args: argparse.Namespace) -> QdrantClient:
    from cde_rag_qdrant import _store
    from cde_rag_qdrant._qdrant_internals import is_store

    if args.qdrant_url:
        return _store.connect(url=args.qdrant_url, api_key=args.api_key)
    path = Path(args.qdrant_path or DEFAULT_PATH)
    if args.command != "ingest" and not is_store(path):
        msg = (
            f"no embedded Qdrant store at {str(path)!r}; create one with `cde-rag ingest PATH"
            f" --qdrant-path {path}`, or pass --qdrant-path/--qdrant-url to point at yours"
        )
        raise _Fail(msg, EXIT_NO_COLLECTION)
    return _store.connect(path)


def _stored_record(client: QdrantClient, name: str) -> ContextRecord | None:
    from cde_rag_qdrant import _store

    try:
        return _store.read_record(client, name)
    except (CollectionNotFoundError, ContextMissingError, ContextCorruptError):
        return None


def _load_encoder(args: argparse.Namespace, record: ContextRecord | None) -> CDEEncoder:
    from cde_rag import CDEEncoder

    model, revision = args.model, args.revision
    if model is None and record is not None:
        model, revision = record.model_id, revision or record.revision
    model = model or DEFAULT_MODEL
    args.model_source = (model, revision)  # what Ray actors load (--engine ray)
    logger.info("loading model %s", model)
    return CDEEncoder.from_pretrained(model, revision=revision, device=args.device)


def _parse_filters(items: Sequence[str]) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            msg = f"--filter {item!r}: expected KEY=VALUE, e.g. --filter source=notes/a.md"
            raise _Fail(msg, EXIT_USAGE)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out or None


def _report_skipped(args: argparse.Namespace, skipped: Sequence[Skipped]) -> None:
    for item in skipped:
        print(f"cde-rag: skipped {item}", file=sys.stderr)


# -- commands -----------------------------------------------------------------------------


def _check_options(args: argparse.Namespace) -> None:
    """Option checks that need no model: fail before anything is read or created."""
    for name in ("batch_size", "context_size", "chunk_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            msg = f"{flag} {value}: expected a positive integer"
            raise _Fail(msg, EXIT_USAGE)
    overlap = getattr(args, "chunk_overlap", 0)
    if overlap < 0:
        msg = f"--chunk-overlap {overlap}: expected 0 or more tokens"
        raise _Fail(msg, EXIT_USAGE)
    if getattr(args, "engine", "local") == "ray":
        _check_ray_options(args)


def _check_ray_options(args: argparse.Namespace) -> None:
    if args.actors < 1:
        msg = f"--actors {args.actors}: expected a positive integer"
        raise _Fail(msg, EXIT_USAGE)
    for flag, value in (
        ("--gpus-per-actor", args.gpus_per_actor),
        ("--cpus-per-actor", args.cpus_per_actor),
    ):
        if value < 0:
            msg = f"{flag} {value}: expected a number >= 0"
            raise _Fail(msg, EXIT_USAGE)
    if importlib.util.find_spec("ray") is None:
        msg = "--engine ray needs Ray."
        raise OptionalDependencyError(msg, extra="ray")


def _read_inputs(args: argparse.Namespace) -> None:
    """Find and check the ingest inputs before touching the store (a typo creates nothing)."""
    from cde_rag_qdrant.ingest_files import check_unique_ids, discover

    _check_options(args)
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        msg = f"no such file or folder: {', '.join(missing)}"
        raise _Fail(msg, EXIT_USAGE)
    inputs = discover(args.paths)
    check_unique_ids(inputs.documents)
    _report_skipped(args, inputs.skipped)
    if inputs.unsupported:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(inputs.unsupported.items()))
        n = sum(inputs.unsupported.values())
        _note(args, f"cde-rag: skipped {n} files of unsupported types ({kinds})")
    if not inputs.documents:
        code = EXIT_PARTIAL if inputs.skipped else EXIT_USAGE
        msg = (
            f"no documents to ingest in {', '.join(map(str, args.paths))} "
            "(.txt, .md, .rst, .jsonl, .html, .pdf)"
        )
        raise _Fail(msg, code)
    args.inputs = inputs


def _chunk_sample(
    args: argparse.Namespace, encoder: CDEEncoder, chunker: Chunker, what: str
) -> tuple[list[str], int]:
    """A sample of the inputs' chunks to build a context from, and the context size."""
    from cde_rag_qdrant.sync import sample_chunk_texts

    size = args.context_size or encoder.context_size
    encoder.check_context_size(size)
    limit = max(20 * size, 10_000)
    sample, n_chunks = sample_chunk_texts(
        args.inputs.documents, chunker, limit=limit, seed=args.seed
    )
    if not sample:
        msg = "no readable text in the inputs; nothing was created"
        raise _Fail(msg, EXIT_PARTIAL)
    _note(args, f"building a context for {what} from {n_chunks} chunks")
    return sample, size


def _new_collection(
    args: argparse.Namespace, client: QdrantClient, encoder: CDEEncoder, chunker: Chunker
) -> ContextualCollection:
    """Create the collection with a context built from a sample of the chunks."""
    from cde_rag_qdrant._testhooks import crash_point
    from cde_rag_qdrant.collection import ContextualCollection

    sample, size = _chunk_sample(args, encoder, chunker, "the collection")
    col = ContextualCollection.create(
        client,
        args.collection,
        encoder,
        corpus=sample,
        size=size,
        seed=args.seed,
        strategy=args.strategy,
        show_progress_bar=not args.quiet,
        options=qopts.collection_options(args),
        tenant=args.tenant,
    )
    crash_point("created")
    return col


@contextlib.contextmanager
def _embedder(args: argparse.Namespace, col: ContextualCollection) -> Iterator[Any]:
    """None for ``--engine local``; a Ray actor pool sharing the collection's context."""
    if args.engine != "ray":
        yield None
        return
    from cde_rag_qdrant._qdrant_internals import is_local
    from cde_rag_ray import ModelSpec, RayEmbedder, RayOptions

    model, revision = args.model_source
    folder = Path(model)
    name = str(folder.resolve()) if folder.exists() else model  # every node must read it
    options = RayOptions(
        address=args.ray_address,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
    )
    spec = ModelSpec(name, {"revision": revision} if revision else {})
    writes = "this process writes" if is_local(col.client) else "the actors write to the server"
    _note(args, f"starting {options.actors} Ray actors (context {col.fingerprint[:12]}; {writes})")
    with RayEmbedder(spec, col.context, options, prefix=col.record.document_prefix) as pool:
        yield pool


def _ingest(args: argparse.Namespace, client: QdrantClient) -> int:
    from cde_rag_qdrant import _store
    from cde_rag_qdrant.chunking import Chunker
    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.sync import sample_changed_texts

    inputs = args.inputs
    record = _stored_record(client, args.collection)
    encoder = _load_encoder(args, record)
    chunker = Chunker(encoder, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)
    created = not _store.exists(client, args.collection)
    if created:
        col = _new_collection(args, client, encoder, chunker)
    else:
        ignored = qopts.creation_flags_given(args)
        if ignored:
            _note(args, f"note: {' '.join(ignored)} ignored: the collection exists")
        col = ContextualCollection.open(client, args.collection, encoder)
        if args.tenant is not None and args.tenant not in col.tenants():
            created = True
            sample, size = _chunk_sample(args, encoder, chunker, f"tenant {args.tenant!r}")
            col = col.add_tenant(
                args.tenant,
                corpus=sample,
                size=size,
                seed=args.seed,
                strategy=args.strategy,
                show_progress_bar=not args.quiet,
            )
        elif args.tenant is not None:
            col = ContextualCollection.open(client, args.collection, encoder, tenant=args.tenant)
        if args.context_size is not None and not created:
            _note(args, "note: --context-size is ignored: the collection keeps its context")
    col.upload_options = qopts.upload_options(args)
    prune = args.prune
    if prune and inputs.skipped:
        _note(
            args,
            f"note: not pruning: {len(inputs.skipped)} inputs could not be read, and their "
            "documents would look gone; fix or remove them and run again with --prune",
        )
        prune = False
    with _embedder(args, col) as embedder:
        report = col.sync(
            inputs.documents,
            chunk_size=chunker.chunk_size,
            chunk_overlap=chunker.chunk_overlap,
            prune={"root": inputs.roots} if prune else False,
            batch_size=args.batch_size,
            show_progress_bar=not args.quiet,
            embedder=embedder,
        )
    drift = None
    if not created and report.changed_ids:
        texts = sample_changed_texts(col, report.changed_ids[:DRIFT_SAMPLE], DRIFT_SAMPLE)
        drift = col.drift(texts, show_progress_bar=False) if texts else None
    total = col.count()
    if drift is not None and drift.recommended:
        _note(
            args,
            f"note: these documents sit far from the stored context (drift ratio "
            f"{drift.ratio:.2f}); consider `cde-rag recontextualize --collection "
            f"{args.collection}`",
        )
    _report_skipped(args, report.skipped)
    skipped = [*inputs.skipped, *report.skipped]
    r = report
    n_docs = r.documents_added + r.documents_updated + r.documents_unchanged
    data = {
        "collection": args.collection,
        "ingested": n_docs,
        "files": inputs.files,
        "documents": {
            "added": r.documents_added,
            "updated": r.documents_updated,
            "unchanged": r.documents_unchanged,
            "removed": r.documents_removed,
        },
        "chunks": {
            "added": r.chunks_added,
            "removed": r.chunks_removed,
            "unchanged": r.chunks_unchanged,
            "embedded": r.chunks_embedded,
        },
        "chunk_size": chunker.chunk_size,
        "chunk_overlap": chunker.chunk_overlap,
        "window": encoder.max_length,
        "skipped": [s.as_dict() for s in skipped],
        "unsupported": dict(inputs.unsupported),
        "points": total,
        "context_created": created,
        "tenant": args.tenant,
        "fingerprint": col.fingerprint,
        "drift": None if drift is None else drift.as_dict(),
    }
    lines = [
        f"synced {n_docs} documents from {inputs.files} files into {args.collection!r} "
        f"(context {col.fingerprint[:12]}{', new' if created else ''}); chunks of at most "
        f"{chunker.chunk_size} tokens (window {encoder.max_length}), overlap "
        f"{chunker.chunk_overlap}",
        f"  documents: {r.documents_added} added, {r.documents_updated} updated, "
        f"{r.documents_unchanged} unchanged, {r.documents_removed} removed",
        f"  chunks:    {r.chunks_added} added, {r.chunks_removed} removed, "
        f"{r.chunks_unchanged} unchanged ({r.chunks_embedded} embedded); {total} points",
    ]
    if skipped or inputs.unsupported:
        lines.append(
            f"  skipped {len(skipped)} inputs, {sum(inputs.unsupported.values())} files of "
            "unsupported types"
        )
    _emit(args, data, "\n".join(lines))
    return EXIT_PARTIAL if skipped else EXIT_OK


def _position(metadata: dict[str, Any]) -> str:
    """``chunk 3/12, chars 1200-2400, p. 4, § Install > Linux`` (what the metadata has)."""
    parts = []
    if isinstance(metadata.get("chunk_index"), int) and isinstance(
        metadata.get("chunk_count"), int
    ):
        parts.append(f"chunk {metadata['chunk_index'] + 1}/{metadata['chunk_count']}")
    if isinstance(metadata.get("start"), int) and isinstance(metadata.get("end"), int):
        parts.append(f"chars {metadata['start']}-{metadata['end']}")
    if isinstance(metadata.get("page"), int):
        parts.append(f"p. {metadata['page']}")
    headings = metadata.get("headings")
    if isinstance(headings, list) and headings:
        parts.append("§ " + " > ".join(map(str, headings)))
    return ", ".join(parts)


def _search(args: argparse.Namespace, client: QdrantClient) -> int:
    from cde_rag_qdrant import _store
    from cde_rag_qdrant.collection import ContextualCollection

    if not args.query.strip():
        msg = "the query is empty"
        raise _Fail(msg, EXIT_USAGE)
    record = _store.read_record(client, args.collection)
    encoder = _load_encoder(args, record)
    col = ContextualCollection.open(client, args.collection, encoder, tenant=args.tenant)
    if col.count() == 0:
        where = "" if args.tenant is None else f" --tenant {args.tenant}"
        tenants = col.tenants() if args.tenant is None else []
        msg = (
            f"collection {args.collection!r} is empty; add documents first: "
            f"cde-rag ingest PATH --collection {args.collection}{where}"
            if not tenants
            else f"collection {args.collection!r} holds only tenants' points; pass --tenant "
            f"NAME (tenants: {', '.join(tenants)})"
        )
        raise _Fail(msg, EXIT_NO_COLLECTION)
    hits = col.search(
        args.query,
        limit=args.limit,
        score_threshold=args.score_threshold,
        query_filter=_parse_filters(args.filter),
        **qopts.search_kwargs(args),
    )
    lines = []
    for rank, hit in enumerate(hits, start=1):
        source = hit.metadata.get("source", hit.id)
        position = _position(hit.metadata)
        where = f"{source} ({position})" if position else str(source)
        snippet = " ".join(hit.text.split())
        snippet = snippet if len(snippet) <= 160 else snippet[:157] + "..."
        lines.append(f"{rank:>2}. {hit.score:.4f}  {where}\n    {snippet}")
    human = "\n".join(lines) if lines else "no results"
    data = {
        "collection": args.collection,
        "query": args.query,
        "mode": args.mode,
        "tenant": args.tenant,
        "hits": [
            {
                "id": h.id,
                "score": h.score,
                "source": h.metadata.get("source"),
                "position": _position(h.metadata) or None,
                "text": h.text,
                "metadata": h.metadata,
            }
            for h in hits
        ],
    }
    _emit(args, data, human)
    return EXIT_OK


def _info(args: argparse.Namespace, client: QdrantClient) -> int:
    from cde_rag_qdrant import _store

    if args.tenant is None:
        record = _store.read_record(client, args.collection)
        record.to_context(args.collection)  # verify the bytes against the fingerprint
        summary = _store.summarize(client, args.collection, record)
    else:
        summary = _tenant_summary(client, args.collection, args.tenant)
    data = summary.as_dict()
    p = summary.provenance
    human = "\n".join(
        [
            f"collection   {summary.name} -> {summary.physical_name} ({summary.location})",
            f"points       {summary.points} searchable / {summary.points_total} total",
            f"model        {summary.model_id} ({summary.model_version}, weights "
            f"{summary.weights_hash[:12]}, revision {summary.revision})",
            f"context      {summary.fingerprint[:16]} shape {summary.context_shape} "
            f"generation {summary.generation}",
            f"built        {p.created_at} from {p.n_source_documents} documents "
            f"(strategy {p.strategy}, seed {p.seed}, cde-rag {p.library_version})",
            f"prefixes     query {summary.query_prefix!r}, document {summary.document_prefix!r}",
            f"options      {qopts.describe_options(summary.options)}",
        ]
        + ([f"tenant       {summary.tenant}"] if summary.tenant else [])
        + ([f"tenants      {', '.join(summary.tenants)}"] if summary.tenants else [])
        + (
            [
                f"unstamped    {summary.points_unstamped} points without a context fingerprint. "
                + _store.UNSTAMPED_FIX
            ]
            if summary.points_unstamped
            else []
        )
        + [f"orphan       {o} (the next recontextualize removes it)" for o in summary.orphans]
    )
    _emit(args, data, human)
    return EXIT_OK


def _tenant_summary(client: QdrantClient, name: str, tenant: str) -> CollectionSummary:
    """Summary of one tenant: its context, its points (no model needed)."""
    from cde_rag_qdrant import _store
    from cde_rag_qdrant import tenants as _tenants

    metadata = _store.collection_info(client, name).config.metadata
    record = _tenants.tenant_record(metadata, name, tenant)
    record.to_context(name)  # verify the bytes against the fingerprint
    return _store.summarize(
        client,
        name,
        record,
        scope=[_tenants.tenant_condition(tenant)],
        tenant=tenant,
        tenants=_tenants.list_tenants(metadata),
    )


def _recontextualize_tenant(args: argparse.Namespace, client: QdrantClient) -> int:
    from cde_rag_qdrant.collection import ContextualCollection

    encoder = _load_encoder(args, _stored_record(client, args.collection))
    col = ContextualCollection.open(client, args.collection, encoder, tenant=args.tenant)
    if args.check:
        report = col.drift(show_progress_bar=not args.quiet)
        verdict = "recommended" if report.recommended else "not needed"
        human = f"tenant {args.tenant!r}: drift ratio {report.ratio:.2f}: recontextualize {verdict}"
        data = {"collection": args.collection, "tenant": args.tenant, **report.as_dict()}
        _emit(args, data, human)
        return EXIT_OK
    old = col.fingerprint
    col.recontextualize(
        size=args.context_size,
        seed=args.seed,
        strategy=args.strategy,
        batch_size=args.batch_size,
        show_progress_bar=not args.quiet,
    )
    summary = col.info()
    data = {**summary.as_dict(), "previous_fingerprint": old}
    human = (
        f"recontextualized tenant {args.tenant!r} of {args.collection!r}: {summary.points} "
        f"points re-embedded in place with context {col.fingerprint[:12]} (was {old[:12]})"
    )
    _emit(args, data, human)
    return EXIT_OK


def _recontextualize(args: argparse.Namespace, client: QdrantClient) -> int:
    if args.tenant is not None:
        return _recontextualize_tenant(args, client)
    from cde_rag_qdrant import _store
    from cde_rag_qdrant.collection import ContextualCollection
    from cde_rag_qdrant.recontextualize import rebuild

    record = _stored_record(client, args.collection)
    encoder = _load_encoder(args, record)
    if args.check:
        col = ContextualCollection.open(client, args.collection, encoder)
        report = col.drift(show_progress_bar=not args.quiet)
        verdict = "recommended" if report.recommended else "not needed"
        human = (
            f"drift ratio {report.ratio:.2f} (1 = like the context), {report.outlier_fraction:.0%}"
            f" of {report.n_documents} sampled documents far from it: recontextualize {verdict}"
        )
        _emit(args, {"collection": args.collection, **report.as_dict()}, human)
        return EXIT_OK
    old = record.fingerprint if record else None
    context = rebuild(
        client,
        args.collection,
        encoder,
        size=args.context_size,
        seed=args.seed,
        strategy=args.strategy,
        batch_size=args.batch_size,
        skip_textless=args.skip_textless,
        keep_old=args.keep_old,
        show_progress_bar=not args.quiet,
    )
    summary = _store.summarize(client, args.collection)
    data = {**summary.as_dict(), "previous_fingerprint": old}
    human = (
        f"recontextualized {args.collection!r}: {summary.points} points re-embedded with context "
        f"{context.fingerprint[:12]} (was {old[:12] if old else 'none'}), now "
        f"{summary.physical_name}"
    )
    _emit(args, data, human)
    return EXIT_OK


_COMMANDS = {
    "ingest": _ingest,
    "search": _search,
    "info": _info,
    "recontextualize": _recontextualize,
}
_STORELESS = {"verify": cli_verify.run}
"""Commands that neither need nor create a Qdrant store."""


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, _Fail):
        return exc.code
    table: list[tuple[tuple[type[BaseException], ...], int]] = [
        ((StoreLockedError,), EXIT_LOCKED),
        ((CheckpointError, DatasetDownloadError), EXIT_MODEL),
        ((CollectionNotFoundError, CollectionEmptyError, ContextMissingError), EXIT_NO_COLLECTION),
        ((ContextCorruptError, ContextMismatchError), EXIT_CONTEXT),
        ((QdrantUnavailableError,), EXIT_UNAVAILABLE),
        ((InvalidInputError,), EXIT_USAGE),
    ]
    return next((code for kind, code in table if isinstance(exc, kind)), EXIT_ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``cde-rag --help``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="cde-rag: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    client: QdrantClient | None = None
    try:
        if args.command in _STORELESS:
            return _STORELESS[args.command](args)
        if args.command == "serve":
            return cli_serve.run(args)
        if args.command == "ingest":
            _read_inputs(args)
        if args.command == "eval":  # opens a store only for --collection
            return run_eval(args, lambda: _connect(args))
        if args.command == "recontextualize":
            _check_options(args)
        client = _connect(args)
        return _COMMANDS[args.command](args, client)
    except (_Fail, CDERagError) as exc:
        code = _exit_code(exc)
        print(f"cde-rag: error: {exc}", file=sys.stderr)
        if code == EXIT_MODEL and isinstance(exc, CheckpointError):
            print(
                "cde-rag: hint: pass a local checkpoint folder with --model PATH", file=sys.stderr
            )
        if args.json:
            error = {"type": type(exc).__name__, "message": str(exc), "exit_code": code}
            print(json.dumps({"error": error}, indent=2))
        return code
    except KeyboardInterrupt:
        print("cde-rag: interrupted; re-run the same command to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())

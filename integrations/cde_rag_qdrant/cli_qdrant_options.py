"""``cde-rag`` flags for hybrid search, collection options, upload streams and tenants.

Kept apart from ``cli.py``: these functions add the flags to its subcommands and turn the
parsed arguments into :class:`CollectionOptions`, :class:`UploadOptions` and search keywords.
Nothing heavy is imported at module level (``cde-rag --help`` stays fast).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cde_rag_qdrant._upload import UploadOptions
    from cde_rag_qdrant.options import CollectionOptions


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"expected an integer >= 1, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_tenant_option(parser: argparse.ArgumentParser) -> None:
    """``--tenant NAME``: work on one tenant's points with its own context."""
    parser.add_argument(
        "--tenant",
        default=None,
        metavar="NAME",
        help="one tenant of the collection: its own context, its points only",
    )


def add_ingest_options(parser: argparse.ArgumentParser) -> None:
    """Creation options (used when the collection is created) and upload streams."""
    g = parser.add_argument_group("new collection (ignored when it exists)")
    g.add_argument(
        "--hybrid", action="store_true", help="add a lexical sparse vector for hybrid search"
    )
    g.add_argument("--quantization", choices=["int8", "binary"], default=None)
    g.add_argument("--on-disk", action="store_true", help="keep vectors and payloads on disk")
    g.add_argument("--hnsw-m", type=int, default=None, metavar="M", help="HNSW edges per node")
    g.add_argument("--hnsw-ef-construct", type=int, default=None, metavar="EF")
    g.add_argument("--shards", type=_positive_int, default=None, help="shards (servers)")
    g.add_argument("--replicas", type=_positive_int, default=None, help="replication (servers)")
    u = parser.add_argument_group("upload")
    u.add_argument(
        "--parallel",
        type=_positive_int,
        default=1,
        metavar="N",
        help="upload requests in flight at once on a server, per Ray actor with --engine ray "
        "(default: 1)",
    )


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """``--mode``, ``--fusion`` and the quantization search parameters."""
    parser.add_argument(
        "--mode",
        choices=["dense", "sparse", "hybrid"],
        default="dense",
        help="dense (CDE), sparse (lexical) or hybrid (both, fused by Qdrant)",
    )
    parser.add_argument("--fusion", choices=["rrf", "dbsf"], default="rrf")
    parser.add_argument(
        "--rescore",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with quantization: re-rank with the full vectors",
    )
    parser.add_argument("--oversampling", type=float, default=None, metavar="X")


def collection_options(args: argparse.Namespace) -> CollectionOptions:
    """The :class:`CollectionOptions` the ingest flags ask for."""
    from cde_rag_qdrant.options import CollectionOptions

    return CollectionOptions(
        quantization=args.quantization,
        on_disk=True if args.on_disk else None,
        on_disk_payload=True if args.on_disk else None,
        hnsw_m=args.hnsw_m,
        hnsw_ef_construct=args.hnsw_ef_construct,
        shards=args.shards,
        replicas=args.replicas,
        hybrid=args.hybrid,
    )


def creation_flags_given(args: argparse.Namespace) -> list[str]:
    """The creation flags given on the command line (to note that they are ignored)."""
    given = {
        "--hybrid": args.hybrid,
        "--quantization": args.quantization is not None,
        "--on-disk": args.on_disk,
        "--hnsw-m": args.hnsw_m is not None,
        "--hnsw-ef-construct": args.hnsw_ef_construct is not None,
        "--shards": args.shards is not None,
        "--replicas": args.replicas is not None,
    }
    return [flag for flag, on in given.items() if on]


def upload_options(args: argparse.Namespace) -> UploadOptions:
    """The :class:`UploadOptions` of an ingest."""
    from cde_rag_qdrant._upload import UploadOptions

    return UploadOptions(parallel=args.parallel)


def search_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``ContextualCollection.search``."""
    return {
        "mode": args.mode,
        "fusion": args.fusion,
        "rescore": args.rescore,
        "oversampling": args.oversampling,
    }


def describe_options(options: dict[str, Any]) -> str:
    """One line for ``cde-rag info``."""
    parts = [f"quantization {options.get('quantization') or 'none'}"]
    if options.get("hybrid"):
        sparse = options.get("sparse") or {}
        parts.append(f"hybrid (sparse vector {sparse.get('vector_name')!r})")
    else:
        parts.append("dense only")
    if options.get("on_disk"):
        parts.append("vectors on disk")
    if options.get("on_disk_payload"):
        parts.append("payload on disk")
    for key, label in (
        ("hnsw_m", "hnsw m"),
        ("hnsw_ef_construct", "ef_construct"),
        ("shards", "shards"),
        ("replicas", "replicas"),
    ):
        if options.get(key) is not None:
            parts.append(f"{label} {options[key]}")
    return ", ".join(parts)

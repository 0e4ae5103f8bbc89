"""``cde-rag serve``: the OpenAI-compatible embedding and search server (extra ``server``).

This module only builds the subparser and the handler; FastAPI, uvicorn and the model are
imported when the command runs, so ``cde-rag --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

logger = logging.getLogger("cde_rag_qdrant.cli")

API_KEY_ENV = "CDE_RAG_API_KEY"

EXAMPLES = """\
examples:
  cde-rag serve                                   # collections of ./cde_data on 127.0.0.1:8000
  cde-rag serve --qdrant-url http://localhost:6333 --host 0.0.0.0 --api-key "$KEY"
  cde-rag serve --context kb=kb.context.safetensors --model ./cde-small-v2

  curl localhost:8000/v1/embeddings -H 'Content-Type: application/json' \\
       -d '{"model": "documents:query", "input": "how do I rotate keys?"}'

model names: a collection or context name, optionally with ':query' or ':document' (or send
"input_type": "query"|"document"); without either, --default-input-type applies.
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        msg = f"expected a port number 0..65535 (0: any free port), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _keys_from_env() -> list[str]:
    return [k.strip() for k in os.environ.get(API_KEY_ENV, "").split(",") if k.strip()]


def add_parser(sub: Any, epilog: str) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``sub`` (the parent's subparsers)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="OpenAI-compatible embedding and search server (extra: server)",
        description="Serve embeddings (POST /v1/embeddings, OpenAI's schema) and search for "
        "the collections of a Qdrant store and for context files, with one model loaded once.",
        epilog=EXAMPLES + "\n" + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = parser.add_argument_group("what to serve")
    g.add_argument(
        "--collection",
        action="append",
        default=None,
        metavar="NAME",
        help="serve this collection (repeatable; default: every cde-rag collection in the store)",
    )
    g.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also serve a context saved with CorpusContext.save() under NAME (repeatable)",
    )
    g.add_argument(
        "--model",
        default=None,
        help="hub id or local folder (default: the collections' model, else the context "
        "file's, else jxm/cde-small-v2)",
    )
    g.add_argument("--revision", default=None, help="hub revision to pin")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    g.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="compute dtype (default: auto = bfloat16 on CUDA GPUs that support it, else "
        "float32); vectors are returned as float32 either way",
    )
    where = g.add_mutually_exclusive_group()
    where.add_argument(
        "--qdrant-path",
        default=None,
        help="embedded store folder (default: ./cde_data when it exists; the server holds it "
        "while it runs: use a Qdrant server to ingest concurrently)",
    )
    where.add_argument("--qdrant-url", default=None, help="Qdrant server URL")
    g.add_argument(
        "--qdrant-api-key",
        default=os.environ.get("QDRANT_API_KEY"),
        help="Qdrant server API key (default: $QDRANT_API_KEY)",
    )
    h = parser.add_argument_group("http")
    h.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    h.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0: any free)")
    h.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' (repeatable; default: ${API_KEY_ENV}, "
        "comma-separated; none: no authentication)",
    )
    b = parser.add_argument_group("batching and limits")
    b.add_argument("--no-batching", action="store_true", help="one encoder call per request")
    b.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the model once before accepting requests (default: on GPUs, off on CPU)",
    )
    b.add_argument(
        "--max-batch-tokens",
        type=_positive,
        default=16384,
        help="token budget of one coalesced encoder call (default: %(default)s)",
    )
    b.add_argument(
        "--max-inputs",
        type=_positive,
        default=2048,
        help="texts or documents per request (default: %(default)s)",
    )
    b.add_argument(
        "--max-input-chars",
        type=_positive,
        default=100_000,
        help="characters per text (default: %(default)s)",
    )
    b.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=32 * 1024 * 1024,
        help="request body size (default: %(default)s)",
    )
    b.add_argument(
        "--default-input-type",
        choices=["query", "document"],
        default="document",
        help="when a request names neither (default: document, so ingest through any "
        "OpenAI client stores document vectors; ask for NAME:query for queries)",
    )
    b.add_argument(
        "--truncate",
        action="store_true",
        help="cut texts longer than the model's window instead of refusing them (HTTP 400)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    out.add_argument("-v", "--verbose", action="store_true", help="log at INFO, access log on")
    parser.set_defaults(json=False)
    return parser


def _contexts(items: list[str]) -> dict[str, Path]:
    from cde_rag.errors import InvalidInputError

    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            msg = f"--context {item!r}: expected NAME=PATH, e.g. --context kb=kb.safetensors"
            raise InvalidInputError(msg)
        if name in out:
            msg = f"--context {name}=...: the name {name!r} is given twice"
            raise InvalidInputError(msg)
        if not Path(path).is_file():
            msg = (
                f"--context {item}: no context file at {path!r} (save one with CorpusContext.save)"
            )
            raise InvalidInputError(msg)
        out[name] = Path(path)
    return out


def _open_store(args: argparse.Namespace) -> QdrantClient | None:
    from cde_rag_qdrant import _store
    from cde_rag_qdrant._qdrant_internals import is_store
    from cde_rag_qdrant.cli import DEFAULT_PATH
    from cde_rag_qdrant.errors import CollectionNotFoundError

    if args.qdrant_url:
        return _store.connect(url=args.qdrant_url, api_key=args.qdrant_api_key or None)
    path = Path(args.qdrant_path or DEFAULT_PATH)
    if not is_store(path):
        if args.qdrant_path or args.collection:
            msg = f"no embedded Qdrant store at {str(path)!r}; pass --qdrant-path/--qdrant-url"
            raise CollectionNotFoundError(msg)
        return None
    return _store.connect(path)


def _model(args: argparse.Namespace, client: QdrantClient | None, files: dict[str, Path]) -> str:
    """--model, else the model of the first collection, else of the first context file."""
    from cde_rag import CorpusContext
    from cde_rag_qdrant import _store
    from cde_rag_qdrant.cli import DEFAULT_MODEL
    from cde_rag_qdrant.server.registry import _store_names

    if args.model:
        return str(args.model)
    if client is not None:
        for name in args.collection or _store_names(client):
            try:
                record = _store.read_record(client, name)
            except (LookupError, ValueError):
                continue
            args.revision = args.revision or record.revision
            return record.model_id
    for path in files.values():
        return CorpusContext.load(path).provenance.model_id
    return DEFAULT_MODEL


def run(args: argparse.Namespace) -> int:
    """Load the model and contexts, then serve until SIGINT/SIGTERM (accepted work finishes)."""
    from cde_rag.errors import InvalidInputError, OptionalDependencyError

    try:
        import uvicorn

        from cde_rag_qdrant.server import ContextRegistry, ServerSettings, create_app
    except ImportError as exc:
        if isinstance(exc, OptionalDependencyError):
            raise
        msg = f"cde-rag serve needs the server extra ({exc.name} is missing)."
        raise OptionalDependencyError(msg, extra="server") from exc
    from cde_rag import CDEEncoder

    logging.getLogger("cde_rag").setLevel(logging.WARNING if args.quiet else logging.INFO)
    files = _contexts(args.context)
    keys = args.api_key if args.api_key is not None else _keys_from_env()
    settings = ServerSettings(
        api_keys=tuple(keys),
        batching=not args.no_batching,
        max_batch_tokens=args.max_batch_tokens,
        max_inputs=args.max_inputs,
        max_input_chars=args.max_input_chars,
        max_body_bytes=args.max_body_bytes,
        default_input_type=args.default_input_type,
        truncate=args.truncate,
        warmup=args.warmup,
    )
    client = _open_store(args)
    if client is None and not files:
        msg = (
            "nothing to serve: no Qdrant store (./cde_data does not exist) and no --context "
            "NAME=PATH. Ingest documents first (cde-rag ingest PATH), or pass --qdrant-path, "
            "--qdrant-url or --context."
        )
        raise InvalidInputError(msg)
    try:
        model = _model(args, client, files)
        logger.info("loading model %s", model)
        encoder = CDEEncoder.from_pretrained(
            model, revision=args.revision, device=args.device, dtype=args.dtype
        )
        registry = ContextRegistry.load(
            encoder, client, collections=args.collection, contexts=files
        )
        app = create_app(encoder, registry, settings)
        sock = _bind(args.host, args.port)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        names = ", ".join(sorted(registry.entries))
        auth = "API key required" if keys else "no API key"
        print(f"cde-rag: serving {names} on http://{shown}:{port} ({auth})", flush=True)
        if not keys and args.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning("listening on %s without an API key: pass --api-key", args.host)
        config = uvicorn.Config(
            app,
            log_level="warning" if args.quiet else "info",
            access_log=bool(args.verbose),
            lifespan="on",
        )
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    finally:
        if client is not None:
            client.close()


def _bind(host: str, port: int) -> Any:
    """A listening socket on ``host:port`` (port 0: any free one, printed at start)."""
    import socket

    from cde_rag.errors import InvalidInputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        msg = f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port"
        raise InvalidInputError(msg) from exc
    sock.set_inheritable(True)
    return sock

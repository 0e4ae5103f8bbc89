"""Embed documents on a pool of Ray actors into a Qdrant collection with one shared context.

Starts (or joins) a local Ray instance, creates a collection whose context is built once on
the driver, then syncs the documents with ``embedder=RayEmbedder(...)``: each actor loads the
model once, fetches the context from Ray's object store, checks its fingerprint and embeds
whole windows of chunks. The same documents synced in one process give the same points, bit
for bit; a second sync embeds nothing.

    python examples/ray_ingest.py                                  # jxm/cde-small-v2
    python examples/ray_ingest.py --model ./cde-small-v2           # a local model folder
    python examples/ray_ingest.py --folder /usr/share/doc/git --no-compare   # your files
    python examples/ray_ingest.py --ray-address auto --actors 8 --gpus-per-actor 1
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection, Document
from cde_rag_ray import RayEmbedder, RayOptions, model_spec_for

BUILT_IN = {
    "keys.md": "# Secrets\n\nRotate API keys regularly and never commit them to the repository.",
    "ci.md": "# CI\n\nPin dependency versions in CI so a new release cannot break the build.",
    "review.md": "# Review\n\nRun the test suite and the linter before opening a pull request.",
    "roses.md": "# Roses\n\nPrune roses in late winter, just before the buds start to swell.",
    "compost.md": "# Compost\n\nCompost needs green and brown material, air and moisture.",
    "bread.md": "# Bread\n\nStore bread in a paper bag at room temperature, not in the fridge.",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="jxm/cde-small-v2", help="hub id or local folder")
    parser.add_argument("--folder", type=Path, default=None, help="read its .md/.txt files")
    parser.add_argument("--ray-address", default=None, help="a running cluster (auto, ray://...)")
    parser.add_argument("--actors", type=int, default=2, help="model replicas (default 2)")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--cpus-per-actor", type=float, default=1.0)
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also sync in this process and compare the points (default: on)",
    )
    return parser.parse_args(argv)


def documents(folder: Path | None) -> list[Document]:
    """The built-in notes, or the Markdown and text files under ``folder``."""
    if folder is None:
        return [Document(name, text, {}, "markdown") for name, text in BUILT_IN.items()]
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".md", ".txt") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            name = str(path.relative_to(folder))
            if path.suffix == ".md":
                found.append(Document(name, text, {}, "markdown"))
            else:
                found.append(Document(name, text, {}, "text"))
    return found


def main(argv: list[str] | None = None) -> None:
    """Sync with the Ray pool, compare with a single-process sync, sync again."""
    args = parse_args(argv)
    docs = documents(args.folder)
    encoder = CDEEncoder.from_pretrained(args.model, device="cpu")  # the driver's copy
    texts = [doc.text for doc in docs]
    options = RayOptions(
        address=args.ray_address,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        # the actors import cde_rag like this process (an installed package needs nothing)
        runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}},
    )
    spec = model_spec_for(args.model, threads=1)  # what every actor loads

    ray_store, one_store = QdrantClient(":memory:"), QdrantClient(":memory:")
    col = ContextualCollection.create(ray_store, "docs", encoder, corpus=texts)
    with RayEmbedder(spec, col.context, options, prefix=col.record.document_prefix) as pool:
        report = col.sync(docs, embedder=pool, show_progress_bar=False)
        print(
            f"Ray: {len(pool.actors)} actors embedded {report.chunks_embedded} chunks of "
            f"{report.documents_added} documents (context {col.fingerprint[:12]})"
        )
        again = col.sync(docs, embedder=pool, show_progress_bar=False)
        print(
            f"second sync: {again.documents_unchanged} unchanged, {again.chunks_embedded} embedded"
        )

    if args.compare:  # the same documents in one process, with the same context
        torch.set_num_threads(1)  # as the actors: the same thread count gives the same bits
        single = ContextualCollection.create(one_store, "docs", encoder, context=col.context)
        single.sync(docs, show_progress_bar=False)
        a, _ = ray_store.scroll("docs", limit=1_000_000, with_payload=True, with_vectors=True)
        b, _ = one_store.scroll("docs", limit=1_000_000, with_payload=True, with_vectors=True)
        same = {p.id: (p.payload, p.vector) for p in a} == {p.id: (p.payload, p.vector) for p in b}
        print(f"same points as a single-process sync: {same}")

    hit = col.search("how often should I change my API keys?", limit=1)[0]
    print(f"search: {hit.metadata['document_id']} ({hit.score:.3f})")


if __name__ == "__main__":
    main()

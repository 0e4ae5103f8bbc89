"""Ingest benchmark (issue #4): ContextualCollection.add on embedded Qdrant vs raw embedding.

Builds the same random-weight ModernBERT-base CDE as ``bench_encoder.py`` and times, on the
same mixed-length corpus (16..512 tokens):

* raw: ``encoder.embed_documents(texts, context)``;
* ingest: ``ContextualCollection.create(client, name, encoder, context=context)`` then
  ``.add(texts)`` into the embedded store ``QdrantClient(path=tmp)``.

Target: ingest docs/s >= 0.9 x raw docs/s. The stored vectors are checked against the raw ones.

Usage::

    python benchmarks/bench_ingest.py            # full size (22 layers, 512 context rows)
    python benchmarks/bench_ingest.py --quick    # smoke run (2 layers, 64 context rows)
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    REPO_ROOT,
    CDEEncoder,
    Timer,
    backbone_layers,
    build_random_checkpoint,
    random_context,
    spread_lengths,
    texts_with_token_lengths,
    token_lengths,
)

sys.path.insert(0, str(REPO_ROOT / "integrations"))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--docs", type=int, default=None, help="documents to ingest")
    parser.add_argument("--batch-size", type=int, default=64, help="batch_size of .add()")
    parser.add_argument("--layers", type=int, default=None, help="override backbone layers")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    try:
        from qdrant_client import QdrantClient

        from cde_rag_qdrant import ContextualCollection
    except ImportError as exc:
        print(f"cde_rag_qdrant / qdrant-client not importable ({exc}); nothing to measure.")
        return 1

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    quick = args.quick
    n_docs = args.docs or (128 if quick else 64)
    max_tokens = 128 if quick else 512
    command = shlex.join(["python", *sys.argv])
    print(f"command: {command}")
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, threads {threads}, "
        f"device {device}"
    )
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="cde-ingest-") as tmp:
        layers = args.layers or (2 if quick else None)
        folder = build_random_checkpoint(
            Path(tmp) / "model", layers=layers, corpus_size=64 if quick else 512
        )
        encoder = CDEEncoder.from_pretrained(folder, device=device)
        print(
            f"model: random-weight ModernBERT-base CDE, "
            f"{backbone_layers(encoder)} layers, "
            f"{encoder.context_size} context rows"
        )
        context = random_context(encoder)
        texts = texts_with_token_lengths(encoder, spread_lengths(n_docs, 16, max_tokens))
        lengths = token_lengths(encoder, texts)
        print(
            f"corpus: {n_docs} docs, token lengths {min(lengths)}..{max(lengths)} "
            f"(mean {np.mean(lengths):.0f}), shuffled; add(batch_size={args.batch_size})"
        )

        client = QdrantClient(path=str(Path(tmp) / "qdrant"))
        # warm-up of both paths on a few docs (separate collection)
        encoder.embed_documents(texts[:4], context, show_progress_bar=False)
        warm = ContextualCollection.create(client, "warmup", encoder, context=context)
        warm.add(texts[:4], show_progress_bar=False)

        with Timer(device) as t_raw:
            raw = encoder.embed_documents(texts, context, show_progress_bar=False)
        with Timer(device) as t_create:
            collection = ContextualCollection.create(client, "bench", encoder, context=context)
        with Timer(device) as t_add:
            point_ids = collection.add(texts, batch_size=args.batch_size, show_progress_bar=False)
        stored = client.retrieve("bench", point_ids, with_vectors=True)
        by_id = {str(p.id): np.asarray(p.vector, dtype=np.float32) for p in stored}
        vectors = np.stack([by_id[str(i)] for i in point_ids])
        diff = float(np.abs(vectors - raw).max())
        client.close()

    ingest_s = t_create.seconds + t_add.seconds
    results = {
        "command": command,
        "quick": quick,
        "threads": threads,
        "device": str(device),
        "docs": n_docs,
        "batch_size": args.batch_size,
        "raw_docs_per_s": n_docs / t_raw.seconds,
        "ingest_docs_per_s": n_docs / ingest_s,
        "ratio": t_raw.seconds / ingest_s,
        "create_s": t_create.seconds,
        "add_s": t_add.seconds,
        "raw_s": t_raw.seconds,
        "stored_vs_raw_max_abs_diff": diff,
        "elapsed_s": time.perf_counter() - t_start,
    }
    print()
    print(f"raw embed_documents docs/s         {results['raw_docs_per_s']:.2f}")
    print(
        f"create + add (embedded Qdrant)     {results['ingest_docs_per_s']:.2f} docs/s "
        f"(create {t_create.seconds:.2f} s, add {t_add.seconds:.2f} s)"
    )
    print(f"ratio ingest / raw                 {results['ratio']:.2f}x (target >= 0.9x)")
    print(f"stored vs raw vectors max abs diff {diff:.1e}")
    print(f"\nelapsed {results['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

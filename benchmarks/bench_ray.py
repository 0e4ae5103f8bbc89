"""Ray benchmark (issue #15): docs/s of the actor pool with 1 and 2 actors, in one run.

Builds the random-weight ModernBERT-base CDE of the other benchmarks (fewer layers with
``--layers``), starts a local Ray instance on loopback, and embeds the same mixed-length corpus
with ``RayEmbedder`` at 1 and then 2 actors (1 torch thread each), next to a single-process
``embed_documents`` with 1 thread. Every run's vectors are compared with the single-process
ones (they must be the same bits: each window is embedded whole by one actor).

Usage::

    python benchmarks/bench_ray.py             # 4 layers, 256 docs, windows of 32
    python benchmarks/bench_ray.py --quick     # smoke run (2 layers, 64 context rows)
"""

from __future__ import annotations

import argparse
import json
import os
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
    build_random_checkpoint,
    random_context,
    spread_lengths,
    texts_with_token_lengths,
)

sys.path.insert(0, str(REPO_ROOT / "integrations"))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 2 min)")
    parser.add_argument("--docs", type=int, default=None, help="documents to embed")
    parser.add_argument("--layers", type=int, default=None, help="backbone layers")
    parser.add_argument("--window", type=int, default=32, help="texts per actor call")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    try:
        import ray

        from cde_rag_ray import ModelSpec, RayEmbedder, RayOptions
    except ImportError as exc:
        print(f"ray / cde_rag_ray not importable ({exc}); pip install -e '.[ray]'")
        return 1

    quick = args.quick
    n_docs = args.docs or (64 if quick else 256)
    layers = args.layers or (2 if quick else 4)
    torch.set_num_threads(1)
    command = shlex.join(["python", *sys.argv])
    print(f"command: {command}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cde-ray-") as tmp:
        folder = build_random_checkpoint(
            Path(tmp) / "model", layers=layers, corpus_size=64 if quick else 512
        )
        encoder = CDEEncoder.from_pretrained(folder, device="cpu")
        context = random_context(encoder)
        texts = texts_with_token_lengths(encoder, spread_lengths(n_docs, 16, 128 if quick else 256))
        print(
            f"model: random-weight ModernBERT-base CDE, {layers} layers, "
            f"{encoder.context_size} context rows; {n_docs} docs, windows of {args.window}"
        )
        windows = [texts[i : i + args.window] for i in range(0, n_docs, args.window)]
        encoder.embed_documents(texts[:2], context, show_progress_bar=False)  # warm-up
        with Timer() as t_single:
            single = np.concatenate(
                [encoder.embed_documents(w, context, show_progress_bar=False) for w in windows]
            )
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        path = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "integrations")])
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
        spec = ModelSpec(str(folder), {}, threads=1)
        results: dict[str, object] = {"command": command, "docs": n_docs, "layers": layers}
        results["single_docs_per_s"] = n_docs / t_single.seconds
        for actors in (1, 2):
            with RayEmbedder(spec, context, RayOptions(actors=actors)) as pool:
                pool.embed(texts[:2], window=args.window)  # warm-up: model loaded, caches hot
                with Timer() as t_pool:
                    got = pool.embed(texts, window=args.window)
            results[f"actors_{actors}_docs_per_s"] = n_docs / t_pool.seconds
            results[f"actors_{actors}_identical"] = bool(np.array_equal(got, single))
        ray.shutdown()
    one = float(str(results["actors_1_docs_per_s"]))
    two = float(str(results["actors_2_docs_per_s"]))
    results["speedup_2_vs_1"] = two / one
    results["elapsed_s"] = time.perf_counter() - t_start
    print()
    print(f"single process, 1 thread   {results['single_docs_per_s']:.2f} docs/s")
    for actors in (1, 2):
        print(
            f"Ray, {actors} actor(s) x 1 thread  {results[f'actors_{actors}_docs_per_s']:.2f} "
            f"docs/s; vectors identical to single process: {results[f'actors_{actors}_identical']}"
        )
    print(f"2 actors / 1 actor         {results['speedup_2_vs_1']:.2f}x (2 cores: <= 2x)")
    print(f"\nelapsed {results['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

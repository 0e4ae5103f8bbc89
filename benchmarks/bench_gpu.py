"""GPU benchmark (issue #16): the padded float32 path vs the packed half-precision fast path.

Builds a full-size ModernBERT-base CDE (22 layers, 512 context rows, dim 768) with random
weights and measures, on one device in one run, for each variant (dtype x batch layout):

* stage-2 documents/s (``embed_documents``) and stage-1 documents/s (``first_stage_embeddings``);
* query latency at batch 1 (``embed_queries([q])``), p50/p99;
* peak memory during stage 2 (``torch.cuda.max_memory_allocated``; peak RSS on CPU);
* agreement with the padded float32 path: max abs diff and min cosine of the normalised
  stage-2 vectors, and min cosine of the stage-1 rows.

Variants: ``fp32-padded`` (the reference), ``fp32-packed`` (packing alone), ``bf16-packed``
(the CUDA default, the "fast path") and ``fp16-packed``. Documents have a RAG-like token-length
distribution: log-normal, median ~180 tokens, clipped to 16..512 (prefix and specials included).

Usage::

    python benchmarks/bench_gpu.py                       # CUDA, full size (< 5 min on an H200)
    python benchmarks/bench_gpu.py --device cpu --quick  # CI smoke run (tiny sizes)
    python benchmarks/bench_gpu.py --device cpu --docs 16 --variants fp32-padded,fp32-packed
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
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CDEEncoder,
    CorpusContext,
    Timer,
    backbone_layers,
    build_random_checkpoint,
    cpu_bf16_flags,
    peak_rss_reset,
    random_context,
    rss_kib,
    texts_with_token_lengths,
    token_lengths,
)

from cde_rag._fastpath import AttentionName, auto_dtype, resolve_attention
from cde_rag.encoder import DTypeName
from cde_rag.model.varlen import _varlen_has_window, flash_varlen_available

VARIANTS = ("fp32-padded", "fp32-packed", "bf16-packed", "fp16-packed")
REFERENCE, FAST = "fp32-padded", "bf16-packed"
DTYPES: dict[str, DTypeName] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
SPEEDUP_TARGET, COSINE_TARGET, PACKED_DIFF_TARGET = 3.0, 0.999, 1e-5
QUIET: dict[str, Any] = {"show_progress_bar": False}


def rag_lengths(n: int, low: int, high: int, *, median: float, seed: int = 0) -> list[int]:
    """``n`` log-normal token lengths (sigma 0.6) with the given median, clipped to low..high."""
    rng = np.random.default_rng(seed)
    values = np.exp(rng.normal(np.log(median), 0.6, size=n)).round()
    return [int(x) for x in np.clip(values, low, high)]


def device_line(device: torch.device) -> str:
    """One line naming the device the benchmark runs on."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return (
            f"device: cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB, compute "
            f"capability {props.major}.{props.minor}, flash varlen bf16 "
            f"{'yes' if flash_varlen_available(device, torch.bfloat16) else 'NO'}, local "
            f"window in the kernel {'yes' if _varlen_has_window() else 'NO (torch < 2.11)'})"
        )
    flags = cpu_bf16_flags()
    return (
        f"device: cpu ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}, bf16 flags: {' '.join(flags) or 'none'}; "
        "no GPU: figures are not GPU figures)"
    )


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile."""
    return float(np.percentile(np.array(values), q))


def reset_peak(device: torch.device) -> None:
    """Start a peak-memory measurement."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        peak_rss_reset()


def peak_mib(device: torch.device, base_kib: int) -> float:
    """Peak GPU memory allocated (CUDA) or peak RSS growth over ``base_kib`` (CPU), MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (rss_kib("VmHWM") - base_kib) / 1024


def load_variants(
    names: list[str], folder: Path, device: torch.device, warm_texts: list[str], batch_size: int
) -> tuple[dict[str, tuple[CDEEncoder, CorpusContext]], dict[str, str]]:
    """Load one encoder per variant (same weights, same random context) and warm it up.

    A variant other than the reference that fails here (a kernel missing on this GPU, say) is
    reported and left out, so one run still measures the others.
    """
    loaded, errors = {}, {}
    for name in names:
        dtype, attention = name.split("-")
        try:
            encoder = CDEEncoder.from_pretrained(
                folder,
                device=device,
                dtype=DTYPES[dtype],
                attention=cast("AttentionName", attention),
            )
            assert encoder.attention == attention
            context = random_context(encoder)
            # warm-up: allocator, kernels (cuBLAS/flash autotuning, oneDNN primitives)
            encoder.embed_documents(warm_texts, context, batch_size=batch_size, **QUIET)
            encoder.embed_queries(warm_texts[:2], context, **QUIET)
            encoder.first_stage_embeddings(warm_texts[:4], **QUIET)
        except Exception as exc:
            if name == REFERENCE:
                raise
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"  {name} FAILED, left out: {errors[name]}", flush=True)
            continue
        loaded[name] = (encoder, context)
    return loaded, errors


def timed_passes(
    loaded: dict[str, tuple[CDEEncoder, CorpusContext]],
    device: torch.device,
    texts: list[str],
    queries: list[str],
    n_stage1: int,
    batch_size: int,
    repeats: int,
) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Time every variant, interleaved (so background load hits all alike); best of repeats."""
    names = list(loaded)
    best2 = dict.fromkeys(names, float("inf"))
    best1 = dict.fromkeys(names, float("inf"))
    peaks: dict[str, float] = {}
    vectors: dict[str, torch.Tensor] = {}
    rows: dict[str, torch.Tensor] = {}
    for rep in range(repeats):
        for name, (encoder, context) in loaded.items():
            base = rss_kib() if device.type == "cpu" else 0
            reset_peak(device)
            with Timer(device) as t2:
                vectors[name] = encoder.embed_documents(
                    texts, context, batch_size=batch_size, output="torch", **QUIET
                )
            if rep == 0:
                peaks[name] = peak_mib(device, base)
            with Timer(device) as t1:
                first = encoder.first_stage_embeddings(
                    texts[:n_stage1], batch_size=batch_size, **QUIET
                )
            rows[name] = torch.from_numpy(first)
            best2[name] = min(best2[name], t2.seconds)
            best1[name] = min(best1[name], t1.seconds)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for query in queries:
        for name, (encoder, context) in loaded.items():
            with Timer(device) as tq:
                encoder.embed_queries([query], context, **QUIET)
            latencies[name].append(tq.seconds * 1000)
    figures = {
        name: {
            "stage2_docs_per_s": len(texts) / best2[name],
            "stage1_docs_per_s": n_stage1 / best1[name],
            "query_p50_ms": percentile(latencies[name], 50),
            "query_p99_ms": percentile(latencies[name], 99),
            "peak_mib": peaks[name],
        }
        for name in names
    }
    return figures, vectors, rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 layers, tiny sizes")
    parser.add_argument("--docs", type=int, default=None, help="stage-2 documents (2048)")
    parser.add_argument("--batch-size", type=int, default=None, help="texts per pass (64)")
    parser.add_argument("--queries", type=int, default=None, help="batch-1 queries (200)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--layers", type=int, default=None, help="backbone layers (22)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes, best kept")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    print("command: " + shlex.join(["python", *sys.argv]))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available; use --device cpu", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or REFERENCE not in variants:
        print(f"error: --variants must include {REFERENCE}; known: {', '.join(VARIANTS)}")
        return 2
    quick = args.quick
    n_docs = args.docs or (12 if quick else 2048)
    batch_size = args.batch_size or (4 if quick else 64)
    n_queries = args.queries or (3 if quick else 200)
    n_stage1 = min(n_docs, 8 if quick else 512)
    repeats = args.repeats or (1 if quick else 2)
    layers = args.layers or (2 if quick else None)
    high = 128 if quick else 512
    t_start = time.perf_counter()

    print(device_line(device))
    print(
        f"torch {torch.__version__}, python {platform.python_version()}; defaults on this "
        f"device: dtype='auto' -> {str(auto_dtype(device)).removeprefix('torch.')}, "
        f"attention='auto' -> {resolve_attention('auto', device)}"
    )
    results: dict[str, object] = {
        "command": shlex.join(["python", *sys.argv]),
        "device": device_line(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "quick": quick,
        "auto_dtype": str(auto_dtype(device)).removeprefix("torch."),
        "auto_attention": resolve_attention("auto", device),
    }
    with tempfile.TemporaryDirectory(prefix="cde-bench-gpu-") as tmp:
        folder = build_random_checkpoint(
            Path(tmp) / "model", layers=layers, corpus_size=64 if quick else 512
        )
        probe = CDEEncoder.from_pretrained(folder, device="cpu")
        n_layers = backbone_layers(probe)
        print(
            f"model: random-weight ModernBERT-base CDE, {n_layers} layers, "
            f"{probe.context_size} context rows, dim {probe.dim}"
        )
        targets = rag_lengths(n_docs, 16, high, median=high * 0.35)
        texts = texts_with_token_lengths(probe, targets)
        lengths = token_lengths(probe, texts)
        queries = texts_with_token_lengths(
            probe, rag_lengths(n_queries, 8, 32, median=14, seed=1), document=False, seed=7
        )
        del probe
        print(
            f"corpus: {n_docs} docs, token lengths {min(lengths)}..{max(lengths)} (median "
            f"{np.median(lengths):.0f}, mean {np.mean(lengths):.0f}); batch size {batch_size}; "
            f"{n_queries} queries of 8..32 tokens; stage 1 on {n_stage1} docs; best of {repeats} "
            "interleaved passes"
        )
        loaded, errors = load_variants(variants, folder, device, texts[:batch_size], batch_size)
        variants = [name for name in variants if name in loaded]
        results["errors"] = errors
        print(f"  loaded and warmed up ({time.perf_counter() - t_start:.0f} s so far)", flush=True)
        figures, vectors, rows = timed_passes(
            loaded, device, texts, queries, n_stage1, batch_size, repeats
        )
        del loaded

    ref_vec, ref_rows = vectors[REFERENCE], rows[REFERENCE]
    for name in variants:
        cos = (vectors[name] * ref_vec).sum(dim=1)
        figures[name]["max_abs_diff"] = float((vectors[name] - ref_vec).abs().max())
        figures[name]["cosine_min"] = float(cos.min())
        figures[name]["stage1_cosine_min"] = float(F.cosine_similarity(rows[name], ref_rows).min())
        figures[name]["speedup_stage2"] = (
            figures[name]["stage2_docs_per_s"] / figures[REFERENCE]["stage2_docs_per_s"]
        )
        figures[name]["speedup_stage1"] = (
            figures[name]["stage1_docs_per_s"] / figures[REFERENCE]["stage1_docs_per_s"]
        )
    results["variants"] = figures

    memory = "peak GPU MiB" if device.type == "cuda" else "peak RSS +MiB"
    header = (
        f"{'variant':<12} {'stage2 docs/s':>13} {'x fp32':>7} {'stage1 docs/s':>13} "
        f"{'x fp32':>7} {'query p50/p99 ms':>17} {memory:>13} {'max|diff|':>9} {'min cos':>8} "
        f"{'st1 cos':>8}"
    )
    print()
    print(header)
    for name in variants:
        f = figures[name]
        print(
            f"{name:<12} {f['stage2_docs_per_s']:>13.2f} {f['speedup_stage2']:>6.2f}x "
            f"{f['stage1_docs_per_s']:>13.2f} {f['speedup_stage1']:>6.2f}x "
            f"{f['query_p50_ms']:>8.1f}/{f['query_p99_ms']:<8.1f} {f['peak_mib']:>13.0f} "
            f"{f['max_abs_diff']:>9.1e} {f['cosine_min']:>8.5f} {f['stage1_cosine_min']:>8.5f}"
        )
    print()
    verdicts: dict[str, bool] = {}
    if "fp32-packed" in figures:
        diff = figures["fp32-packed"]["max_abs_diff"]
        verdicts["packed_equals_padded"] = diff <= PACKED_DIFF_TARGET
        print(
            f"fp32 packed vs padded: max abs diff {diff:.1e} (<= {PACKED_DIFF_TARGET:g}: "
            f"{'ok' if verdicts['packed_equals_padded'] else 'FAIL'})"
        )
    if FAST in figures:
        fast = figures[FAST]
        agree = min(fast["cosine_min"], fast["stage1_cosine_min"]) >= COSINE_TARGET
        fast_enough = fast["speedup_stage2"] >= SPEEDUP_TARGET
        verdicts["fast_path_agrees"], verdicts["fast_path_3x"] = agree, fast_enough
        scope = "" if device.type == "cuda" else " (the speed target applies to GPUs)"
        print(
            f"fast path {FAST} vs {REFERENCE}: {fast['speedup_stage2']:.2f}x stage-2 docs/s "
            f"(target >= {SPEEDUP_TARGET:g}x{scope}: {'ok' if fast_enough else 'not met'}); "
            f"min cosine {min(fast['cosine_min'], fast['stage1_cosine_min']):.5f} "
            f"(>= {COSINE_TARGET}: {'ok' if agree else 'FAIL'})"
        )
    for name, error in errors.items():
        verdicts[f"{name}_ran"] = False
        print(f"{name} FAILED: {error}")
    results["verdicts"] = verdicts
    elapsed = time.perf_counter() - t_start
    results["elapsed_s"] = elapsed
    print(f"\nelapsed {elapsed:.0f} s on {device.type}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

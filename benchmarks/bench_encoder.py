"""Encoder benchmark (issue #3): stage-2 throughput, bf16, latency, FLOP efficiency, memory.

Builds a full-size ModernBERT-base CDE (22 layers, 512 context rows) with random weights and
measures, in one run:

* stage-2 documents/s of ``embed_documents`` vs a naive path with the same math (fixed batches
  of 32 in input order, padded to the longest, no prefix shortcuts), with the max abs diff;
* bf16 vs fp32 documents/s and the cosine between their embeddings;
* query latency at batch 1 (p50/p95) and stage-1 documents/s;
* achieved matmul FLOP/s of stage 2 vs a large fp32 matmul measured in the same run;
* peak RSS growth when embedding 2,000 vs 200 documents (fresh subprocess per size).

Usage::

    python benchmarks/bench_encoder.py            # full run (< 10 min on 2 quiet CPU cores)
    python benchmarks/bench_encoder.py --quick    # smoke run (2 layers, 64 context rows)
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    spread_lengths,
    texts_with_token_lengths,
    token_lengths,
)

from cde_rag._batching import length_sorted_batches, pad_batch
from cde_rag.config import ModernBertConfig
from cde_rag.model._ops import additive_mask, apply_rotary, mean_pool, rotary_tables
from cde_rag.model.modernbert import ModernBertBackbone, ModernBertLayer

NAIVE_BATCH = 32
NOT_BF16 = " applies to bf16-capable hardware; this one is not"

# ----------------------------------------------------------------------------------------
# The naive path: same math as SecondStage.forward, none of the encoder's shortcuts.


def naive_stage2(
    encoder: CDEEncoder, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Stage 2 over ``[context; soft prompt; text]`` with the prefix copied into every row.

    Every layer runs over every position (no shared layer-0 prefix projection, no skipped
    prefix rows in the last layer); then the text rows are pooled as SecondStage.forward does.
    """
    stage2 = encoder.model.second_stage_model
    bb = stage2.backbone
    assert isinstance(bb, ModernBertBackbone)  # the benchmark model is ModernBERT-based
    cfg = bb.config
    b, n_text = ids.shape
    prefix = torch.cat([rows, stage2.soft_prompt()], dim=0)
    n_prefix = prefix.shape[0]
    seq = n_prefix + n_text
    text = bb.embed_tokens(ids)
    # norm is row-wise: norm(cat) == cat(norm); text rows are normalised twice (spec §7.3).
    hidden = bb.embeddings.norm(torch.cat([prefix.expand(b, -1, -1), text], dim=1))
    key_mask = torch.cat([mask.new_ones(b, n_prefix), mask], dim=1).bool()
    positions = torch.arange(seq, device=ids.device)
    window = (positions[None, :] - positions[:, None]).abs() <= cfg.local_attention // 2
    masks = {
        True: additive_mask(key_mask, None, hidden.dtype),
        False: additive_mask(key_mask, window, hidden.dtype),
    }
    rope = {
        True: rotary_tables(positions, cfg.head_dim, cfg.global_rope_theta, hidden.dtype),
        False: rotary_tables(positions, cfg.head_dim, cfg.local_rope_theta, hidden.dtype),
    }
    for layer in bb.layers:
        assert isinstance(layer, ModernBertLayer)
        cos, sin = rope[layer.is_global]
        q, k, v = layer.attn.split_heads(layer.attn.Wqkv(layer.attn_norm(hidden)))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        hidden = hidden + layer.attn.attend(q, k, v, masks[layer.is_global])
        hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
    hidden = bb.final_norm(hidden)[:, n_prefix:]
    return stage2.project(mean_pool(hidden, stage2.pool_mask(ids, mask)))


def naive_embed(encoder: CDEEncoder, texts: list[str], context: CorpusContext) -> torch.Tensor:
    """Fixed batches of 32 in input order, each padded to its longest text; L2-normalised."""
    ids_all, _ = encoder.tokenizer.encode(
        [encoder.document_prefix + t for t in texts], encoder.max_length
    )
    out = []
    with torch.inference_mode():
        rows = encoder.model.prepare_context(context.embeddings.to(encoder.device))
        for start in range(0, len(texts), NAIVE_BATCH):
            ids, mask = pad_batch(ids_all[start : start + NAIVE_BATCH], encoder.tokenizer.pad_id)
            result = naive_stage2(encoder, ids.to(encoder.device), mask.to(encoder.device), rows)
            out.append(result.float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


# ----------------------------------------------------------------------------------------
# Analytic FLOPs (matmuls only: projections, attention scores and values, MLP).


def stage2_flops(
    encoder: CDEEncoder, lengths: list[int], batches: list[list[int]], *, shortcuts: bool
) -> float:
    """Matmul FLOPs of stage 2 over padded batches (context rows and soft prompt included).

    ``shortcuts``: count as the encoder runs (layer 0 projects the prefix once, the last
    layer computes queries/outputs of the text rows only); else every row everywhere.
    """
    cfg = encoder.config.backbone
    assert isinstance(cfg, ModernBertConfig)
    d, inner, n_layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    n_prefix = encoder.context_size + encoder.config.n_soft_prompt
    total = 0.0
    for batch in batches:
        b, n_text = len(batch), max(lengths[i] for i in batch)
        seq = n_prefix + n_text
        for i in range(n_layers):
            qkv_rows = b * seq
            out_rows = b * seq  # rows with queries, Wo and MLP
            if shortcuts and i == 0:
                qkv_rows = n_prefix + b * n_text
            if shortcuts and i == n_layers - 1:
                out_rows = b * n_text
            total += 2 * qkv_rows * d * 3 * d  # Wqkv
            total += 2 * 2 * out_rows * seq * d  # q.k scores and p.v over all heads
            total += 2 * out_rows * d * d  # attention Wo
            total += 2 * out_rows * d * 2 * inner + 2 * out_rows * inner * d  # MLP Wi, Wo
    return total


def matmul_gflops(device: torch.device, n: int, reps: int = 3) -> float:
    """Best-of-``reps`` GFLOP/s of an (n x n) @ (n x n) fp32 matmul."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = math.inf
    for _ in range(reps):
        with Timer(device) as t:
            a @ b
        best = min(best, t.seconds)
    return 2 * n**3 / best / 1e9


# ----------------------------------------------------------------------------------------
# Peak memory: one fresh subprocess per corpus size.


def memory_child(folder: str, n_docs: int, threads: int, device: str) -> None:
    """Embed ``n_docs`` short documents; print peak RSS growth as JSON (run in a subprocess)."""
    torch.set_num_threads(threads)
    encoder = CDEEncoder.from_pretrained(folder, device=device)
    context = random_context(encoder)
    texts = texts_with_token_lengths(encoder, spread_lengths(n_docs, 16, 48, seed=1))
    encoder.embed_documents(texts[:8], context, show_progress_bar=False)  # warm-up
    gc.collect()
    cuda = encoder.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    peak_rss_reset()
    base = rss_kib("VmRSS")
    vectors = encoder.embed_documents(texts, context, show_progress_bar=False)
    peak = rss_kib("VmHWM")
    report = {
        "n_docs": n_docs,
        "base_kib": base,
        "peak_kib": peak,
        "growth_kib": peak - base,
        "output_bytes": int(vectors.nbytes),
        "tokens": int(sum(token_lengths(encoder, texts))),
    }
    if cuda:
        report["cuda_peak_growth_bytes"] = int(torch.cuda.max_memory_allocated() - cuda_base)
    print("MEMORY_JSON " + json.dumps(report))


def run_memory_child(folder: Path, n_docs: int, threads: int, device: str) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh interpreter and parse its report."""
    cmd = [
        sys.executable,
        __file__,
        "--memory-child",
        str(folder),
        str(n_docs),
        "--threads",
        str(threads),
        "--device",
        device,
    ]
    # Large blocks via mmap and no trim threshold: freed memory leaves RSS at once, so the
    # peak reflects live memory rather than glibc's caching (runs agree to ~0.1 MiB).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("MEMORY_JSON "):
            report: dict[str, Any] = json.loads(line.removeprefix("MEMORY_JSON "))
            return report
    msg = f"memory child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    raise RuntimeError(msg)


# ----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile."""
    return float(np.percentile(np.array(values), q))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (< 60 s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--docs", type=int, default=None, help="documents for stage-2 timing")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--memory-child", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    threads = args.threads or torch.get_num_threads()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), threads, args.device)
        return 0
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    quick = args.quick
    layers = 2 if quick else None
    ctx_rows = 64 if quick else 512
    n_docs = args.docs or 64
    max_tokens = 128 if quick else 512
    n_queries = 5 if quick else 10
    n_stage1 = min(16 if quick else 32, n_docs)
    mem_sizes = (64, 320) if quick else (200, 2000)  # both sizes: full batches of 32
    t_start = time.perf_counter()

    print("command: " + shlex.join(["python", *sys.argv]))
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, "
        f"{platform.machine()}, threads {threads}, device {device}, "
        f"cpu capability {torch.backends.cpu.get_cpu_capability()}"
    )
    flags = cpu_bf16_flags()
    bf16_hw = device.type == "cuda" or any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    print(
        f"cpu bf16 flags: {' '.join(flags) or 'none'} "
        f"(bf16 {'accelerated' if bf16_hw else 'NOT accelerated'} on this device)"
    )
    results: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "quick": quick,
        "threads": threads,
        "device": str(device),
        "cpu_flags": flags,
    }

    with tempfile.TemporaryDirectory(prefix="cde-bench-") as tmp:
        folder = build_random_checkpoint(Path(tmp) / "model", layers=layers, corpus_size=ctx_rows)
        encoder = CDEEncoder.from_pretrained(folder, device=device)
        n_layers = backbone_layers(encoder)
        print(
            f"model: random-weight ModernBERT-base CDE, {n_layers} layers, "
            f"{encoder.context_size} context rows, dim {encoder.dim}"
        )
        context = random_context(encoder)
        targets = spread_lengths(n_docs, 16, max_tokens)
        texts = texts_with_token_lengths(encoder, targets)
        lengths = token_lengths(encoder, texts)
        print(
            f"corpus: {n_docs} docs, token lengths {min(lengths)}..{max(lengths)} "
            f"(mean {np.mean(lengths):.0f}), shuffled"
        )

        # warm-up (allocator, oneDNN primitives) on a few docs through both paths
        encoder.embed_documents(texts[:4], context, show_progress_bar=False)
        naive_embed(encoder, texts[:4], context)

        # 1. stage 2: cde-rag vs naive
        with Timer(device) as t_naive:
            naive = naive_embed(encoder, texts, context)
        with Timer(device) as t_ours:
            ours = encoder.embed_documents(texts, context, show_progress_bar=False, output="torch")
        diff = float((ours - naive).abs().max())
        ours_dps, naive_dps = n_docs / t_ours.seconds, n_docs / t_naive.seconds
        n_prefix = encoder.context_size + encoder.config.n_soft_prompt
        batches = length_sorted_batches(lengths, batch_size=32, extra_tokens=n_prefix)
        naive_batches = [list(range(s, min(s + 32, n_docs))) for s in range(0, n_docs, 32)]
        flops = stage2_flops(encoder, lengths, batches, shortcuts=True)
        naive_flops = stage2_flops(encoder, lengths, naive_batches, shortcuts=False)
        results["stage2"] = {
            "docs": n_docs,
            "cde_rag_docs_per_s": ours_dps,
            "naive_docs_per_s": naive_dps,
            "ratio": ours_dps / naive_dps,
            "max_abs_diff": diff,
            "cde_rag_s": t_ours.seconds,
            "naive_s": t_naive.seconds,
            "cde_rag_gflop": flops / 1e9,
            "naive_gflop": naive_flops / 1e9,
        }

        # 2. bf16 vs fp32 (all docs where bf16 is accelerated; else the 2 shortest docs)
        if bf16_hw:
            subset = list(range(n_docs))
            fp32_s, fp32_vecs = t_ours.seconds, ours
        else:
            subset = sorted(range(n_docs), key=lambda i: lengths[i])[:2]
            sub_texts = [texts[i] for i in subset]
            with Timer(device) as t32:
                fp32_vecs = encoder.embed_documents(
                    sub_texts, context, show_progress_bar=False, output="torch"
                )
            fp32_s = t32.seconds
        enc16 = CDEEncoder.from_pretrained(folder, device=device, dtype="bfloat16")
        sub_texts = [texts[i] for i in subset]
        enc16.embed_documents(sub_texts[:1], context, show_progress_bar=False)  # warm-up
        with Timer(device) as t16:
            bf16_vecs = enc16.embed_documents(
                sub_texts, context, show_progress_bar=False, output="torch"
            )
        cos = F.cosine_similarity(bf16_vecs, fp32_vecs, dim=-1)
        del enc16
        gc.collect()
        results["bf16"] = {
            "docs": len(subset),
            "accelerated": bf16_hw,
            "fp32_docs_per_s": len(subset) / fp32_s,
            "bf16_docs_per_s": len(subset) / t16.seconds,
            "ratio": fp32_s / t16.seconds,
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
        }

        # 3. query latency (batch of 1) and stage-1 throughput
        query_texts = texts_with_token_lengths(
            encoder, spread_lengths(n_queries + 1, 8, 24), document=False
        )
        latencies = []
        for i, query in enumerate(query_texts):
            with Timer(device) as tq:
                encoder.embed_queries([query], context, show_progress_bar=False)
            if i:  # the first one is a warm-up
                latencies.append(tq.seconds * 1e3)
        with Timer(device) as t1:
            encoder.first_stage_embeddings(texts[:n_stage1], show_progress_bar=False)
        results["query"] = {
            "n": len(latencies),
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
        }
        results["stage1"] = {"docs": n_stage1, "docs_per_s": n_stage1 / t1.seconds}

        # 4. FLOP efficiency
        mm_n = 8192 if device.type == "cuda" else 2048 if quick else 3072
        peak = matmul_gflops(device, mm_n)
        achieved = flops / t_ours.seconds / 1e9
        results["flops"] = {
            "stage2_gflops": achieved,
            "matmul_gflops": peak,
            "matmul_n": mm_n,
            "fraction": achieved / peak,
        }
        del encoder
        gc.collect()

        # 5. peak memory, fresh subprocess per size (1-layer model, 16 context rows, short docs)
        mem_folder = build_random_checkpoint(Path(tmp) / "mem", layers=1, corpus_size=16)
        small, large = (run_memory_child(mem_folder, n, threads, args.device) for n in mem_sizes)
        extra = (large["growth_kib"] - small["growth_kib"]) * 1024
        out_delta = large["output_bytes"] - small["output_bytes"]
        results["memory"] = {
            "small": small,
            "large": large,
            "growth_delta_bytes": extra,
            "output_delta_bytes": out_delta,
        }
    results["elapsed_s"] = time.perf_counter() - t_start

    s2, b16, q, f, m = (results[k] for k in ("stage2", "bf16", "query", "flops", "memory"))
    rows = [
        (
            "stage 2 docs/s: cde-rag vs naive (batches of 32 in input order)",
            f"{s2['cde_rag_docs_per_s']:.2f} vs {s2['naive_docs_per_s']:.2f} = "
            f"{s2['ratio']:.2f}x (target >= 1.15x); max abs diff {s2['max_abs_diff']:.1e} "
            f"(<= 1e-5: {'ok' if s2['max_abs_diff'] <= 1e-5 else 'FAIL'})",
        ),
        (
            f"bf16 vs fp32 docs/s ({b16['docs']} docs)",
            f"{b16['bf16_docs_per_s']:.2f} vs {b16['fp32_docs_per_s']:.2f} = {b16['ratio']:.2f}x"
            f" (target >= 1.4x{'' if bf16_hw else NOT_BF16})"
            f"; cosine min {b16['cosine_min']:.5f} mean {b16['cosine_mean']:.5f} (>= 0.999)",
        ),
        (
            "query latency, batch of 1",
            f"p50 {q['p50_ms']:.0f} ms, p95 {q['p95_ms']:.0f} ms ({q['n']} queries)",
        ),
        ("stage 1 docs/s", f"{results['stage1']['docs_per_s']:.2f} ({n_stage1} docs)"),
        (
            "stage 2 achieved matmul GFLOP/s vs fp32 matmul",
            f"{f['stage2_gflops']:.1f} vs {f['matmul_gflops']:.1f} ({mm_n}^3) = "
            f"{f['fraction']:.2f} (target >= 0.6)",
        ),
        (
            f"peak RSS growth, {mem_sizes[1]} vs {mem_sizes[0]} docs",
            f"{m['large']['growth_kib'] / 1024:.1f} MiB vs {m['small']['growth_kib'] / 1024:.1f} "
            f"MiB: +{extra / 2**20:.1f} MiB for an output array +{out_delta / 2**20:.1f} MiB",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\nelapsed {results['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

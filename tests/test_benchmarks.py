"""Smoke runs of the benchmarks (`--quick`): they run and their outputs agree. No timing claims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick(script: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--json", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    first_line = result.stdout.splitlines()[0].lower()
    assert first_line.startswith("command: python ") and script in first_line
    data: dict[str, object] = json.loads(out.read_text())
    return data


@pytest.mark.slow
def test_encoder_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_encoder.py", tmp_path)
    stage2, bf16 = data["stage2"], data["bf16"]
    assert isinstance(stage2, dict) and isinstance(bf16, dict)
    assert stage2["max_abs_diff"] <= 1e-5  # the fast path computes what the naive path does
    assert bf16["cosine_min"] >= 0.99


@pytest.mark.slow
def test_ingest_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_ingest.py", tmp_path)
    assert data["stored_vs_raw_max_abs_diff"] <= 1e-5  # stored vectors = raw embeddings


@pytest.mark.slow
def test_quantization_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_quantization.py", tmp_path)
    keys = ["none default"] + [
        f"{q} {s}" for q in ("int8", "binary") for s in ("no rescore", "rescore", "rescore x2")
    ]
    for key in keys:
        entry = data[key]
        assert isinstance(entry, dict) and 0.0 <= entry["recall"] <= 1.0
    assert data["none default"]["recall"] == 1.0
    if data["local"]:  # local mode searches exactly, whatever the quantization
        assert all(data[k]["recall"] == 1.0 for k in keys)


@pytest.mark.slow
def test_startup_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_startup.py", tmp_path)
    seconds = data["seconds"]
    assert isinstance(seconds, dict)
    assert {"cde-rag --help", "python -c 'import torch'"} <= set(seconds)


@pytest.mark.slow
def test_gpu_benchmark_quick_on_cpu(tmp_path: Path) -> None:
    data = _quick("bench_gpu.py", tmp_path, "--device", "cpu")
    assert data["device_type"] == "cpu" and str(data["device"]).startswith("device: cpu")
    variants = data["variants"]
    assert isinstance(variants, dict)
    assert set(variants) == {"fp32-padded", "fp32-packed", "bf16-packed", "fp16-packed"}
    assert variants["fp32-packed"]["max_abs_diff"] <= 1e-5  # packed computes what padded does
    for name in ("bf16-packed", "fp16-packed"):
        assert variants[name]["cosine_min"] >= 0.999
        assert variants[name]["stage1_cosine_min"] >= 0.999
    for figures in variants.values():
        assert figures["stage2_docs_per_s"] > 0 and figures["query_p99_ms"] > 0
    verdicts = data["verdicts"]
    assert isinstance(verdicts, dict)
    assert verdicts["packed_equals_padded"] and verdicts["fast_path_agrees"]
    assert "fast_path_3x" in verdicts  # a speed verdict: printed, not asserted on CPU


@pytest.mark.slow
def test_server_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_server.py", tmp_path)
    assert data["all_answers_correct"] is True  # nothing lost, every answer its own vectors
    for mode in ("batching", "no_batching"):
        run = data[mode]
        assert isinstance(run, dict)
        assert run["lost"] == 0 and run["wrong"] == 0
        assert run["max_abs_diff"] <= 1e-5
        assert run["requests"] == 80


@pytest.mark.slow
def test_sync_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_sync.py", tmp_path)
    assert data["resync_embedded"] == 0  # an unchanged folder embeds nothing
    assert data["resync_unchanged"] == data["files"]
    assert isinstance(data["chunks"], int) and data["chunks"] > data["files"]  # files chunked


@pytest.mark.slow
@pytest.mark.enable_socket
def test_ray_benchmark_quick(tmp_path: Path) -> None:
    data = _quick("bench_ray.py", tmp_path)
    assert data["actors_1_identical"] and data["actors_2_identical"]  # same bits as one process
    assert float(str(data["actors_2_docs_per_s"])) > 0

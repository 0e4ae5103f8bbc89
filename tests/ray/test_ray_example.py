"""``examples/ray_ingest.py`` runs as a user would run it; a pool that started Ray stops it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import V2_TINY, run_example
from tests.ray.conftest import ENV

pytest.importorskip("ray", reason="ray is in the test group: pip install -e '.[ray]'")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=600, check=False,
    )  # fmt: skip


def test_ray_example_syncs_the_same_points_as_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    result = run_example(
        "ray_ingest.py", "--model", str(V2_TINY), "--cpus-per-actor", "0.5", cwd=tmp_path,
        timeout=600, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Ray: 2 actors embedded 6 chunks of 6 documents" in out
    assert "second sync: 6 unchanged, 0 embedded" in out
    assert "same points as a single-process sync: True" in out
    assert "search: " in out
    assert "SIGTERM received" not in result.stderr  # Ray was stopped, not killed at exit


@pytest.mark.parametrize("caller_started_ray", [False, True])
def test_a_pool_stops_ray_only_when_it_started_it(tmp_path: Path, caller_started_ray: bool) -> None:
    code = (
        "import ray\n"
        "from cde_rag import CDEEncoder\n"
        "from cde_rag_ray import RayEmbedder, RayOptions, model_spec_for\n"
        "from tests.conftest import V2_TINY, corpus_texts\n"
        f"if {caller_started_ray}:\n"
        "    ray.init(num_cpus=1, include_dashboard=False)\n"
        "context = CDEEncoder.from_pretrained(V2_TINY).build_context(corpus_texts())\n"
        "options = RayOptions(actors=1, cpus_per_actor=0.5)\n"
        "with RayEmbedder(model_spec_for(V2_TINY, threads=1), context, options) as pool:\n"
        "    assert pool.embed(corpus_texts()[:2]).shape == (2, 64)\n"
        "print('initialized after close:', ray.is_initialized())\n"
    )
    result = _run(["-c", code], ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"initialized after close: {caller_started_ray}" in result.stdout

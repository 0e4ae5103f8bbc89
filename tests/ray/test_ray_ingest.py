"""`cde-rag ingest --engine ray` writes exactly what the single-process ingest writes."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from tests.conftest import V2_TINY
from tests.qdrant.conftest import NO_SERVER, QDRANT_URL, CliRunner, cleanup, cli_env
from tests.qdrant.long_docs import LONG_DOCS

pytest.importorskip("ray", reason="ray is in the test group: pip install -e '.[ray]'")

from cde_rag_ray.worker import CRASH_ENV

pytestmark = [pytest.mark.slow, pytest.mark.enable_socket]

MODEL = ["--model", str(V2_TINY), "--device", "cpu", "--json", "-q"]


def _folder(root: Path) -> Path:
    docs = root / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "nested.md").write_text(LONG_DOCS["nested.md"][:6000], encoding="utf-8")
    (docs / "cjk.txt").write_text(LONG_DOCS["cjk.txt"][:2000], encoding="utf-8")
    (docs / "notes.md").write_text("# Notes\n\nRotate the keys every 90 days.", encoding="utf-8")
    return docs


def _points(store: Path) -> dict[str, tuple[Any, list[float]]]:
    client = QdrantClient(path=str(store))
    try:
        points, _ = client.scroll("documents", limit=10_000, with_payload=True, with_vectors=True)
        return {str(p.id): (p.payload, list(p.vector)) for p in points}  # type: ignore[arg-type]
    finally:
        client.close()


def _ray_env(**extra: str) -> dict[str, str]:
    env = cli_env()  # PYTHONPATH reaches the Ray workers started by the CLI
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(extra)
    return env


def test_ray_ingest_equals_the_single_process_ingest_bit_for_bit(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    _folder(tmp_path)
    local = run_cli("ingest", "docs", "--qdrant-path", "local", *MODEL)
    assert local.returncode == 0, local.stderr
    # the same context: the Ray run adopts the stored one by ingesting into a copy of the store
    ray = run_cli(
        "ingest", "docs", "--qdrant-path", "ray", "--engine", "ray", "--actors", "2",
        *MODEL[:-1], timeout=600, env=_ray_env(),
    )  # fmt: skip
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert "this process writes" in ray.stderr  # an embedded store has one writer
    # the actors take no constructor argument from the object store: Ray has nothing to warn
    assert "constructor arguments in the object store" not in ray.stderr
    first, second = json.loads(local.stdout), json.loads(ray.stdout)
    assert first["fingerprint"] == second["fingerprint"]  # same chunks -> same context
    a, b = _points(tmp_path / "local"), _points(tmp_path / "ray")
    assert a.keys() == b.keys() and len(a) == first["points"] > 3
    for key, (payload, vector) in a.items():
        assert b[key][0] == payload
        assert np.array_equal(np.asarray(b[key][1]), np.asarray(vector))  # bit for bit

    again = run_cli(
        "ingest", "docs", "--qdrant-path", "ray", "--engine", "ray", *MODEL,
        timeout=600, env=_ray_env(),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["chunks"]["embedded"] == 0  # resumable: nothing to redo


def test_a_killed_actor_is_retried_and_the_job_ends_with_the_expected_points(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    _folder(tmp_path)
    local = run_cli("ingest", "docs", "--qdrant-path", "local", *MODEL)
    assert local.returncode == 0, local.stderr
    marker = tmp_path / "actor-killed"
    ray = run_cli(
        "ingest", "docs", "--qdrant-path", "ray", "--engine", "ray", *MODEL,
        timeout=600, env=_ray_env(**{CRASH_ENV: f"{marker}:1"}),
    )  # fmt: skip
    assert marker.exists(), "the kill hook never fired: nothing was tested"
    assert ray.returncode == 0, ray.stderr[-3000:]
    a, b = _points(tmp_path / "local"), _points(tmp_path / "ray")
    assert a.keys() == b.keys()
    assert all(np.array_equal(np.asarray(b[k][1]), np.asarray(v[1])) for k, v in a.items())


def test_ray_options_are_checked_before_anything_is_created(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    _folder(tmp_path)
    bad = run_cli("ingest", "docs", "--engine", "ray", "--actors", "0", *MODEL)
    assert bad.returncode == 2 and "--actors 0" in bad.stderr
    assert not (tmp_path / "cde_data").exists()
    assert os.environ.get(CRASH_ENV) is None


@pytest.mark.server
@pytest.mark.skipif(QDRANT_URL is None, reason=NO_SERVER)
def test_ray_ingest_into_a_server_lets_the_actors_write_the_single_process_points(
    tmp_path: Path, run_cli: CliRunner
) -> None:
    _folder(tmp_path)
    local = run_cli("ingest", "docs", "--qdrant-path", "local", *MODEL)
    assert local.returncode == 0, local.stderr
    name = f"cdetest_{uuid.uuid4().hex[:10]}"
    where = ["--qdrant-url", str(QDRANT_URL), "--collection", name]
    client = QdrantClient(url=QDRANT_URL, api_key=os.environ.get("QDRANT_API_KEY"))
    try:
        ray = run_cli(
            "ingest", "docs", *where, "--engine", "ray", "--parallel", "2", *MODEL[:-1],
            timeout=600, env=_ray_env(),
        )  # fmt: skip
        assert ray.returncode == 0, ray.stderr[-3000:]
        assert "the actors write to the server" in ray.stderr
        a = _points(tmp_path / "local")
        points, _ = client.scroll(name, limit=10_000, with_payload=True, with_vectors=True)
        b = {str(p.id): (p.payload, p.vector) for p in points}
        assert a.keys() == b.keys()
        for key, (payload, vector) in a.items():
            assert b[key][0] == payload
            assert np.allclose(np.asarray(b[key][1]), np.asarray(vector), atol=1e-6)
        again = run_cli(
            "ingest", "docs", *where, "--engine", "ray", *MODEL, timeout=600, env=_ray_env()
        )
        assert json.loads(again.stdout)["chunks"]["embedded"] == 0  # resumable
    finally:
        cleanup(client, name)
        client.close()

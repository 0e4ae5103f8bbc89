"""Fixtures of the Ray tests: the CLI runner of the Qdrant tests, a local Ray instance."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cde_rag_ray import ModelSpec
from tests.conftest import V2_TINY
from tests.qdrant.conftest import run_cli

__all__ = ["ENV", "ray_local", "run_cli", "spec"]

ROOT = Path(__file__).resolve().parents[2]
# The workers import the packages from this checkout (an installed wheel needs nothing).
ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray instance (2 CPUs, loopback only) for the tests of one module."""
    ray = pytest.importorskip("ray", reason="ray is in the test group: pip install -e '.[ray]'")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",  # loopback only
        runtime_env={"env_vars": ENV},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    """How the actors load the tiny v2 checkpoint (one torch thread each)."""
    return ModelSpec(str(V2_TINY), {}, threads=1)

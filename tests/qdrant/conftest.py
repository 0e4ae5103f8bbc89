"""Qdrant fixtures: clients for every location (:memory:, embedded path, server), CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from safetensors.torch import load_file, save_file

from cde_rag import CDEEncoder
from cde_rag_qdrant._store import drop_collection
from tests.conftest import V2_TINY

REPO = Path(__file__).resolve().parents[2]
QDRANT_URL = os.environ.get("QDRANT_URL")
NO_SERVER = "QDRANT_URL is not set: start a server (docker compose up -d) and export QDRANT_URL"

LOCATIONS = [
    pytest.param("memory", id="memory"),
    pytest.param("path", id="path"),
    pytest.param(
        "server",
        id="server",
        marks=[pytest.mark.server, pytest.mark.skipif(QDRANT_URL is None, reason=NO_SERVER)],
    ),
]


def make_client(location: str, tmp_path: Path) -> QdrantClient:
    """A client for ``location`` ("memory", "path" or "server")."""
    if location == "memory":
        return QdrantClient(":memory:")
    if location == "path":
        return QdrantClient(path=str(tmp_path / "store"))
    return QdrantClient(url=QDRANT_URL, api_key=os.environ.get("QDRANT_API_KEY"))


def cleanup(client: QdrantClient, prefix: str) -> None:
    """Delete aliases and collections whose names start with ``prefix`` (server runs)."""
    for alias in client.get_aliases().aliases:
        if alias.alias_name.startswith(prefix):
            drop_collection(client, alias.alias_name)
    for col in client.get_collections().collections:
        if col.name.startswith(prefix):
            client.delete_collection(col.name)


@pytest.fixture(params=LOCATIONS)
def location(request: pytest.FixtureRequest) -> str:
    """Where the collection lives."""
    return str(request.param)


@pytest.fixture
def client(location: str, tmp_path: Path) -> Iterator[QdrantClient]:
    """A fresh client for each location; closed (and server collections dropped) after."""
    qc = make_client(location, tmp_path)
    yield qc
    if location == "server":
        cleanup(qc, "cdetest_")
    qc.close()


@pytest.fixture
def name() -> str:
    """A unique collection name (servers are shared between runs)."""
    return f"cdetest_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def other_v2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of v2-tiny with slightly different weights: same width, another model."""
    folder = tmp_path_factory.mktemp("v2-other")
    for item in V2_TINY.iterdir():
        if item.is_file() and item.name != "model.safetensors":
            shutil.copy(item, folder / item.name)
    tensors = load_file(V2_TINY / "model.safetensors")
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 0.01
    save_file(tensors, folder / "model.safetensors")
    return folder


@pytest.fixture(scope="session")
def other_v2_encoder(other_v2_folder: Path) -> CDEEncoder:
    """The perturbed v2-tiny copy, loaded once."""
    return CDEEncoder.from_pretrained(other_v2_folder, device="cpu")


def cli_env() -> dict[str, str]:
    """Environment for running the CLI in a subprocess, offline."""
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "integrations")]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["OMP_NUM_THREADS"] = "1"
    env.pop("QDRANT_API_KEY", None)
    return env


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli(tmp_path: Path) -> CliRunner:
    """Run ``python -m cde_rag_qdrant.cli ARGS`` in ``tmp_path`` (the user's working dir)."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cde_rag_qdrant.cli", *args],
            cwd=tmp_path,
            env=env or cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run

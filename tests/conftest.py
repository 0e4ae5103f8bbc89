"""Shared fixtures: offline hub, golden fixture paths, session-scoped tiny encoders."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cde_rag import CDEEncoder, CorpusContext

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "cde-reference"
V2_TINY = FIXTURES / "v2-tiny"
V1_TINY = FIXTURES / "v1-tiny"
ROOT = Path(__file__).resolve().parents[1]


def run_example(
    script: str,
    *args: str,
    cwd: Path,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/SCRIPT ARGS`` as a user would: a fresh interpreter, offline, from ``cwd``.

    The checkout's packages come first on ``PYTHONPATH`` (what an install gives); ``env``
    (default: this process's environment) is the rest of the environment.
    """
    full = {**(os.environ if env is None else env), "HF_HUB_OFFLINE": "1"}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


# One thread: small tiny-model ops are fastest single-threaded, and a shared 2-core CI machine
# does not thrash (1 vs 2 threads differ by <= 4.8e-7, far inside the test tolerances).
torch.set_num_threads(1)


def fixture_texts(folder: Path) -> dict[str, list[str]]:
    """The raw strings behind the golden tensors of a fixture folder."""
    data: dict[str, list[str]] = json.loads((folder / "texts.json").read_text())
    return data


def golden(folder: Path) -> dict[str, torch.Tensor]:
    """The golden tensors of a fixture folder."""
    return load_file(folder / "golden.safetensors")


def corpus_texts() -> list[str]:
    """A small plain-English corpus (the fixture minicorpus and extra docs, no prefix)."""
    texts = fixture_texts(V2_TINY)
    prefix = "search_document: "
    return [t.removeprefix(prefix) for t in texts["minicorpus"] + texts["extra_docs"]]


@pytest.fixture(scope="session")
def v2_encoder_session() -> CDEEncoder:
    """The v2-tiny fixture loaded once (do not mutate: use ``v2_encoder``)."""
    return CDEEncoder.from_pretrained(V2_TINY, device="cpu")


@pytest.fixture(scope="session")
def v1_encoder_session() -> CDEEncoder:
    """The v1-tiny fixture in the fixture's rotary mode, loaded once."""
    return CDEEncoder.from_pretrained(V1_TINY, device="cpu", nomic_rotary_mode="repo_hf")


@pytest.fixture
def v2_encoder(v2_encoder_session: CDEEncoder) -> CDEEncoder:
    """A private copy of the v2-tiny encoder that a test may mutate."""
    return copy.deepcopy(v2_encoder_session)


@pytest.fixture
def v1_encoder(v1_encoder_session: CDEEncoder) -> CDEEncoder:
    """A private copy of the v1-tiny encoder that a test may mutate."""
    return copy.deepcopy(v1_encoder_session)


@pytest.fixture(scope="session")
def v2_context(v2_encoder_session: CDEEncoder) -> CorpusContext:
    """A context built from the small corpus with the v2-tiny encoder."""
    return v2_encoder_session.build_context(corpus_texts(), show_progress_bar=False)


@pytest.fixture(scope="session")
def v1_context(v1_encoder_session: CDEEncoder) -> CorpusContext:
    """A context built from the small corpus with the v1-tiny encoder."""
    return v1_encoder_session.build_context(corpus_texts(), show_progress_bar=False)

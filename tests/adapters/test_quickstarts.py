"""The two framework quickstarts (examples/) run as a user runs them, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import V2_TINY

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a fresh process importing a framework
@pytest.mark.parametrize("script", ["langchain_quickstart.py", "llamaindex_quickstart.py"])
def test_framework_quickstart_builds_reopens_and_answers(script: str, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--model", str(V2_TINY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stored = done.stdout.split("stored context ")[1].split()[0]
    assert f"restored context {stored}" in done.stdout
    assert done.stdout.count("hit: ") == 1

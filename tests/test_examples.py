"""The core example runs as a user would run it: a subprocess, from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import V2_TINY

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_example_runs_offline_from_any_directory(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--model", str(V2_TINY)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "with 16 rows from 8 docs" in result.stdout
    assert result.stdout.count("->") == 2
    assert "identical query vectors: True" in result.stdout

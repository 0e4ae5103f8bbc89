"""The core example runs as a user would run it: a subprocess, from another directory."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import V2_TINY, run_example


def test_quickstart_example_runs_offline_from_any_directory(tmp_path: Path) -> None:
    result = run_example("quickstart.py", "--model", str(V2_TINY), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "with 16 rows from 8 docs" in result.stdout
    assert result.stdout.count("->") == 2
    assert "identical query vectors: True" in result.stdout

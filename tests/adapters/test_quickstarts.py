"""The two framework quickstarts (examples/) run as a user runs them, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import V2_TINY, run_example


@pytest.mark.slow  # a fresh process importing a framework
@pytest.mark.parametrize("script", ["langchain_quickstart.py", "llamaindex_quickstart.py"])
def test_framework_quickstart_builds_reopens_and_answers(script: str, tmp_path: Path) -> None:
    done = run_example(script, "--model", str(V2_TINY), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stored = done.stdout.split("stored context ")[1].split()[0]
    assert f"restored context {stored}" in done.stdout
    assert done.stdout.count("hit: ") == 1

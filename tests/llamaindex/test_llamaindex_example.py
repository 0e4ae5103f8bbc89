"""examples/llamaindex_rag.py runs end to end (two processes) on the tiny checkpoint, offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import V2_TINY, run_example


@pytest.mark.slow  # two fresh processes, each importing the frameworks
def test_llamaindex_example_ingests_reopens_and_answers(tmp_path: Path) -> None:
    done = run_example(
        "llamaindex_rag.py", "--model", str(V2_TINY), "--device", "cpu", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ingested 10 documents into 'llamaindex_example' at cde_data_example" in out
    stored = out.split("context ")[1].split()[0]
    assert f"reopened 'llamaindex_example': context {stored}" in out  # same context, new process
    assert out.count("\nQ: ") == 3
    assert len(re.findall(r"^  -?\d\.\d{3}  \[\w+\] ", out, flags=re.MULTILINE)) == 6  # 2 per query
    assert (tmp_path / "cde_data_example").is_dir()

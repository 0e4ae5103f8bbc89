"""examples/qdrant_quickstart.py runs end to end on the tiny checkpoint, from another folder."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import V2_TINY, run_example
from tests.qdrant.conftest import cli_env


def test_qdrant_quickstart_runs(tmp_path: Path) -> None:
    result = run_example(
        "qdrant_quickstart.py", "--model", str(V2_TINY), cwd=tmp_path, timeout=180, env=cli_env()
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "created 'notes' with 6 points" in out
    assert "garden-only search: ['garden', 'garden']" in out
    assert "reopened: 6 points" in out
    assert "recontextualized: 8 points in notes__cde_g2" in out
    assert list(tmp_path.iterdir()) == []  # the default store is temporary

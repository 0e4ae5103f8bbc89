"""examples/qdrant_quickstart.py runs end to end on the tiny checkpoint, from another folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import V2_TINY
from tests.qdrant.conftest import REPO, cli_env


def test_qdrant_quickstart_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "qdrant_quickstart.py"), "--model", str(V2_TINY)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "created 'notes' with 6 points" in out
    assert "garden-only search: ['garden', 'garden']" in out
    assert "reopened: 6 points" in out
    assert "recontextualized: 8 points in notes__cde_g2" in out
    assert list(tmp_path.iterdir()) == []  # the default store is temporary

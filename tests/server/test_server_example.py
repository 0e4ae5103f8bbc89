"""``examples/server_client.py`` runs as a user would run it (a subprocess, tiny model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import V2_TINY

ROOT = Path(__file__).resolve().parents[2]


def test_server_example_serves_the_openai_client_search_and_upserts(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations")])
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "server_client.py"), "--model", str(V2_TINY)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "models: kitchen, kitchen:query, kitchen:document" in out
    assert "openai client: 2 query vectors of 64 dims" in out
    assert "equal to CDEEncoder.embed_queries: True" in out
    assert out.count("search '") == 2
    assert "documents route: 1 added, 7 points" in out
    assert "search after the upsert: tea.md" in out
    assert out.rstrip().endswith("server stopped")

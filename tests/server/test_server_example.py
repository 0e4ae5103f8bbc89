"""``examples/server_client.py`` runs as a user would run it (a subprocess, tiny model)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import V2_TINY, run_example


def test_server_example_serves_the_openai_client_search_and_upserts(tmp_path: Path) -> None:
    result = run_example("server_client.py", "--model", str(V2_TINY), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "models: kitchen, kitchen:query, kitchen:document" in out
    assert "openai client: 2 query vectors of 64 dims" in out
    assert "equal to CDEEncoder.embed_queries: True" in out
    assert out.count("search '") == 2
    assert "documents route: 1 added, 7 points" in out
    assert "search after the upsert: tea.md" in out
    assert out.rstrip().endswith("server stopped")

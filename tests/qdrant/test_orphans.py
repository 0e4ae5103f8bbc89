"""Leftovers of killed rebuilds: reported by ``info``, removed by the next recontextualize.

The kill lands at a named point (``CDE_RAG_TEST_KILL_AT``), never at a moment chosen by timing.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag_qdrant import ContextualCollection
from cde_rag_qdrant import recontextualize as recontextualize_module
from cde_rag_qdrant._kill_points import AFTER_ALIAS_SWITCH, KILL_ENV
from cde_rag_qdrant._store import alias_target, physical_name, vector_params
from cde_rag_qdrant.cli import main
from cde_rag_qdrant.orphans import find_orphans
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import CliRunner, cli_env

TEXTS = corpus_texts()
MODEL = ["--model", str(V2_TINY), "--device", "cpu", "-q"]


def _collections(store: Path) -> list[str]:
    client = QdrantClient(path=str(store))
    try:
        return sorted(c.name for c in client.get_collections().collections)
    finally:
        client.close()


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, *MODEL])
    out, err = capsys.readouterr()
    return code, out, err


def _info(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = _main(capsys, "info", "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


@pytest.mark.slow
def test_kill_after_the_alias_switch_leaves_an_orphan_the_next_run_removes(
    tmp_path: Path,
    run_cli: CliRunner,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS[:8]):
        (docs / f"n{i}.txt").write_text(text, encoding="utf-8")
    assert _main(capsys, "ingest", "docs")[0] == 0

    killed = run_cli("recontextualize", *MODEL, env={**cli_env(), KILL_ENV: AFTER_ALIAS_SWITCH})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    store = tmp_path / "cde_data"
    assert _collections(store) == ["documents__cde_g1", "documents__cde_g2"]
    info = _info(capsys)
    assert info["physical_name"] == "documents__cde_g2" and info["points"] == 8
    assert info["orphans"] == ["documents__cde_g1"]
    out = _main(capsys, "info")[1]
    assert "orphan       documents__cde_g1 (the next recontextualize removes it)" in out

    code, _, err = _main(capsys, "recontextualize")
    assert code == 0, err
    assert _collections(store) == ["documents__cde_g3"]
    assert _info(capsys)["orphans"] == []
    out = _main(capsys, "search", TEXTS[3], "--limit", "1", "--json")[1]
    assert json.loads(out)["hits"][0]["text"] == TEXTS[3]


def test_kept_old_collections_are_not_orphans(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "notes", v2_encoder_session, context=v2_context)
    col.add(TEXTS[:6])
    col.recontextualize(keep_old=True, show_progress_bar=False)
    assert find_orphans(client, "notes") == []
    ContextualCollection.open(client, "notes", v2_encoder_session).recontextualize(
        show_progress_bar=False
    )
    names = sorted(c.name for c in client.get_collections().collections)
    assert names == ["notes__cde_g1", "notes__cde_g3"]  # g1 kept; g2 retired by g3


def test_an_interrupted_build_is_an_orphan(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext
) -> None:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "notes", v2_encoder_session, context=v2_context)
    col.add(TEXTS[:6])
    partial = physical_name("notes", 7)
    client.create_collection(partial, vectors_config=vector_params(v2_encoder_session.dim))
    client.create_collection("notes_other", vectors_config=vector_params(4))  # not ours
    assert find_orphans(client, "notes") == [partial]
    assert col.info().orphans == (partial,)
    col.recontextualize(show_progress_bar=False)
    names = sorted(c.name for c in client.get_collections().collections)
    assert partial not in names and "notes_other" in names
    assert alias_target(client, "notes") == physical_name("notes", 2)


def test_a_failed_rebuild_leaves_nothing_behind(
    v2_encoder_session: CDEEncoder, v2_context: CorpusContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = QdrantClient(":memory:")
    col = ContextualCollection.create(client, "notes", v2_encoder_session, context=v2_context)
    col.add(TEXTS[:6])

    def broken(*args: Any, **kwargs: Any) -> int:
        msg = "disk full"
        raise RuntimeError(msg)

    monkeypatch.setattr(recontextualize_module, "embed_and_upsert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        col.recontextualize(show_progress_bar=False)
    assert [c.name for c in client.get_collections().collections] == ["notes__cde_g1"]
    assert alias_target(client, "notes") == "notes__cde_g1" and col.count() == 6

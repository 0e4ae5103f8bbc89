"""Server-only behaviour. The whole collection suite also runs on the server: its ``location``
fixture has a ``server`` case that runs when QDRANT_URL is set (docker compose up -d).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder
from cde_rag_qdrant import ContextualCollection, QdrantUnavailableError, connect
from cde_rag_qdrant._store import alias_target
from cde_rag_qdrant.cli import main
from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import NO_SERVER, QDRANT_URL, cleanup

server = pytest.mark.skipif(QDRANT_URL is None, reason=NO_SERVER)


@pytest.mark.enable_socket
def test_unreachable_server_is_a_clear_error(
    v2_encoder_session: CDEEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    client = connect(url="http://127.0.0.1:9", timeout=2)  # nothing listens on port 9
    with pytest.raises(QdrantUnavailableError, match="did not answer"):
        ContextualCollection.open(client, "x", v2_encoder_session)
    code = main(["info", "--qdrant-url", "http://127.0.0.1:9"])
    assert code == 8
    assert "did not answer" in capsys.readouterr().err


@pytest.mark.server
@server
@pytest.mark.enable_socket
def test_wrong_api_key_is_refused_clearly(v2_encoder_session: CDEEncoder) -> None:
    if not os.environ.get("QDRANT_API_KEY"):
        pytest.skip("the server runs without an API key (set QDRANT_API_KEY to test this)")
    client = QdrantClient(url=QDRANT_URL, api_key="wrong-key")
    with pytest.raises(QdrantUnavailableError, match="API key"):
        ContextualCollection.open(client, "x", v2_encoder_session)


@pytest.mark.server
@server
@pytest.mark.enable_socket
def test_cli_against_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for i, text in enumerate(corpus_texts()):
        (tmp_path / f"d{i}.txt").write_text(text, encoding="utf-8")
    name = "cdetest_cli_server"
    where = ["--qdrant-url", str(QDRANT_URL), "--collection", name]
    client = QdrantClient(url=QDRANT_URL, api_key=os.environ.get("QDRANT_API_KEY"))
    cleanup(client, name)
    try:
        model = ["--model", str(V2_TINY), "--device", "cpu", "-q", "--json"]
        assert main(["ingest", ".", *where, *model]) == 0
        assert json.loads(capsys.readouterr().out)["points"] == 20
        assert main(["recontextualize", *where, *model]) == 0
        assert json.loads(capsys.readouterr().out)["points"] == 20
        assert alias_target(client, name) == f"{name}__cde_g2"
        assert main(["search", corpus_texts()[2], *where, "--json", "-k", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["hits"][0]["text"] == corpus_texts()[2]
    finally:
        cleanup(client, name)
        client.close()

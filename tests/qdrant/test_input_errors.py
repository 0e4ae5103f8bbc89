"""Bad paths, names and ids get typed errors (and documented exit codes), never tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient, models

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant import ContextualCollection, StoreUnusableError, connect
from cde_rag_qdrant.cli import main
from cde_rag_qdrant.names import check_collection_name
from tests.conftest import V1_TINY, V2_TINY, corpus_texts

TEXTS = corpus_texts()
MODEL = ["--model", str(V2_TINY), "--device", "cpu", "-q"]


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_qdrant_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "store"
    afile.write_text("not a store")
    with pytest.raises(StoreUnusableError, match="is a file, not a folder") as caught:
        connect(afile)
    assert isinstance(caught.value, OSError)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXTS[0])
    code, _, err = _main(capsys, "ingest", str(docs), "--qdrant-path", str(afile), *MODEL)
    assert code == 1 and "is a file, not a folder" in err and "Traceback" not in err
    assert afile.read_text() == "not a store"


def test_read_only_qdrant_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: the suite may run as root, for whom every folder is writable.
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == readonly else real(p, mode)
    )
    with pytest.raises(StoreUnusableError, match=r"cannot be written .*read-only"):
        connect(readonly / "store")
    assert not (readonly / "store").exists()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("a/b", r"contains '/'"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("x:y", r"contains ':'"),
        ("tab\there", r"contains '\\t'"),
        ("notes__cde_g2", "reserves"),
        ("n" * 201, "at most 200"),
    ],
)
def test_bad_collection_names_create_nothing(
    tmp_path: Path,
    v2_encoder_session: CDEEncoder,
    v2_context: CorpusContext,
    capsys: pytest.CaptureFixture[str],
    bad: str,
    match: str,
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        check_collection_name(bad)
    client = QdrantClient(":memory:")
    with pytest.raises(InvalidInputError, match=match):
        ContextualCollection.create(client, bad, v2_encoder_session, context=v2_context)
    assert client.get_collections().collections == []
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "a.txt").write_text(TEXTS[0])
    with pytest.raises(SystemExit) as exited:
        main(["ingest", str(docs), "--collection", bad, "--qdrant-path", str(tmp_path / "s")])
    assert exited.value.code == 2
    assert "argument --collection" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing created, not even the store folder


def test_recontextualize_keeps_integer_point_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    client = QdrantClient(path=store)
    client.create_collection(
        "legacy", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE)
    )
    client.upsert(
        "legacy",
        points=[
            models.PointStruct(
                id=i, vector=[1.0 + i] * 64, payload={"page_content": t, "metadata": {"n": i}}
            )
            for i, t in enumerate(TEXTS[:6])
        ],
    )
    client.close()
    args = ["--collection", "legacy", "--qdrant-path", store, *MODEL]
    code, _, err = _main(capsys, "recontextualize", *args)
    assert code == 0, err
    client = QdrantClient(path=store)
    try:
        names = sorted(c.name for c in client.get_collections().collections)
        assert names == ["legacy__cde_g1"]  # no orphan left behind
        points, _ = client.scroll("legacy", limit=10)
        assert sorted(p.id for p in points) == list(range(6))
        assert {p.id: p.payload["page_content"] for p in points} == dict(enumerate(TEXTS[:6]))  # type: ignore[index]
    finally:
        client.close()


def test_exit_codes_match_the_documented_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS[:4]):
        (docs / f"n{i}.txt").write_text(text)
    assert _main(capsys, "ingest", "docs", *MODEL)[0] == 0
    v1 = ["--model", str(V1_TINY), "--device", "cpu", "-q"]
    for command in (["search", "anything"], ["recontextualize"], ["recontextualize", "--check"]):
        code, _, err = _main(capsys, *command, *v1)
        assert code == 1, (command, err)  # 1 error: a 64-wide collection, an 8-wide model
        assert "64-dimensional vectors but this model makes 8-dimensional" in err
    client = connect("cde_data")
    encoder = CDEEncoder.from_pretrained(V2_TINY, device="cpu")
    ContextualCollection.create(client, "empty", encoder, corpus=TEXTS[:3])
    client.close()
    code, out, err = _main(capsys, "recontextualize", "--check", "--collection", "empty", *MODEL)
    assert code == 6, err  # 6: collection empty
    assert "holds no texts to measure drift on; add documents" in err and not out
    code, _, err = _main(capsys, "search", "bad \udcff byte", *MODEL)
    assert code == 2 and "lone surrogate" in err  # 2: usage (bad input)


def test_info_json_lists_no_orphans_normally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text(TEXTS[0])
    assert _main(capsys, "ingest", "a.txt", *MODEL)[0] == 0
    code, out, _ = _main(capsys, "info", "--json", *MODEL)
    data: dict[str, Any] = json.loads(out)
    assert code == 0 and data["orphans"] == []

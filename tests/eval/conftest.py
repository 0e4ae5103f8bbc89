"""Fixtures for ``cde-rag eval``: small BEIR-format data sets and a checkpoint with a fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import V2_TINY, corpus_texts
from tests.qdrant.conftest import run_cli  # noqa: F401 - the CLI runner fixture, shared


def write_beir(
    folder: Path,
    docs: dict[str, str],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    split: str = "test",
    titles: dict[str, str] | None = None,
) -> Path:
    """Write a BEIR-format folder and return it."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for key, text in docs.items():
            title = (titles or {}).get(key, "")
            f.write(json.dumps({"_id": key, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        for key, text in queries.items():
            f.write(json.dumps({"_id": key, "text": text}) + "\n")
    with (folder / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, rels in qrels.items():
            for doc, score in rels.items():
                f.write(f"{qid}\t{doc}\t{score}\n")
    return folder


def tiny_beir(folder: Path) -> Path:
    """The 20-document test corpus; each of 8 queries is the start of one document."""
    texts = corpus_texts()
    docs = {f"d{i}": t for i, t in enumerate(texts)}
    queries = {f"q{i}": " ".join(texts[i].split()[:6]) for i in range(8)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(8)}
    qrels["q0"]["d9"] = 2  # a graded second relevant document
    return write_beir(folder, docs, queries, qrels)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A BEIR folder over the 20-document test corpus."""
    return tiny_beir(tmp_path / "tiny")


@pytest.fixture(scope="session")
def v2_with_fallback(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the v2-tiny checkpoint with a ``random_strings.txt`` (for ``fallback``)."""
    folder = tmp_path_factory.mktemp("v2-fallback") / "v2-tiny"
    shutil.copytree(V2_TINY, folder)
    lines = [f"generic line {i} about {w}" for i, w in enumerate("abcdefghijklmnopqrstuvwxyz")]
    (folder / "random_strings.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder

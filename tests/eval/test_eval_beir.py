"""Reading BEIR folders: texts, left-out queries, and typed errors that point at the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cde_rag.errors import InvalidInputError
from cde_rag_qdrant.errors import DatasetFormatError
from cde_rag_qdrant.evaluation import load_beir
from tests.eval.conftest import write_beir


def test_reads_titles_qrels_and_notes(tmp_path: Path) -> None:
    folder = write_beir(
        tmp_path / "set",
        {"a": "alpha text", "b": "beta text", "c": ""},
        {"q1": "find alpha", "q2": "nothing relevant", "q4": "unjudged"},
        {"q1": {"a": 2, "b": 0, "zz": 1}, "q2": {"b": 0}, "q3": {"a": 1}},
        titles={"a": "Alpha"},
    )
    data = load_beir(folder)
    assert data.name == "set"
    assert data.doc_ids == ["a", "b"]
    assert data.doc_texts == ["Alpha alpha text", "beta text"]
    assert data.query_ids == ["q1"]
    assert data.query_texts == ["find alpha"]
    assert data.qrels == {"q1": {"a": 2, "b": 0, "zz": 1}}
    assert data.notes == [
        "1 documents without title or text were left out",
        "1 judged queries without a relevant document were left out",
        "1 judged queries missing from queries.jsonl were left out",
        "1 relevant documents are not in the corpus",
    ]
    assert len(data.corpus_hash) == 64
    assert data.corpus_hash != load_beir(folder, read_corpus=False).corpus_hash


def test_content_hash_follows_the_texts(tmp_path: Path) -> None:
    one = load_beir(write_beir(tmp_path / "one", {"a": "x y"}, {"q": "x"}, {"q": {"a": 1}}))
    two = load_beir(write_beir(tmp_path / "two", {"a": "x z"}, {"q": "x"}, {"q": {"a": 1}}))
    assert one.corpus_hash != two.corpus_hash
    assert one.queries_hash == two.queries_hash


def test_errors_name_the_file_and_line(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "set", {"a": "text"}, {"q": "x"}, {"q": {"a": 1}})
    with pytest.raises(DatasetFormatError, match=r"splits found: test"):
        load_beir(folder, split="dev")
    with pytest.raises(DatasetFormatError, match="not a folder"):
        load_beir(tmp_path / "missing")
    (folder / "corpus.jsonl").write_text('{"_id": "a", "text": "ok"}\n{broken\n')
    with pytest.raises(DatasetFormatError, match=r"corpus.jsonl:2: malformed JSON"):
        load_beir(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "a", "text": "ok"}\n{"_id": "a", "text": "x"}\n')
    with pytest.raises(DatasetFormatError, match=r"corpus.jsonl:2: duplicate document id 'a'"):
        load_beir(folder)
    (folder / "corpus.jsonl").write_text('{"text": "no id"}\n')
    with pytest.raises(DatasetFormatError, match="'_id'"):
        load_beir(folder)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DatasetFormatError, match=r"corpus\.jsonl not found"):
        load_beir(folder)
    assert load_beir(folder, read_corpus=False).query_ids == ["q"]  # collections need no corpus
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\ta\tone\n")
    with pytest.raises(DatasetFormatError, match=r"test.tsv:2: expected"):
        load_beir(folder, read_corpus=False)
    (folder / "qrels" / "test.tsv").write_text("q\ta\t0\n")
    with pytest.raises(DatasetFormatError, match="no query has a relevant document") as info:
        load_beir(folder, read_corpus=False)
    assert isinstance(info.value, InvalidInputError | ValueError)

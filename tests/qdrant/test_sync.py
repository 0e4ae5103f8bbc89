"""Chunking and incremental sync: coverage, window, ids, re-sync, edits, prune, bad inputs."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pytest
from qdrant_client import QdrantClient

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import InvalidInputError
from cde_rag_qdrant import (
    ContextualCollection,
    Document,
    DuplicateDocumentError,
    SyncReport,
)
from cde_rag_qdrant.chunking import Chunker, _only_headings, heading_marks
from cde_rag_qdrant.sync import chunk_point_id
from tests.qdrant.long_docs import LONG_DOCS

FORMATS = {name: "markdown" if name.endswith(".md") else "text" for name in LONG_DOCS}


class EmbedCounter:
    """Wraps ``encoder.embed_documents`` to count the texts it embeds."""

    def __init__(self, encoder: CDEEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        original = encoder.embed_documents

        def counting(texts: Any, *args: Any, **kwargs: Any) -> Any:
            self.texts.extend(texts)
            return original(texts, *args, **kwargs)

        monkeypatch.setattr(encoder, "embed_documents", counting)


def _docs(texts: dict[str, str]) -> list[Document]:
    return [
        Document(k, v, {"tag": k}, text_format="markdown" if k.endswith(".md") else "text")
        for k, v in texts.items()
    ]


def _points(client: QdrantClient, name: str) -> dict[str, dict[str, Any]]:
    points, _ = client.scroll(name, limit=10_000, with_payload=True)
    return {str(p.id): dict(p.payload or {}) for p in points}


@pytest.fixture
def col(v2_encoder: CDEEncoder, v2_context: CorpusContext) -> Iterator[ContextualCollection]:
    client = QdrantClient(":memory:")
    yield ContextualCollection.create(client, "kb", v2_encoder, context=v2_context)
    client.close()


# -- chunking -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LONG_DOCS))
def test_long_documents_are_covered_and_every_chunk_fits(
    v2_encoder_session: CDEEncoder, name: str
) -> None:
    text = LONG_DOCS[name]
    encoder = v2_encoder_session
    assert encoder.count_tokens([text], kind=None)[0] > 10_000
    spans = Chunker(encoder).spans(text, text_format=FORMATS[name])  # type: ignore[arg-type]
    assert len(spans) > 20
    covered = np.zeros(len(text), dtype=bool)
    previous_end = 0
    for span in spans:
        assert previous_end <= span.start < span.end <= len(text)
        assert text[previous_end : span.start].strip() == ""  # only whitespace between chunks
        covered[span.start : span.end] = True
        previous_end = span.end
    assert text[previous_end:].strip() == ""
    missing = [i for i in np.flatnonzero(~covered) if not text[i].isspace()]
    assert missing == []  # every character is in a chunk, by offsets
    counts = encoder.count_tokens([text[s.start : s.end] for s in spans])  # prefix + specials
    assert max(counts) <= encoder.max_length
    assert max(counts) > encoder.max_length * 0.8  # chunks are filled, not tiny


def test_markdown_chunks_carry_their_heading_path(v2_encoder_session: CDEEncoder) -> None:
    text = LONG_DOCS["nested.md"]
    spans = Chunker(v2_encoder_session, chunk_size=60).spans(text, text_format="markdown")
    marks = heading_marks(text)
    assert all("not a heading" not in title for _, _, title in marks)  # fenced code skipped
    checked = 0
    for span in spans:
        before = [m for m in marks if m[0] <= span.start]
        if not before or not span.headings:
            continue
        assert span.headings[0] == "Handbook"
        assert span.headings[-1] == before[-1][2]  # the nearest heading above the chunk
        if before[-1][1] == 3:
            part = next(m for m in reversed(before) if m[1] == 2)[2]
            assert span.headings == ("Handbook", part, before[-1][2])
            checked += 1
    assert checked > 10
    for size in (60, None):  # a heading stays with the text under it
        for name in ("nested.md", "code.md"):
            doc = LONG_DOCS[name]
            chunks = Chunker(v2_encoder_session, chunk_size=size).spans(doc, text_format="markdown")
            lone = [doc[c.start : c.end] for c in chunks if _only_headings(doc[c.start : c.end])]
            assert lone == [], (name, size)


def test_chunk_size_and_overlap_are_honoured_and_checked(v2_encoder_session: CDEEncoder) -> None:
    enc = v2_encoder_session
    text = LONG_DOCS["no-blank-lines.txt"]
    spans = Chunker(enc, chunk_size=100, chunk_overlap=30).spans(text)
    assert max(enc.count_tokens([text[s.start : s.end] for s in spans], kind=None)) <= 100
    assert sum(1 for a, b in itertools.pairwise(spans) if b.start < a.end) > 10
    with pytest.raises(InvalidInputError, match=r"does not fit the model window.*499 or less"):
        Chunker(enc, chunk_size=600)
    with pytest.raises(InvalidInputError, match=r"chunk_overlap=100; expected an int in 0..99"):
        Chunker(enc, chunk_size=100, chunk_overlap=100)
    with pytest.raises(InvalidInputError, match=r"chunk_size=0"):
        Chunker(enc, chunk_size=0)


# -- sync -----------------------------------------------------------------------------------


def test_sync_stores_chunks_with_positions_and_no_truncation(
    col: ContextualCollection, caplog: pytest.LogCaptureFixture
) -> None:
    texts = {k: LONG_DOCS[k] for k in ("nested.md", "cjk.txt")}
    with caplog.at_level(logging.WARNING):
        report = col.sync(_docs(texts), show_progress_bar=False)
    assert "truncated" not in caplog.text
    assert report.documents_added == 2
    points = _points(col.client, "kb")
    assert report.chunks_added == report.chunks_embedded == len(points) == col.count()
    for pid, payload in points.items():
        meta = payload["metadata"]
        doc = meta["document_id"]
        text = texts[doc]
        assert payload["page_content"] == text[meta["start"] : meta["end"]]  # chunk text only
        assert pid == chunk_point_id(doc, meta["chunking"], meta["chunk_index"])
        assert meta["tag"] == doc  # the user's metadata
        assert 0 <= meta["chunk_index"] < meta["chunk_count"]
        assert len(meta["content_hash"]) == 64
    md = [p["metadata"] for p in points.values() if p["metadata"]["document_id"] == "nested.md"]
    assert all(m["headings"][0] == "Handbook" for m in md if m["chunk_index"] > 0)
    hits = col.search("Topic 3.1", limit=3)
    assert hits and "document_id" in hits[0].metadata


def test_resync_embeds_only_what_changed(
    col: ContextualCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = {k: LONG_DOCS[k][:6000] for k in ("nested.md", "cjk.txt", "one-line.txt")}
    texts["short.txt"] = "A short note about lanterns."
    first = col.sync(_docs(texts), show_progress_bar=False)
    before = _points(col.client, "kb")
    counter = EmbedCounter(col.encoder, monkeypatch)

    again = col.sync(_docs(texts), show_progress_bar=False)
    assert counter.texts == []  # unchanged: nothing embedded (encoder calls, not time)
    assert (again.documents_unchanged, again.chunks_unchanged) == (4, first.chunks_added)
    assert again.documents_added == again.documents_updated == again.chunks_removed == 0

    old_cjk = {
        p["page_content"] for p in before.values() if p["metadata"]["document_id"] == "cjk.txt"
    }
    texts["cjk.txt"] = "新的开头。" + texts["cjk.txt"][200:]
    edited = col.sync(_docs(texts), show_progress_bar=False)
    after = _points(col.client, "kb")
    cjk = {p["page_content"] for p in after.values() if p["metadata"]["document_id"] == "cjk.txt"}
    assert edited.documents_updated == 1 and edited.documents_unchanged == 3
    assert edited.changed_ids == ["cjk.txt"]
    assert set(counter.texts) == cjk  # only the edited document's chunks were embedded
    assert len(counter.texts) == edited.chunks_embedded
    assert not cjk & (old_cjk - cjk) and all(t in texts["cjk.txt"] for t in cjk)
    stale = [p for p in after.values() if p["metadata"]["document_id"] == "cjk.txt"]
    assert {p["metadata"]["version"] for p in stale} == {stale[0]["metadata"]["version"]}
    assert edited.chunks_removed == sum(
        1 for p in before.values() if p["metadata"]["document_id"] == "cjk.txt"
    )
    unchanged_ids = {k for k, p in before.items() if p["metadata"]["document_id"] != "cjk.txt"}
    assert unchanged_ids <= set(after)

    del texts["short.txt"]
    kept = col.sync(_docs(texts), show_progress_bar=False)
    assert kept.documents_removed == 0  # without prune nothing is deleted
    pruned = col.sync(_docs(texts), prune=True, show_progress_bar=False)
    assert (pruned.documents_removed, pruned.chunks_removed) == (1, 1)
    docs = {p["metadata"]["document_id"] for p in _points(col.client, "kb").values()}
    assert docs == set(texts)


def test_prune_with_a_scope_only_touches_that_scope(col: ContextualCollection) -> None:
    docs = [
        Document(f"d{i}", f"note number {i}", {"root": "a" if i < 2 else "b"}) for i in range(4)
    ]
    col.sync(docs, show_progress_bar=False)
    col.add(["added by hand"], ids=["manual"])  # points without a document id: never pruned
    report = col.sync(docs[:1], prune={"root": "a"}, show_progress_bar=False)
    assert report.documents_removed == 1
    ids = {p["metadata"].get("document_id") for p in _points(col.client, "kb").values()}
    assert ids == {"d0", "d2", "d3", None}


def test_metadata_edit_rewrites_the_payload(col: ContextualCollection) -> None:
    col.sync([Document("a", "some text", {"v": 1})], show_progress_bar=False)
    report = col.sync([Document("a", "some text", {"v": 2})], show_progress_bar=False)
    assert report.documents_updated == 1
    (payload,) = _points(col.client, "kb").values()
    assert payload["metadata"]["v"] == 2


def test_repeated_ids_are_errors_naming_both_places(col: ContextualCollection) -> None:
    docs = [
        Document("x", "one", origin="a.jsonl:3"),
        Document("y", "two"),
        Document("x", "three", origin="b.jsonl:7"),
    ]
    with pytest.raises(DuplicateDocumentError, match=r"'x' appears twice: a.jsonl:3 and b.jsonl:7"):
        col.sync(docs, show_progress_bar=False)
    with pytest.raises(DuplicateDocumentError, match=r"documents\[0\] and documents\[1\]"):
        col.sync([Document("z", "one"), Document("z", "two")], show_progress_bar=False)
    assert col.count() == 0  # checked before anything was written
    with pytest.raises(InvalidInputError, match=r"ids\[0\] and ids\[1\] are both 'dup'"):
        col.add(["first", "second"], ids=["dup", "dup"])
    assert col.count() == 0


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"x": float("nan")}, "not JSON-serialisable"),
        ({"chunk_index": 3}, "'chunk_index' are reserved"),
    ],
)
def test_bad_metadata_is_refused_before_writing(
    col: ContextualCollection, meta: dict[str, Any], match: str
) -> None:
    docs = [Document("ok", "fine text"), Document("bad", "text", meta, origin="in.jsonl:2")]
    with pytest.raises(InvalidInputError, match=match):
        col.sync(docs, show_progress_bar=False)
    assert col.count() == 0


def test_sync_checks_its_options(col: ContextualCollection) -> None:
    with pytest.raises(InvalidInputError, match="batch_size=0"):
        col.sync([Document("a", "text")], batch_size=0)
    with pytest.raises(InvalidInputError, match="not a string"):
        col.sync("text")  # type: ignore[arg-type]
    assert isinstance(col.sync([], show_progress_bar=False), SyncReport)


def test_recontextualize_and_drift_work_on_a_chunked_collection(
    col: ContextualCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = {"nested.md": LONG_DOCS["nested.md"][:5000], "cjk.txt": LONG_DOCS["cjk.txt"][:1500]}
    first = col.sync(_docs(texts), show_progress_bar=False)
    before = _points(col.client, "kb")
    assert col.drift(show_progress_bar=False).n_documents == len(before)
    old = col.fingerprint
    col.recontextualize(seed=5, show_progress_bar=False)
    assert col.fingerprint != old
    after = _points(col.client, "kb")
    assert set(after) == set(before)  # the same chunk points, re-embedded
    assert all(after[k]["metadata"] == before[k]["metadata"] for k in before)
    counter = EmbedCounter(col.encoder, monkeypatch)
    again = col.sync(_docs(texts), show_progress_bar=False)
    assert counter.texts == [] and again.chunks_unchanged == first.chunks_added


class _Shifting:
    """A document whose text changes between the plan and the write (a file being edited)."""

    id = "moving"
    text_format: Literal["text", "markdown"] = "text"
    origin = "moving.txt"

    def __init__(self) -> None:
        self.loads = 0
        self.metadata: dict[str, Any] = {}

    def load(self) -> Any:
        from cde_rag_qdrant.documents import LoadedText

        self.loads += 1
        return LoadedText(f"version {self.loads} of a file that is being edited")


def test_a_document_edited_during_the_sync_keeps_its_stored_chunks(
    col: ContextualCollection,
) -> None:
    col.sync([Document("moving", "the stored version")], show_progress_bar=False)
    report = col.sync([_Shifting()], show_progress_bar=False)
    assert [str(s) for s in report.skipped] == ["moving.txt: changed while syncing; run again"]
    assert report.documents_updated == 0 and report.chunks_removed == 0
    (payload,) = _points(col.client, "kb").values()
    assert payload["page_content"] == "the stored version"  # nothing lost


def test_chunks_over_the_window_are_split_again(v2_encoder_session: CDEEncoder) -> None:
    enc = v2_encoder_session
    chunker = Chunker(enc)
    assert chunker.chunk_size == enc.max_chunk_tokens  # the default leaves room for the prefix
    chunker.chunk_size = enc.max_length  # as if the prefix were forgotten: chunks would overflow
    text = LONG_DOCS["one-line.txt"]
    first = chunker._split(text, "text", chunker.chunk_size)
    assert max(enc.count_tokens([text[a:b] for a, b in first])) > enc.max_length
    spans = chunker.spans(text)
    assert max(enc.count_tokens([text[s.start : s.end] for s in spans])) <= enc.max_length

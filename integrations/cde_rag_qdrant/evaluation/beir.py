"""Read a retrieval data set in the BEIR layout.

A folder with ``corpus.jsonl`` (``{"_id", "title", "text"}`` per line), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/<split>.tsv`` (a header line, then ``query-id``, ``corpus-id``,
``score`` separated by tabs). A document's text is ``title + " " + text`` (BEIR's convention).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cde_rag_qdrant.errors import DatasetFormatError

logger = logging.getLogger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"


@dataclass(frozen=True)
class RetrievalData:
    """Queries with relevance judgements, and (for the local path) the corpus.

    Attributes:
        name: The data set's folder name.
        split: The qrels split (``test``, ``dev``, ...).
        doc_ids: Corpus ids, in file order (empty when the corpus was not read).
        doc_texts: ``title + " " + text`` of each document.
        query_ids: Ids of the evaluated queries: judged, with at least one relevant document.
        query_texts: Their texts.
        qrels: ``{query id: {corpus id: relevance}}`` of the evaluated queries.
        notes: What was left out and why (empty documents, unjudged queries, ...).
    """

    name: str
    split: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)

    @property
    def corpus_hash(self) -> str:
        """SHA-256 over the ordered ``(id, text)`` pairs of the corpus."""
        return _hash_pairs(self.doc_ids, self.doc_texts)

    @property
    def queries_hash(self) -> str:
        """SHA-256 over the ordered ``(id, text)`` pairs of the evaluated queries."""
        return _hash_pairs(self.query_ids, self.query_texts)


def _hash_pairs(ids: Sequence[str], texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for key, text in zip(ids, texts, strict=True):
        digest.update(key.encode())
        digest.update(b"\0")
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        msg = (
            f"{path} not found; a BEIR data set is a folder with {CORPUS_FILE}, {QUERIES_FILE} "
            f"and {QRELS_DIR}/<split>.tsv"
        )
        raise DatasetFormatError(msg)
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                msg = f"{path}:{number}: malformed JSON ({exc.msg}); expected one object per line"
                raise DatasetFormatError(msg) from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("_id"), str | int):
                msg = f"{path}:{number}: expected an object with an '_id' string; got {line:.80}"
                raise DatasetFormatError(msg)
            yield number, obj


def _text(obj: dict[str, Any], path: Path, number: int, keys: tuple[str, ...]) -> str:
    parts = []
    for key in keys:
        value = obj.get(key) or ""
        if not isinstance(value, str):
            msg = f"{path}:{number}: '{key}' must be a string, got {type(value).__name__}"
            raise DatasetFormatError(msg)
        if value.strip():
            parts.append(value.strip())
    return " ".join(parts)


def _read_texts(path: Path, keys: tuple[str, ...], what: str) -> tuple[dict[str, str], int]:
    texts: dict[str, str] = {}
    empty = 0
    for number, obj in _jsonl(path):
        key = str(obj["_id"])
        if key in texts:
            msg = f"{path}:{number}: duplicate {what} id {key!r}; ids must be unique"
            raise DatasetFormatError(msg)
        text = _text(obj, path, number, keys)
        if text:
            texts[key] = text
        else:
            empty += 1
    return texts, empty


def available_splits(folder: Path) -> list[str]:
    """The qrels splits present under ``folder/qrels``."""
    return sorted(p.stem for p in (folder / QRELS_DIR).glob("*.tsv"))


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``{query id: {corpus id: relevance}}`` from a BEIR qrels TSV (header line first)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip() or (number == 1 and not fields[-1].lstrip("-").isdigit()):
                continue  # blank line or the header (query-id corpus-id score)
            if len(fields) != 3 or not fields[2].strip().lstrip("-").isdigit():
                msg = (
                    f"{path}:{number}: expected 'query-id<TAB>corpus-id<TAB>integer score', "
                    f"got {line.strip()!r:.80}"
                )
                raise DatasetFormatError(msg)
            qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    return qrels


def _evaluable(
    judged: dict[str, dict[str, int]], queries: dict[str, str], notes: list[str]
) -> dict[str, dict[str, int]]:
    """The judged queries that have a relevant document and a text; the rest noted."""
    qrels: dict[str, dict[str, int]] = {}
    no_relevant = no_text = 0
    for qid, rels in judged.items():
        if not any(r > 0 for r in rels.values()):
            no_relevant += 1
        elif qid not in queries:
            no_text += 1
        else:
            qrels[qid] = rels
    if no_relevant:
        notes.append(f"{no_relevant} judged queries without a relevant document were left out")
    if no_text:
        notes.append(f"{no_text} judged queries missing from {QUERIES_FILE} were left out")
    return qrels


def load_beir(
    path: str | os.PathLike[str], *, split: str = "test", read_corpus: bool = True
) -> RetrievalData:
    """Read a BEIR-format folder.

    Queries without a relevant document (all scores <= 0) or without a text in
    ``queries.jsonl`` are left out, as are documents without text; ``notes`` says how many.

    Args:
        path: The folder.
        split: Which ``qrels/<split>.tsv`` to evaluate.
        read_corpus: Read ``corpus.jsonl`` (False for a collection that already holds it).

    Returns:
        The data set.

    Raises:
        DatasetFormatError: Missing files, malformed lines (with ``path:line``), duplicate
            ids, or no evaluable query.
    """
    folder = Path(path)
    if not folder.is_dir():
        msg = f"{folder} is not a folder; pass a BEIR data set folder (corpus.jsonl, ...)"
        raise DatasetFormatError(msg)
    qrels_path = folder / QRELS_DIR / f"{split}.tsv"
    if not qrels_path.is_file():
        found = ", ".join(available_splits(folder)) or "none"
        msg = f"{qrels_path} not found (splits found: {found}); choose one with --split"
        raise DatasetFormatError(msg)
    notes: list[str] = []
    doc_ids: list[str] = []
    doc_texts: list[str] = []
    if read_corpus:
        corpus, empty_docs = _read_texts(folder / CORPUS_FILE, ("title", "text"), "document")
        doc_ids, doc_texts = list(corpus), list(corpus.values())
        if empty_docs:
            notes.append(f"{empty_docs} documents without title or text were left out")
        if not corpus:
            msg = f"{folder / CORPUS_FILE} holds no document with text"
            raise DatasetFormatError(msg)
    queries, _ = _read_texts(folder / QUERIES_FILE, ("text",), "query")
    qrels = _evaluable(read_qrels(qrels_path), queries, notes)
    if read_corpus:
        known = set(doc_ids)
        unknown = {d for rels in qrels.values() for d, r in rels.items() if r > 0} - known
        if unknown:
            notes.append(f"{len(unknown)} relevant documents are not in the corpus")
    if not qrels:
        msg = f"{qrels_path}: no query has a relevant document and a text in {QUERIES_FILE}"
        raise DatasetFormatError(msg)
    for note in notes:
        logger.warning("%s: %s", folder.name, note)
    query_ids = list(qrels)
    return RetrievalData(
        name=folder.resolve().name,
        split=split,
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        query_ids=query_ids,
        query_texts=[queries[q] for q in query_ids],
        qrels=qrels,
        notes=notes,
    )

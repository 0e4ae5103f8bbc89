"""Read documents for ``cde-rag ingest``: .txt and .md files (one document each) and .jsonl.

A JSONL line is an object with a ``text`` string, an optional ``id`` (string or integer), an
optional ``metadata`` object, and any other fields (merged into the metadata). Problems never
stop the run: each bad file or line is reported with its path and line number and skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cde_rag_qdrant.payload import text_point_id

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md"})
JSONL_SUFFIXES = frozenset({".jsonl"})
SUFFIXES = TEXT_SUFFIXES | JSONL_SUFFIXES
_BINARY_PROBE = 8192


@dataclass(frozen=True)
class Document:
    """One document to ingest.

    Attributes:
        id: Caller id (file path, JSONL ``id``) or the text's point id when none is given.
        text: The text.
        metadata: Stored under the payload's ``metadata`` (``source`` = the file).
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """An input that was not ingested, and why.

    Attributes:
        path: The file.
        line: 1-based line number, or None for the whole file.
        reason: What was wrong and how to fix it.
    """

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        """``path:line: reason``."""
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


def discover(paths: Sequence[Path]) -> tuple[list[Path], list[Skipped]]:
    """Files to read: given files, and supported files under given folders (sorted).

    Hidden files and folders (``.git``, ``.venv``, ...) inside folders are not entered. A file
    named explicitly with an unsupported suffix is reported as skipped.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for path in paths:
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(
                    Path(root) / n
                    for n in sorted(names)
                    if not n.startswith(".") and Path(n).suffix.lower() in SUFFIXES
                )
        elif path.suffix.lower() in SUFFIXES:
            files.append(path)
        else:
            reason = f"unsupported file type {path.suffix!r}; expected .txt, .md or .jsonl"
            skipped.append(Skipped(str(path), None, reason))
    return files, skipped


def _decode_error(data: bytes, exc: UnicodeDecodeError, first_line: int = 1) -> tuple[int, str]:
    line = first_line + data[: exc.start].count(b"\n")
    bad = data[exc.start : exc.start + 1].hex()
    return line, f"not valid UTF-8 (byte 0x{bad}); re-save the file as UTF-8"


def _read_text_file(path: Path, data: bytes) -> tuple[list[Document], list[Skipped]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, reason = _decode_error(data, exc)
        return [], [Skipped(str(path), line, reason)]
    if not text.strip():
        return [], [Skipped(str(path), None, "empty file")]
    doc = Document(id=str(path.resolve()), text=text, metadata={"source": str(path)})
    return [doc], []


def _parse_jsonl_line(path: Path, number: int, raw: bytes) -> Document | Skipped:
    where = str(path)
    try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        return Skipped(where, number, _decode_error(raw, exc, number)[1])
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return Skipped(where, number, f"malformed JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(obj, dict):
        return Skipped(where, number, f"expected a JSON object, got {type(obj).__name__}")
    text = obj.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        return Skipped(where, number, "no non-empty 'text' string field")
    key = obj.pop("id", None)
    if key is not None and (isinstance(key, bool) or not isinstance(key, str | int) or key == ""):
        return Skipped(where, number, f"'id' must be a non-empty string or integer, got {key!r}")
    nested = obj.pop("metadata", None)
    if nested is not None and not isinstance(nested, dict):
        return Skipped(where, number, "'metadata' must be a JSON object")
    metadata: dict[str, Any] = {"source": where, **obj, **(nested or {})}
    doc_id = str(key) if key is not None else text_point_id(text)
    return Document(id=doc_id, text=text, metadata=metadata)


def _read_jsonl(path: Path, data: bytes) -> tuple[list[Document], list[Skipped]]:
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        result = _parse_jsonl_line(path, number, raw)
        if isinstance(result, Document):
            docs.append(result)
        else:
            skipped.append(result)
    return docs, skipped


def read_documents(files: Iterable[Path]) -> tuple[list[Document], list[Skipped]]:
    """Read every file; returns the documents (unique ids, last wins) and what was skipped."""
    by_id: dict[str, Document] = {}
    skipped: list[Skipped] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            skipped.append(Skipped(str(path), None, f"cannot read ({exc.strerror or exc})"))
            continue
        if b"\x00" in data[:_BINARY_PROBE]:
            skipped.append(Skipped(str(path), None, "binary file (NUL bytes); not text"))
            continue
        reader = _read_jsonl if path.suffix.lower() in JSONL_SUFFIXES else _read_text_file
        docs, problems = reader(path, data)
        skipped.extend(problems)
        for doc in docs:
            by_id[doc.id] = doc
    return list(by_id.values()), skipped

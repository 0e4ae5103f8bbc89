"""Find the documents of ``cde-rag ingest``: files under folders, named files, JSONL lines.

Document ids are stable wherever the folder lies: a file's id is its path relative to the folder
given on the command line (``guide/install.md``), a file named directly is identified by its
name, a JSONL line by its ``id`` (else by its text). Every chunk's metadata gets ``source`` (the
same relative path; for JSONL the file's) and ``root`` (the name of the folder or file given),
which ``--prune`` uses to find the documents of these inputs whose files are gone.

A JSONL line is an object with a ``text`` string, an optional ``id`` (string or integer), an
optional ``metadata`` object, and any other fields (merged into the metadata). Bad lines and
unreadable files are reported with their path and line number and skipped; a document id seen
twice is an error naming both places.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cde_rag_qdrant.documents import (
    Document,
    DocumentReadError,
    FileDocument,
    Skipped,
    decode_utf8,
    file_kind,
    require_extra,
)
from cde_rag_qdrant.errors import DuplicateDocumentError
from cde_rag_qdrant.payload import text_point_id

__all__ = ["Inputs", "check_unique_ids", "discover"]


@dataclass
class Inputs:
    """What ``cde-rag ingest`` found.

    Attributes:
        documents: Files (read when synced) and JSONL documents, in a stable order.
        skipped: Inputs that cannot be read, with the reason.
        unsupported: Files of unsupported types inside folders, counted by suffix.
        roots: The ``root`` metadata values of the given paths (for ``--prune``).
        files: Number of supported files found.
    """

    documents: list[Document | FileDocument] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unsupported: Counter[str] = field(default_factory=Counter)
    roots: list[str] = field(default_factory=list)
    files: int = 0


def _reject_constant(name: str) -> Any:
    msg = f"{name} is not a JSON number (Qdrant payloads cannot hold it)"
    raise ValueError(msg)


def _parse_jsonl_line(raw: bytes, number: int, where: str, base: dict[str, Any]) -> Document:
    line = decode_utf8(raw, where, number)

    def bad(reason: str) -> DocumentReadError:
        return DocumentReadError(Skipped(where, number, reason))

    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        msg = f"malformed JSON ({exc.msg} at column {exc.colno})"
        raise bad(msg) from exc
    except ValueError as exc:  # NaN / Infinity
        raise bad(str(exc)) from exc
    if not isinstance(obj, dict):
        msg = f"expected a JSON object, got {type(obj).__name__}"
        raise bad(msg)
    text = obj.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        msg = "no non-empty 'text' string field"
        raise bad(msg)
    key = obj.pop("id", None)
    if key is not None and (isinstance(key, bool) or not isinstance(key, str | int) or key == ""):
        msg = f"'id' must be a non-empty string or integer, got {key!r}"
        raise bad(msg)
    nested = obj.pop("metadata", None)
    if nested is not None and not isinstance(nested, dict):
        msg = "'metadata' must be a JSON object"
        raise bad(msg)
    metadata: dict[str, Any] = {**base, **obj, **(nested or {})}
    if any(isinstance(v, float) and not math.isfinite(v) for v in metadata.values()):
        msg = "metadata holds a non-finite number"
        raise bad(msg)
    doc_id = str(key) if key is not None else text_point_id(text)
    return Document(doc_id, text, metadata, origin=f"{where}:{number}")


def _read_jsonl(path: Path, source: str, root: str, out: Inputs) -> None:
    where = str(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            out.skipped.append(Skipped(where, None, "not a regular file; only files are read"))
            return
        data = path.read_bytes()
    except OSError as exc:
        out.skipped.append(Skipped(where, None, f"cannot read ({exc.strerror or exc})"))
        return
    base = {"source": source, "root": root}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            out.documents.append(_parse_jsonl_line(raw, number, where, base))
        except DocumentReadError as exc:
            out.skipped.append(exc.skipped)


def _add_file(path: Path, doc_id: str, root: str, out: Inputs, *, explicit: bool) -> None:
    kind = file_kind(path)
    if kind is None:
        if explicit:
            reason = f"unsupported file type {path.suffix!r}; expected one of {_SUPPORTED}"
            out.skipped.append(Skipped(str(path), None, reason))
        else:
            out.unsupported[path.suffix.lower() or "(no suffix)"] += 1
        return
    require_extra(kind, path)
    out.files += 1
    if kind == "jsonl":
        _read_jsonl(path, doc_id, root, out)
        return
    meta = {"source": doc_id, "root": root}
    out.documents.append(FileDocument(doc_id, path, kind, meta, origin=str(path)))


_SUPPORTED = ".txt, .md, .rst, .jsonl, .html, .pdf"


def discover(paths: Sequence[Path]) -> Inputs:
    """Find and pre-read the inputs (nothing is embedded; files are read later, when synced).

    Hidden files and folders (``.git``, ``.venv``, ...) inside folders are not entered.

    Raises:
        OptionalDependencyError: A PDF or HTML file was found but its extra is not installed.
    """
    out = Inputs()
    for path in paths:
        root = path.resolve().name or str(path)
        out.roots.append(root)
        if not path.is_dir():
            _add_file(path, path.name, root, out, explicit=True)
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                file = Path(folder) / name
                rel = file.relative_to(path).as_posix()
                _add_file(file, rel, root, out, explicit=False)
    return out


def check_unique_ids(documents: Sequence[Document | FileDocument]) -> None:
    """Raise :class:`DuplicateDocumentError` naming both places when an id repeats."""
    seen: dict[str, str] = {}
    for i, doc in enumerate(documents):
        where = doc.origin or f"documents[{i}]"
        if doc.id in seen:
            raise DuplicateDocumentError(doc.id, seen[doc.id], where)
        seen[doc.id] = where

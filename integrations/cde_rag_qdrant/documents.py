"""Documents to sync: in-memory :class:`Document` objects and files read on demand.

:meth:`ContextualCollection.sync` takes any :class:`DocumentSource`: something with an ``id``,
``metadata``, a ``text_format``, an ``origin`` (where it came from, for messages) and a
``load()`` that returns its text. :class:`Document` holds its text; :class:`FileDocument` reads
its file each time it is loaded (plain text, Markdown, reStructuredText, and with the extras
``html`` and ``pdf`` the main text of HTML pages and the text of PDFs), so only one file's text
is in memory at a time. Only regular files are opened: FIFOs, sockets and devices are refused
before ``open`` (which would block on a FIFO).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from cde_rag.errors import OptionalDependencyError
from cde_rag_qdrant.chunking import TextFormat

__all__ = [
    "Document",
    "DocumentReadError",
    "DocumentSource",
    "FileDocument",
    "FileKind",
    "LoadedText",
    "Skipped",
    "file_kind",
]

FileKind = Literal["text", "markdown", "html", "pdf", "jsonl"]
SUFFIX_KINDS: dict[str, FileKind] = {
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
EXTRAS: dict[FileKind, tuple[str, str]] = {"html": ("trafilatura", "html"), "pdf": ("pypdf", "pdf")}
_BINARY_PROBE = 8192


def file_kind(path: Path) -> FileKind | None:
    """The reader for a file name (by suffix), or None when unsupported."""
    return SUFFIX_KINDS.get(path.suffix.lower())


def require_extra(kind: FileKind, path: Path | str) -> None:
    """Raise :class:`OptionalDependencyError` when the library for ``kind`` is missing."""
    if kind not in EXTRAS:
        return
    module, extra = EXTRAS[kind]
    from importlib.util import find_spec

    if find_spec(module) is None:
        msg = f"reading {kind.upper()} files such as {str(path)!r} needs {module}."
        raise OptionalDependencyError(msg, extra=extra)


@dataclass(frozen=True)
class Skipped:
    """An input that was not ingested, and why.

    Attributes:
        path: The file (or the document's origin).
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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": self.path, "line": self.line, "reason": self.reason}


class DocumentReadError(Exception):
    """A document could not be read; :meth:`ContextualCollection.sync` skips it and reports."""

    def __init__(self, skipped: Skipped) -> None:
        """Wrap the skip record."""
        super().__init__(str(skipped))
        self.skipped = skipped


@dataclass(frozen=True)
class LoadedText:
    """A document's text, and for PDFs where each page starts in it.

    Attributes:
        text: The text.
        page_starts: Offset of each page's first character (PDF only; pages are joined with
            a blank line).
    """

    text: str
    page_starts: tuple[int, ...] = ()


class DocumentSource(Protocol):
    """What :meth:`ContextualCollection.sync` reads: an id, metadata and a way to get text."""

    @property
    def id(self) -> str:
        """Stable document id (unique in one sync)."""
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """JSON-able metadata copied to every chunk."""
        ...

    @property
    def text_format(self) -> TextFormat:
        """``"markdown"`` or ``"text"``: how to split it."""
        ...

    @property
    def origin(self) -> str | None:
        """Where it came from (``file:line``), for messages."""
        ...

    def load(self) -> LoadedText:
        """The text; raises :class:`DocumentReadError` when it cannot be read."""
        ...


@dataclass(frozen=True)
class Document:
    r"""One document for :meth:`ContextualCollection.sync`.

    Attributes:
        id: Stable id, unique in one sync (a file path relative to its folder, a database
            key). Chunk point ids derive from it.
        text: The whole text; it is chunked to fit the model window.
        metadata: JSON-able values stored on every chunk (under ``metadata``).
        text_format: ``"markdown"`` splits at headings first; ``"text"`` at paragraphs.
        origin: Where it came from (e.g. ``"notes.jsonl:12"``), used in error messages.

    Example:
        >>> doc = Document("faq/keys.md", "# Keys\n\nRotate them.", text_format="markdown")
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    text_format: TextFormat = "text"
    origin: str | None = None

    def load(self) -> LoadedText:
        """The text as given."""
        return LoadedText(self.text)


def _check_regular(path: Path) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DocumentReadError(
            Skipped(str(path), None, f"cannot read ({exc.strerror or exc})")
        ) from exc
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise DocumentReadError(Skipped(str(path), None, f"{kind}; only regular files are read"))


def _read_bytes(path: Path) -> bytes:
    _check_regular(path)  # before open(): opening a FIFO would block
    try:
        with path.open("rb") as f:
            return f.read()
    except OSError as exc:
        raise DocumentReadError(
            Skipped(str(path), None, f"cannot read ({exc.strerror or exc})")
        ) from exc


def decode_utf8(data: bytes, where: str, first_line: int = 1) -> str:
    """Decode UTF-8 (BOM allowed) or raise :class:`DocumentReadError` with the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = first_line + data[: exc.start].count(b"\n")
        bad = data[exc.start : exc.start + 1].hex()
        reason = f"not valid UTF-8 (byte 0x{bad}); re-save the file as UTF-8"
        raise DocumentReadError(Skipped(where, line, reason)) from exc


def _html_text(data: bytes, where: str) -> str:
    require_extra("html", where)
    import trafilatura

    text = trafilatura.extract(
        data, output_format="markdown", include_comments=False, include_tables=True
    )
    return text or ""


def _pdf_text(data: bytes, where: str) -> LoadedText:
    require_extra("pdf", where)
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        pages = [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentReadError(Skipped(where, None, f"unreadable PDF ({exc})")) from exc
    starts: list[int] = []
    offset = 0
    for page in pages:
        starts.append(offset)
        offset += len(page) + 2
    return LoadedText("\n\n".join(pages), tuple(starts))


@dataclass(frozen=True)
class FileDocument:
    """A file read when loaded (see the module docstring for formats).

    Attributes:
        id: Document id (the path relative to the ingest root).
        path: The file.
        kind: Its reader.
        metadata: Metadata for its chunks (``source`` and ``root`` for files).
        origin: The path as given, for messages.
    """

    id: str
    path: Path
    kind: FileKind
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None

    @property
    def text_format(self) -> TextFormat:
        """Markdown (and HTML, extracted as Markdown) split at headings; the rest as text."""
        return "markdown" if self.kind in ("markdown", "html") else "text"

    def load(self) -> LoadedText:
        """Read and decode the file.

        Raises:
            DocumentReadError: Not a regular file, unreadable, binary, not UTF-8, empty.
        """
        where = str(self.path)
        data = _read_bytes(self.path)
        if self.kind == "pdf":
            loaded = _pdf_text(data, where)
        else:
            if b"\x00" in data[:_BINARY_PROBE]:
                raise DocumentReadError(Skipped(where, None, "binary file (NUL bytes); not text"))
            if self.kind == "html":
                loaded = LoadedText(_html_text(data, where))
            else:
                loaded = LoadedText(decode_utf8(data, where))
        if not loaded.text.strip():
            reason = "no text found" if self.kind in ("html", "pdf") else "empty file"
            raise DocumentReadError(Skipped(where, None, reason))
        return loaded

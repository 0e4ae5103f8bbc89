"""Token-aware, structure-aware chunking with the encoder's own tokenizer.

Splitting is done by `semantic-text-splitter <https://github.com/benbrandt/text-splitter>`_:
its ``MarkdownSplitter`` splits at headings first, then at blocks (paragraphs, code blocks,
lists), sentences and words; its ``TextSplitter`` at paragraphs, sentences and words. It counts
chunk sizes with a ``tokenizers.Tokenizer`` (the model's own), reports each chunk's character
offset in the source text (so every chunk is a slice of the document and positions are exact),
and runs in Rust, so chunking costs little next to embedding. semchunk was the alternative; it
has no Markdown-structure mode and returns no offsets without extra work.

A chunk never exceeds the model window: the default size is :attr:`CDEEncoder.max_chunk_tokens`
(the window minus the document prefix, special tokens and one token of margin), and every chunk
is re-counted with the prefix and special tokens; one that still does not fit is split again
with a smaller capacity. Long texts are cut into segments of :data:`SEGMENT_CHARS` characters at
paragraph (else line) boundaries before splitting, so the splitter's memory stays bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Literal

from cde_rag.errors import InvalidInputError

if TYPE_CHECKING:
    from cde_rag import CDEEncoder

__all__ = ["SEGMENT_CHARS", "ChunkSpan", "Chunker", "TextFormat"]

TextFormat = Literal["text", "markdown"]
SEGMENT_CHARS = 100_000
"""Longest piece of text handed to the splitter at once (cut at a paragraph or line break)."""

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


@dataclass(frozen=True)
class ChunkSpan:
    """Where one chunk lies in its document.

    Attributes:
        start: Offset of its first character in the document text.
        end: Offset after its last character (``text[start:end]`` is the chunk).
        headings: Markdown heading path at the chunk's start (outermost first); empty for
            plain text.
    """

    start: int
    end: int
    headings: tuple[str, ...] = ()


def _segments(text: str, size: int) -> list[tuple[int, int]]:
    """Cut ``text`` into pieces of at most ``size`` characters at paragraph or line breaks."""
    out: list[tuple[int, int]] = []
    start = 0
    while len(text) - start > size:
        stop = start + size
        cut = text.rfind("\n\n", start + size // 2, stop)
        if cut < 0:
            cut = text.rfind("\n", start + size // 2, stop)
        if cut < 0:
            cut = text.rfind(" ", start + size // 2, stop)
        cut = stop if cut < 0 else cut + 1
        out.append((start, cut))
        start = cut
    out.append((start, len(text)))
    return out


def heading_marks(text: str) -> list[tuple[int, int, str]]:
    """ATX headings outside fenced code blocks: ``(offset, level, title)`` in text order."""
    fences = [m.start() for m in _FENCE.finditer(text)]
    marks: list[tuple[int, int, str]] = []
    f = 0
    inside = False
    for m in _HEADING.finditer(text):
        while f < len(fences) and fences[f] < m.start():
            inside = not inside
            f += 1
        if not inside:
            marks.append((m.start(), len(m.group(1)), m.group(2).strip()))
    return marks


def _only_headings(chunk: str) -> bool:
    lines = [line for line in chunk.splitlines() if line.strip()]
    return bool(lines) and all(_HEADING.fullmatch(line) for line in lines)


def _with_headings(spans: list[tuple[int, int]], text: str) -> list[ChunkSpan]:
    marks = heading_marks(text)
    out: list[ChunkSpan] = []
    stack: list[tuple[int, str]] = []
    i = 0
    for start, end in spans:
        while i < len(marks) and marks[i][0] <= start:
            _, level, title = marks[i]
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            i += 1
        out.append(ChunkSpan(start, end, tuple(t for _, t in stack)))
    return out


class Chunker:
    """Splits documents into chunks that fit the encoder's window.

    Args:
        encoder: The encoder whose tokenizer counts the tokens and whose window bounds them.
        chunk_size: Most text tokens per chunk (default: ``encoder.max_chunk_tokens``).
        chunk_overlap: Tokens shared by neighbouring chunks (default 0).

    Raises:
        InvalidInputError: A size that is not a positive int, a chunk size that with the
            document prefix and special tokens would exceed the window (it would be
            truncated), or an overlap that is negative or not smaller than the chunk size.

    Example:
        >>> chunker = Chunker(encoder)  # doctest: +SKIP
        >>> spans = chunker.spans(markdown_text, text_format="markdown")  # doctest: +SKIP
    """

    def __init__(
        self, encoder: CDEEncoder, *, chunk_size: int | None = None, chunk_overlap: int = 0
    ) -> None:
        """Check the sizes and build the splitters."""
        limit = encoder.max_chunk_tokens
        size = limit if chunk_size is None else chunk_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            msg = f"chunk_size={chunk_size!r}; expected a positive int (tokens per chunk)."
            raise InvalidInputError(msg)
        if size > limit:
            msg = (
                f"chunk_size={size} tokens does not fit the model window: {encoder.max_length} "
                f"tokens including the document prefix and special tokens leave {limit} for "
                f"the text; pass --chunk-size {limit} or less (or leave it unset)."
            )
            raise InvalidInputError(msg)
        overlap = chunk_overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < size:
            msg = f"chunk_overlap={chunk_overlap!r}; expected an int in 0..{size - 1}."
            raise InvalidInputError(msg)
        self.encoder = encoder
        self.chunk_size = size
        self.chunk_overlap = overlap
        self._tokenizer = encoder.tokenizer.splitter_copy()

    @property
    def signature(self) -> str:
        """What determines the chunks (part of each document's version)."""
        return (
            f"semantic-text-splitter {version('semantic-text-splitter')}; size "
            f"{self.chunk_size}; overlap {self.chunk_overlap}; window {self.encoder.max_length}"
        )

    def _split(self, text: str, text_format: TextFormat, capacity: int) -> list[tuple[int, int]]:
        from semantic_text_splitter import MarkdownSplitter, TextSplitter

        overlap = min(self.chunk_overlap, capacity - 1)
        splitter = (
            MarkdownSplitter.from_huggingface_tokenizer(self._tokenizer, capacity, overlap)
            if text_format == "markdown"
            else TextSplitter.from_huggingface_tokenizer(self._tokenizer, capacity, overlap)
        )
        spans: list[tuple[int, int]] = []
        for seg_start, seg_end in _segments(text, SEGMENT_CHARS):
            piece = text[seg_start:seg_end]
            for offset, chunk in splitter.chunk_indices(piece):
                if chunk.strip():
                    spans.append((seg_start + offset, seg_start + offset + len(chunk)))
        return spans

    def _fit(
        self, text: str, spans: list[tuple[int, int]], capacity: int, text_format: TextFormat
    ) -> list[tuple[int, int]]:
        """Re-split any chunk that with prefix and special tokens exceeds the window."""
        counts: list[int] = []
        for start in range(0, len(spans), 256):  # bounded memory for long documents
            part = spans[start : start + 256]
            counts.extend(self.encoder.count_tokens([text[a:b] for a, b in part]))
        out: list[tuple[int, int]] = []
        window = self.encoder.max_length
        for (a, b), n in zip(spans, counts, strict=True):
            if n <= window:
                out.append((a, b))
                continue
            smaller = max(1, capacity - (n - window) - 1)
            if smaller >= capacity:
                smaller = capacity - 1
            if smaller < 1:  # a single token longer than the window: cannot happen for BPE
                msg = f"cannot split text at {a}..{b} into chunks of the model window"
                raise InvalidInputError(msg)
            parts = [(a + x, a + y) for x, y in self._split(text[a:b], text_format, smaller)]
            out.extend(self._fit(text, parts, smaller, text_format))
        return out

    def _merge_headings(
        self, text: str, spans: list[tuple[int, int]], text_format: TextFormat
    ) -> list[tuple[int, int]]:
        """Keep a heading with the text under it.

        The Markdown splitter cuts the headings off a section too large for one chunk; alone
        they make poor search hits, and the section's first chunk loses its title. A chunk of
        only headings is joined to the next chunk when both fit; otherwise the next chunk is
        split again with room left for the headings, which then lead its first piece.
        """
        spans = list(spans)
        out: list[tuple[int, int]] = []
        window = self.encoder.max_length
        i = 0
        while i < len(spans):
            a, b = spans[i]
            if i + 1 < len(spans) and spans[i + 1][0] >= b and _only_headings(text[a:b]):
                na, nb = spans[i + 1]
                if self.encoder.count_tokens([text[a:nb]])[0] <= window:
                    spans[i + 1] = (a, nb)
                    i += 1
                    continue
                head = self.encoder.count_tokens([text[a:na]], kind=None)[0]
                room = self.chunk_size - head - 1
                if room >= max(16, self.chunk_size // 4):
                    pieces = [
                        (na + x, na + y) for x, y in self._split(text[na:nb], text_format, room)
                    ]
                    pieces = self._fit(text, pieces, room, text_format)
                    first = (a, pieces[0][1]) if pieces else (a, a)
                    if pieces and self.encoder.count_tokens([text[slice(*first)]])[0] <= window:
                        pieces[0] = first
                        spans[i + 1 : i + 2] = pieces
                        i += 1
                        continue
            out.append((a, b))
            i += 1
        return out

    def spans(self, text: str, *, text_format: TextFormat = "text") -> list[ChunkSpan]:
        """Chunk positions of ``text``, in order; blank text has none.

        Args:
            text: The whole document.
            text_format: ``"markdown"`` (headings, blocks, ...) or ``"text"``.

        Returns:
            One span per chunk. Chunks hold every non-whitespace character of the text
            (whitespace between chunks is trimmed); with an overlap, neighbours share text.
        """
        raw = self._fit(
            text, self._split(text, text_format, self.chunk_size), self.chunk_size, text_format
        )
        if text_format == "markdown":
            return _with_headings(self._merge_headings(text, raw, text_format), text)
        return [ChunkSpan(a, b) for a, b in raw]

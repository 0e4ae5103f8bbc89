"""Tokenizer resolution, prefixes (never doubled) and truncation counting.

Tokenizers are built straight from their files with the ``tokenizers`` library
(``tokenizer.json``, or a WordPiece ``vocab.txt``), never through ``AutoTokenizer`` with remote
code. Resolution order: an explicit ``tokenizer=`` argument, then the checkpoint folder, then the
backbone's hub repository (``answerdotai/ModernBERT-base``, ``nomic-ai/nomic-bert-2048``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer  # type: ignore[attr-defined]

from cde_rag.errors import CDERagError, TokenizerNotFoundError
from cde_rag.hub import TOKENIZER_FILES, download_files

logger = logging.getLogger(__name__)

TokenizerSource = str | os.PathLike[str] | Tokenizer


def _read_json(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _from_folder(folder: Path) -> Tokenizer | None:
    """Build a tokenizer from the files of a folder, or None when it has none."""
    if (folder / "tokenizer.json").is_file():
        try:
            return Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # the Rust error type is not exported
            msg = f"{folder / 'tokenizer.json'} is not a valid tokenizer file ({exc})."
            raise TokenizerNotFoundError(msg) from exc
    if (folder / "vocab.txt").is_file():
        settings = _read_json(folder / "tokenizer_config.json")
        wordpiece = BertWordPieceTokenizer(
            str(folder / "vocab.txt"),
            lowercase=bool(settings.get("do_lower_case", True)),
            strip_accents=settings.get("strip_accents"),  # type: ignore[arg-type]
            handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
        )
        # the implementation wrapper keeps the real Tokenizer in a private slot
        inner: Tokenizer = wordpiece._tokenizer
        return inner
    return None


class TextTokenizer:
    """Wraps a ``tokenizers.Tokenizer``: special tokens on, truncation counted, no padding."""

    def __init__(self, tokenizer: Tokenizer, *, source: str) -> None:
        """Wrap a tokenizer.

        Args:
            tokenizer: A ``tokenizers.Tokenizer`` whose post-processor adds CLS/SEP.
            source: Where it came from, for messages.

        Raises:
            TokenizerNotFoundError: The tokenizer has no padding token.
        """
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # truncation is tokenizer state: one caller at a time
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.source = source
        pad = next(
            (
                tokenizer.token_to_id(t)
                for t in ("[PAD]", "<pad>", "<|padding|>")
                if tokenizer.token_to_id(t) is not None
            ),
            None,
        )
        if pad is None:
            msg = f"tokenizer from {source} has no padding token ([PAD]); use the model's own."
            raise TokenizerNotFoundError(msg)
        self.pad_id: int = pad
        self.instruction_end_id: int | None = instruction_end_id(tokenizer)

    def encode(self, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
        """Tokenise with special tokens, truncating to ``max_length``.

        Returns:
            The token ids of each text and how many texts were truncated.
        """
        with self._lock:
            self._tokenizer.enable_truncation(max_length)
            try:
                encodings = self._tokenizer.encode_batch(list(texts))
            finally:
                self._tokenizer.no_truncation()
        truncated = sum(1 for e in encodings if e.overflowing)
        return [e.ids for e in encodings], truncated

    def __getstate__(self) -> dict[str, object]:
        """Copy/pickle support: the lock is not copied."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore a copy with a fresh lock."""
        self.__dict__.update(state)
        self._lock = threading.Lock()


def instruction_end_id(tokenizer: Tokenizer) -> int | None:
    """The first id of ``encode(": ")`` without special tokens (spec §9), or None if empty."""
    colon = tokenizer.encode(": ", add_special_tokens=False).ids
    return colon[0] if colon else None


def folder_instruction_end_id(folder: Path) -> int | None:
    """The instruction-end id of the tokenizer in a checkpoint folder; None without one.

    Raises:
        TokenizerNotFoundError: The folder's ``tokenizer.json`` is not a valid tokenizer.
    """
    found = _from_folder(folder)
    return None if found is None else instruction_end_id(found)


def add_prefix(texts: Sequence[str], prefix: str) -> list[str]:
    """Prepend ``prefix`` to each text that does not already start with it (never doubled)."""
    if not prefix:
        return list(texts)
    return [t if t.startswith(prefix) else prefix + t for t in texts]


def load_tokenizer(
    folder: Path,
    embedder: str,
    *,
    tokenizer: TokenizerSource | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TextTokenizer:
    """Resolve the tokenizer of a checkpoint.

    Args:
        folder: The checkpoint folder.
        embedder: The backbone hub id from ``config.json`` (fallback download source).
        tokenizer: Explicit tokenizer: a ``tokenizers.Tokenizer``, a folder, a
            ``tokenizer.json`` file, or a hub id.
        cache_dir: Hugging Face cache folder override.

    Returns:
        The wrapped tokenizer.

    Raises:
        TokenizerNotFoundError: No tokenizer could be found; the message says how to pass one.
    """
    if isinstance(tokenizer, Tokenizer):
        return TextTokenizer(tokenizer, source="tokenizer argument")
    if tokenizer is not None:
        path = Path(os.fspath(tokenizer)).expanduser()
        if path.is_file():
            return TextTokenizer(Tokenizer.from_file(str(path)), source=str(path))
        if not path.is_dir():
            path = _download_tokenizer(str(tokenizer), cache_dir)
        found = _from_folder(path)
        if found is None:
            msg = f"tokenizer={os.fspath(tokenizer)!r} holds no tokenizer.json or vocab.txt."
            raise TokenizerNotFoundError(msg)
        return TextTokenizer(found, source=str(path))
    found = _from_folder(folder)
    if found is not None:
        return TextTokenizer(found, source=str(folder))
    try:
        hub_folder = _download_tokenizer(embedder, cache_dir)
    except TokenizerNotFoundError as exc:
        msg = (
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}) and the tokenizer "
            f"of its backbone {embedder!r} could not be fetched: {exc} Fix: copy the tokenizer "
            "files into the checkpoint folder, or pass tokenizer='/path/to/tokenizer-folder'."
        )
        raise TokenizerNotFoundError(msg) from exc
    found = _from_folder(hub_folder)
    if found is None:
        msg = f"hub repo {embedder!r} has no tokenizer.json or vocab.txt; pass tokenizer=..."
        raise TokenizerNotFoundError(msg)
    return TextTokenizer(found, source=embedder)


def _download_tokenizer(repo_id: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    try:
        return download_files(repo_id, TOKENIZER_FILES, cache_dir=cache_dir, what="tokenizer")
    except CDERagError as exc:
        raise TokenizerNotFoundError(str(exc)) from exc

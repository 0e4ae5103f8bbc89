"""The one text validator of cde-rag: every entry point checks texts here, one message style.

Messages name the argument and index (``texts[3]``), show what was found, and say how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cde_rag.errors import InvalidInputError

__all__ = ["validate_text", "validate_texts"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def validate_text(text: object, what: str = "text") -> str:
    """Check one text: a non-blank ``str`` that is valid Unicode.

    Args:
        text: The value to check.
        what: Its name in messages (``"query"``, ``"texts[3]"``).

    Returns:
        The text.

    Raises:
        InvalidInputError: Not a str, empty or whitespace-only, or holding a lone surrogate
            (what undecodable bytes become with ``errors="surrogateescape"``), which can be
            neither tokenized nor stored as UTF-8.
    """
    if not isinstance(text, str):
        msg = f"{what} is {text!r:.60} ({type(text).__name__}); expected a non-empty str."
        raise InvalidInputError(msg)
    if not text.strip():
        msg = (
            f"{what} is {text!r:.60}: empty or whitespace-only texts have no meaningful "
            "embedding; remove it or replace it with real text."
        )
        raise InvalidInputError(msg)
    bad = _SURROGATE.search(text)
    if bad is not None:
        msg = (
            f"{what} holds a lone surrogate {bad.group()!r} at character {bad.start()}, which is "
            "not valid Unicode (undecodable bytes read with errors='surrogateescape'); decode "
            "the source with its real encoding or errors='replace', or remove the character."
        )
        raise InvalidInputError(msg)
    return text


def validate_texts(texts: object, what: str = "texts", *, non_empty: bool = False) -> list[str]:
    """Materialise ``texts`` once and check every item with :func:`validate_text`.

    Args:
        texts: A list, tuple or other iterable of strings (not a single string or a mapping).
        what: The argument's name in messages (``"texts"``, ``"corpus"``).
        non_empty: Refuse an empty collection.

    Returns:
        The texts as a new list.

    Raises:
        InvalidInputError: A single string, a mapping or non-iterable, an empty collection
            when ``non_empty``, or a bad item (see :func:`validate_text`).
    """
    if isinstance(texts, str | bytes):
        kind = type(texts).__name__
        msg = f"{what} must be a list of strings, not a single {kind}; wrap it: [text]."
        raise InvalidInputError(msg)
    if isinstance(texts, Mapping) or not isinstance(texts, Iterable):
        msg = f"{what} must be a list of strings; got {type(texts).__name__}."
        raise InvalidInputError(msg)
    items = list(texts)
    if non_empty and not items:
        msg = f"{what} is empty; pass at least one text."
        raise InvalidInputError(msg)
    for i, item in enumerate(items):
        validate_text(item, f"{what}[{i}]")
    return items

"""Collection names: checked before anything is created."""

from __future__ import annotations

import argparse

from cde_rag.errors import InvalidInputError

MAX_NAME_LENGTH = 200
"""Qdrant allows 255 characters; the ``__cde_g{n}`` suffix of physical collections needs room."""
_FORBIDDEN = frozenset('<>:"/\\|?*')


def check_collection_name(name: object) -> str:
    r"""Return ``name`` if Qdrant (server and embedded store) can hold a collection of that name.

    Raises:
        InvalidInputError: Not a str, empty or blank, too long, or with a character Qdrant
            refuses (``< > : " / \ | ? *``, control characters) or cde-rag reserves
            (``__cde_g``, the separator of its physical collection names).
    """
    if not isinstance(name, str) or not name.strip():
        msg = f"collection name {name!r} is empty; pass a name such as 'notes'."
        raise InvalidInputError(msg)
    bad = sorted({c for c in name if c in _FORBIDDEN or not c.isprintable()})
    if bad:
        msg = (
            f"collection name {name!r} contains {', '.join(repr(c) for c in bad)}, which Qdrant "
            "does not allow in names; use letters, digits, '-', '_' or '.', e.g. "
            f"{''.join(c if c.isalnum() else '_' for c in name)!r}."
        )
        raise InvalidInputError(msg)
    if len(name) > MAX_NAME_LENGTH:
        msg = f"collection name is {len(name)} characters long; use at most {MAX_NAME_LENGTH}."
        raise InvalidInputError(msg)
    if "__cde_g" in name:
        msg = (
            f"collection name {name!r} contains '__cde_g', which cde-rag reserves for the "
            "physical collections behind a name; pass the name without it."
        )
        raise InvalidInputError(msg)
    return name


def collection_name_arg(value: str) -> str:
    """``argparse`` type of ``--collection``: a usage error before anything is created."""
    try:
        return check_collection_name(value)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc

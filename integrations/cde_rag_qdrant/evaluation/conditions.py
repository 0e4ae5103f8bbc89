"""The conditions ``cde-rag eval`` compares, and their spelling on the command line.

A condition says how documents and queries become vectors (its *representation*: a CDE model
under some context and dtype, or a sentence-transformers baseline). All are ranked the same way
(exact cosine over the whole corpus). Spelling: ``SOURCE[@MODIFIER...]``:

- ``uniform`` / ``diverse``: a context sampled from the evaluated corpus itself;
- ``fallback``: the model's generic context (``CDEEncoder.fallback_context``);
- ``context:PATH``: a saved ``CorpusContext`` (e.g. built from another corpus);
- ``baseline:MODEL``: a sentence-transformers model (hub id or folder), no context;
- modifier ``@bf16``: the same condition with the model in bfloat16 (context built in bf16 too).

Extension point: dense vs hybrid search and quantized vs unquantized collections are further
*retrieval* modifiers (``@hybrid``, ``@int8``, ...) that index the cached vectors of a condition
into a Qdrant collection of that configuration instead of ranking by exact cosine; adding one
means a new entry in :data:`MODIFIERS` and a retrieval function, the representation cache is
reused as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cde_rag.errors import InvalidInputError

ContextSource = Literal["uniform", "diverse", "fallback", "file"]
EvalDType = Literal["float32", "bfloat16"]
MODIFIERS = {"bf16": "the model runs in bfloat16 (the context is built in bfloat16 too)"}
DEFAULT_CONDITIONS = ("uniform", "diverse", "fallback", "uniform@bf16")
"""Compared when none are named; the first is the reference of the significance tests."""


@dataclass(frozen=True)
class ContextCondition:
    """A CDE condition: documents and queries embedded under one context.

    Attributes:
        source: ``"uniform"`` / ``"diverse"`` (sampled from the evaluated corpus),
            ``"fallback"`` (the model's generic context) or ``"file"`` (a saved context).
        path: The saved context for ``source="file"``.
        dtype: ``"float32"`` or ``"bfloat16"``.
        seed: Sampling seed (uniform, diverse, fallback).
        size: Context rows (default: the model's).
        native_only: Run bf16 only where the device has native bf16 units (the default list
            uses this so a CPU without them is not slowed down by emulation).
    """

    source: ContextSource
    path: Path | None = None
    dtype: EvalDType = "float32"
    seed: int = 0
    size: int | None = None
    native_only: bool = False

    @property
    def name(self) -> str:
        """Label in tables, run files and the JSON report."""
        base = f"context:{self.path.stem}" if self.path is not None else self.source
        return base + ("@bf16" if self.dtype == "bfloat16" else "")

    @property
    def description(self) -> str:
        """One line on what the condition is."""
        what = {
            "uniform": f"context sampled uniformly from this corpus (seed {self.seed})",
            "diverse": f"context sampled for diversity from this corpus (seed {self.seed})",
            "fallback": "the model's generic fallback context",
            "file": f"saved context {self.path}",
        }[self.source]
        return what + (", bfloat16" if self.dtype == "bfloat16" else "")


@dataclass(frozen=True)
class BaselineCondition:
    """A non-CDE baseline: a sentence-transformers model (extra ``baseline``).

    Attributes:
        model: Hub id or local folder.
    """

    model: str

    @property
    def name(self) -> str:
        """Label in tables, run files and the JSON report."""
        text = self.model.rstrip("/")
        if len(text) > 40:  # a long folder path: its last two parts
            text = "/".join(Path(text).parts[-2:])
        return f"baseline:{text}"

    @property
    def description(self) -> str:
        """One line on what the condition is."""
        return f"sentence-transformers model {self.model} (no context)"


Condition = ContextCondition | BaselineCondition


def parse_condition(spec: str, *, seed: int = 0, size: int | None = None) -> Condition:
    """Parse ``uniform``, ``diverse@bf16``, ``context:PATH``, ``baseline:MODEL``, ...

    Args:
        spec: The spelling (see the module docstring).
        seed: Sampling seed given to context conditions.
        size: Context rows given to context conditions.

    Raises:
        InvalidInputError: Unknown source or modifier, or a missing path/model.
    """
    text = spec.strip()
    if text.startswith("baseline:"):
        model = text.removeprefix("baseline:").strip()
        if not model:
            msg = (
                f"condition {spec!r}: name a model, e.g. "
                "baseline:sentence-transformers/all-MiniLM-L6-v2"
            )
            raise InvalidInputError(msg)
        return BaselineCondition(model)
    head, *mods = text.split("@")
    unknown = [m for m in mods if m not in MODIFIERS]
    if unknown:
        known = ", ".join(f"@{m} ({why})" for m, why in MODIFIERS.items())
        msg = f"condition {spec!r}: unknown modifier {'@' + unknown[0]!r}; known: {known}"
        raise InvalidInputError(msg)
    dtype: EvalDType = "bfloat16" if "bf16" in mods else "float32"
    if head.startswith("context:"):
        path = Path(head.removeprefix("context:"))
        if not path.is_file():
            msg = f"condition {spec!r}: no context file at {path}; save one with context.save(path)"
            raise InvalidInputError(msg)
        return ContextCondition("file", path=path, dtype=dtype)
    if head in ("uniform", "diverse", "fallback"):
        return ContextCondition(head, dtype=dtype, seed=seed, size=size)  # type: ignore[arg-type]
    msg = (
        f"condition {spec!r}: unknown; expected uniform, diverse, fallback, context:PATH or "
        "baseline:MODEL, optionally followed by @bf16"
    )
    raise InvalidInputError(msg)


def parse_conditions(
    specs: Iterable[str | Condition], *, seed: int = 0, size: int | None = None
) -> list[Condition]:
    """Parse a list of spellings (or pass conditions through); names must be unique.

    Raises:
        InvalidInputError: A bad spelling, or two conditions with the same name.
    """
    out = [
        s
        if isinstance(s, ContextCondition | BaselineCondition)
        else parse_condition(s, seed=seed, size=size)
        for s in specs
    ]
    names = [c.name for c in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        msg = f"conditions {duplicates} are named twice; list each condition once"
        raise InvalidInputError(msg)
    if not out:
        msg = "no condition to evaluate; name at least one (e.g. uniform)"
        raise InvalidInputError(msg)
    return out


def default_conditions(seed: int = 0, size: int | None = None) -> list[Condition]:
    """:data:`DEFAULT_CONDITIONS`, the bf16 one only where the device has native bf16."""
    out = parse_conditions(DEFAULT_CONDITIONS, seed=seed, size=size)
    return [
        ContextCondition(c.source, c.path, c.dtype, c.seed, c.size, native_only=True)
        if isinstance(c, ContextCondition) and c.dtype == "bfloat16"
        else c
        for c in out
    ]


def file_name(name: str) -> str:
    """A condition name made safe as a file name and a TREC run tag."""
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)


def split_specs(values: Sequence[str]) -> list[str]:
    """Comma-separated CLI values flattened into one list of spellings."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]

"""The conditions ``cde-rag eval`` compares, and their spelling on the command line.

A condition says how documents and queries become vectors (its *representation*: a CDE model
under some context and dtype, or a sentence-transformers baseline). All are ranked the same way
(exact cosine over the whole corpus). Spelling: ``SOURCE[@MODIFIER...]``:

- ``uniform`` / ``diverse``: a context sampled from the evaluated corpus itself;
- ``fallback``: the model's generic context (``CDEEncoder.fallback_context``);
- ``context:PATH``: a saved ``CorpusContext`` (e.g. built from another corpus);
- ``baseline:MODEL``: a sentence-transformers model (hub id or folder), no context;
- modifier ``@bf16``: the same condition with the model in bfloat16 (context built in bf16 too);
- retrieval modifiers ``@hybrid`` / ``@sparse`` and ``@int8`` / ``@binary`` (context conditions
  only): the condition's cached vectors are indexed, with the corpus texts and the context, into
  an in-memory Qdrant collection of that configuration (hybrid: dense + lexical sparse vector
  fused by Qdrant's RRF; quantized: scalar/binary quantization, searched with rescoring) and
  ranked by it instead of by exact cosine. The representation cache is reused as is.
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
SearchMode = Literal["dense", "sparse", "hybrid"]
Quantization = Literal["int8", "binary"]
MODIFIERS = {
    "bf16": "the model runs in bfloat16 (the context is built in bfloat16 too)",
    "hybrid": "ranked in a hybrid Qdrant collection (dense + lexical sparse, RRF fusion)",
    "sparse": "ranked by the lexical sparse vector of a hybrid Qdrant collection only",
    "int8": "ranked in an int8 scalar-quantized Qdrant collection, with rescoring",
    "binary": "ranked in a binary-quantized Qdrant collection, with rescoring",
}
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
        mode: ``"dense"``, or ``"hybrid"`` / ``"sparse"``: ranked by a Qdrant collection.
        quantization: None, or ``"int8"`` / ``"binary"``: ranked by a quantized collection.
    """

    source: ContextSource
    path: Path | None = None
    dtype: EvalDType = "float32"
    seed: int = 0
    size: int | None = None
    native_only: bool = False
    mode: SearchMode = "dense"
    quantization: Quantization | None = None

    @property
    def indexed(self) -> bool:
        """Whether ranking goes through a Qdrant collection rather than exact cosine."""
        return self.mode != "dense" or self.quantization is not None

    @property
    def name(self) -> str:
        """Label in tables, run files and the JSON report."""
        base = f"context:{self.path.stem}" if self.path is not None else self.source
        mods = [
            m
            for m, on in (
                ("bf16", self.dtype == "bfloat16"),
                (self.mode, self.mode != "dense"),
                (self.quantization, self.quantization is not None),
            )
            if on
        ]
        return base + "".join(f"@{m}" for m in mods)

    @property
    def description(self) -> str:
        """One line on what the condition is."""
        what = {
            "uniform": f"context sampled uniformly from this corpus (seed {self.seed})",
            "diverse": f"context sampled for diversity from this corpus (seed {self.seed})",
            "fallback": "the model's generic fallback context",
            "file": f"saved context {self.path}",
        }[self.source]
        what += ", bfloat16" if self.dtype == "bfloat16" else ""
        if self.mode != "dense":
            what += f", {self.mode} search in Qdrant"
        if self.quantization is not None:
            what += f", {self.quantization}-quantized Qdrant collection (rescored)"
        return what


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
        tail = model.rsplit("@", 1)[-1] if "@" in model else ""
        if tail in MODIFIERS:
            msg = (
                f"condition {spec!r}: @{tail} applies to context conditions only (uniform, "
                "diverse, fallback, context:PATH); a baseline is ranked by exact cosine"
            )
            raise InvalidInputError(msg)
        return BaselineCondition(model)
    head, *mods = text.split("@")
    unknown = [m for m in mods if m not in MODIFIERS]
    if unknown:
        known = ", ".join(f"@{m} ({why})" for m, why in MODIFIERS.items())
        msg = f"condition {spec!r}: unknown modifier {'@' + unknown[0]!r}; known: {known}"
        raise InvalidInputError(msg)
    modes = [m for m in mods if m in ("hybrid", "sparse")]
    quants = [m for m in mods if m in ("int8", "binary")]
    if len(modes) > 1 or len(quants) > 1 or len(set(mods)) != len(mods):
        msg = (
            f"condition {spec!r}: conflicting or repeated modifiers; use at most one of "
            "@hybrid/@sparse and one of @int8/@binary, each once (e.g. uniform@hybrid@int8)"
        )
        raise InvalidInputError(msg)
    mode: SearchMode = "hybrid" if "hybrid" in modes else "sparse" if modes else "dense"
    quant: Quantization | None = "int8" if "int8" in quants else "binary" if quants else None
    dtype: EvalDType = "bfloat16" if "bf16" in mods else "float32"
    if head.startswith("context:"):
        path = Path(head.removeprefix("context:"))
        if not path.is_file():
            msg = f"condition {spec!r}: no context file at {path}; save one with context.save(path)"
            raise InvalidInputError(msg)
        return ContextCondition("file", path=path, dtype=dtype, mode=mode, quantization=quant)
    if head in ("uniform", "diverse", "fallback"):
        return ContextCondition(
            head,  # type: ignore[arg-type]
            dtype=dtype,
            seed=seed,
            size=size,
            mode=mode,
            quantization=quant,
        )
    msg = (
        f"condition {spec!r}: unknown; expected uniform, diverse, fallback, context:PATH or "
        "baseline:MODEL, optionally followed by modifiers (@bf16, @hybrid, @sparse, @int8, "
        "@binary)"
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

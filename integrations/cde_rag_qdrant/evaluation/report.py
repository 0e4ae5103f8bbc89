"""The evaluation report: per-condition means, per-query values, significance, table, JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cde_rag_qdrant.evaluation.metrics import METRICS
from cde_rag_qdrant.evaluation.significance import TEST_NAME

ALPHA = 0.05
"""Significance level of the ``*`` marks in the table."""


@dataclass
class ConditionResult:
    """One condition's outcome.

    Attributes:
        name: Its label (``uniform``, ``fallback``, ``uniform@bf16``, ``baseline:...``).
        description: What it is.
        available: False when it could not run here (``reason`` says why).
        reason: Why it was unavailable.
        metrics: Mean of each metric over the evaluated queries.
        per_query: ``{metric: {query id: value}}``.
        p_values: ``{metric: p}`` against the first available condition (None for itself).
        run_file: The TREC run file written, if any.
        cached: Which parts came from the cache (``context``, ``documents``, ``queries``).
        seconds: Wall time spent on the condition (embedding and ranking).
        notes: Remarks (emulated bf16, context provenance, ...).
    """

    name: str
    description: str
    available: bool = True
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    p_values: dict[str, float] | None = None
    run_file: Path | None = None
    cached: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "name": self.name,
            "description": self.description,
            "available": self.available,
            "reason": self.reason,
            "metrics": self.metrics,
            "p_values": self.p_values,
            "run_file": None if self.run_file is None else str(self.run_file),
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
            "per_query": self.per_query,
        }


@dataclass
class EvaluationReport:
    """Everything ``cde-rag eval`` measured.

    Attributes:
        dataset: Data set name.
        split: Qrels split.
        n_documents: Corpus size (0 for a collection run: the collection holds it).
        n_queries: Evaluated queries.
        model: The CDE model id (None for baseline-only runs).
        conditions: One result per condition, in the order given.
        test: The significance test used.
        reference: Name of the condition the others are tested against.
        chart: The PNG chart written, if any.
        notes: Remarks on the data and the run (left-out queries, missing plot extra, ...).
    """

    dataset: str
    split: str
    n_documents: int
    n_queries: int
    model: str | None
    conditions: list[ConditionResult]
    test: str = TEST_NAME
    reference: str | None = None
    chart: Path | None = None
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> ConditionResult:
        """The result of the condition called ``name``."""
        for result in self.conditions:
            if result.name == name:
                return result
        msg = f"no condition {name!r}; have {[c.name for c in self.conditions]}"
        raise KeyError(msg)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``cde-rag eval --json`` prints)."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "n_documents": self.n_documents,
            "n_queries": self.n_queries,
            "model": self.model,
            "metrics": list(METRICS),
            "test": self.test,
            "reference": self.reference,
            "alpha": ALPHA,
            "chart": None if self.chart is None else str(self.chart),
            "notes": self.notes,
            "conditions": [c.as_dict() for c in self.conditions],
        }

    def table(self) -> str:
        """A plain-text table: means, differences to the reference, ``*`` when p < 0.05."""
        header = ["condition", *METRICS, "time", "cache"]
        rows = [header]
        ref = next((c for c in self.conditions if c.name == self.reference), None)
        for c in self.conditions:
            if not c.available:
                rows.append([c.name, f"unavailable: {c.reason}"])
                continue
            cells = [c.name]
            for m in METRICS:
                cell = f"{c.metrics[m]:.4f}"
                if ref is not None and c is not ref and c.p_values is not None:
                    delta = c.metrics[m] - ref.metrics[m]
                    mark = "*" if c.p_values[m] < ALPHA else ""
                    cell += f" ({delta:+.4f}{mark})"
                cells.append(cell)
            cells += [f"{c.seconds:.1f}s", "+".join(c.cached) or "-"]
            rows.append(cells)
        widths = [max(len(r[i]) for r in rows if len(r) > i and len(r) == len(header))
                  for i in range(len(header))]  # fmt: skip
        lines = []
        for row in rows:
            if len(row) != len(header):
                lines.append(f"{row[0]:<{widths[0]}}  {row[1]}")
                continue
            cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
            lines.append("  ".join(cells).rstrip())
        lines.insert(1, "  ".join("-" * w for w in widths))
        footer = (
            f"{self.dataset} ({self.split}): {self.n_queries} queries"
            + (f", {self.n_documents} documents" if self.n_documents else "")
            + (f"; (delta vs {self.reference}, * p < {ALPHA}: {self.test})" if ref else "")
        )
        return "\n".join([*lines, footer])

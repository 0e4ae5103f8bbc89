"""Comparison and report for :mod:`cde_rag.verify`: top-k tables, ties, verdicts, text."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cde_rag._verify_embed import Switches
from cde_rag.context import CorpusContext
from cde_rag.errors import InvalidInputError

if TYPE_CHECKING:
    from cde_rag.verify import CardTable

VALUE_TOLERANCE = 2e-3
"""Largest accepted difference between a similarity and the card's (which is rounded to 1e-4
and was computed on CUDA)."""


def top_k(
    queries: npt.NDArray[np.float32], documents: npt.NDArray[np.float32], k: int
) -> tuple[list[list[float]], list[list[int]]]:
    """Cosine similarities and indices of the ``k`` best documents per query, best first."""
    q = queries.astype(np.float64)
    d = documents.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    sims = q @ d.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(sims, order, axis=1)
    return values.tolist(), order.tolist()


def _switch_text(switches: Switches) -> str:
    return f"output_residual={switches[0]}, pool_ignore_instruction_tokens={switches[1]}"


@dataclass(frozen=True)
class TableCheck:
    """Our top-k table under one switch combination, compared with the card.

    Attributes:
        switches: ``(output_residual, pool_ignore_instruction_tokens)``.
        values: Our similarities.
        indices: Our document indices.
        max_abs_diff: Largest ``|ours - card|`` over the table.
        problems: One line per mismatch; empty when the table reproduces the card.
    """

    switches: Switches
    values: tuple[tuple[float, ...], ...]
    indices: tuple[tuple[int, ...], ...]
    max_abs_diff: float
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when every value and index matches."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "output_residual": self.switches[0],
            "pool_ignore_instruction_tokens": self.switches[1],
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "values": [list(r) for r in self.values],
            "indices": [list(r) for r in self.indices],
            "problems": list(self.problems),
        }


def tie_groups(row: Sequence[float], decimals: int = 4) -> list[list[int]]:
    """Runs of positions whose published values are equal at ``decimals`` decimals."""
    groups: list[list[int]] = []
    for pos, value in enumerate(row):
        if groups and f"{row[groups[-1][0]]:.{decimals}f}" == f"{value:.{decimals}f}":
            groups[-1].append(pos)
        else:
            groups.append([pos])
    return groups


def compare_table(
    values: Sequence[Sequence[float]],
    indices: Sequence[Sequence[int]],
    card: CardTable,
    *,
    switches: Switches,
    tolerance: float = VALUE_TOLERANCE,
) -> TableCheck:
    """Compare a top-k table with the card's.

    Values match position by position within ``tolerance``; indices match position by
    position, except that positions whose card values are equal to 4 decimals (ties, such as
    the three 0.7742 of query 5) are compared as sets.

    Raises:
        InvalidInputError: The table's shape differs from the card's.
    """
    shape = (len(values), len(values[0]) if values else 0)
    if shape != (card.n_queries, card.top_k) or [len(r) for r in indices] != [shape[1]] * len(
        values
    ):
        msg = f"table has shape {shape}; the card's is ({card.n_queries}, {card.top_k})."
        raise InvalidInputError(msg)
    problems: list[str] = []
    worst = 0.0
    for q, (ours_v, card_v) in enumerate(zip(values, card.values, strict=True)):
        for rank, (a, b) in enumerate(zip(ours_v, card_v, strict=True)):
            worst = max(worst, abs(a - b))
            if abs(a - b) > tolerance:
                problems.append(
                    f"query {q}, rank {rank}: similarity {a:.4f}, card {b:.4f} "
                    f"(|diff| {abs(a - b):.1e} > {tolerance:.0e})"
                )
        for group in tie_groups(card_v):
            ours = [indices[q][p] for p in group]
            theirs = [card.indices[q][p] for p in group]
            if len(group) == 1 and ours != theirs:
                problems.append(f"query {q}, rank {group[0]}: document {ours[0]}, card {theirs[0]}")
            elif len(group) > 1 and set(ours) != set(theirs):
                problems.append(
                    f"query {q}, ranks {group[0]}-{group[-1]} (tied at {card_v[group[0]]:.4f}): "
                    f"documents {sorted(ours)}, card {sorted(theirs)}"
                )
    return TableCheck(
        switches=switches,
        values=tuple(tuple(float(v) for v in r) for r in values),
        indices=tuple(tuple(int(i) for i in r) for r in indices),
        max_abs_diff=worst,
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`run_card_check`.

    Attributes:
        card: The table checked against.
        model_id: The encoder's model id.
        weights_hash: SHA-256 of its weights.
        revision: Its hub revision, if any.
        device: Where it ran.
        dtype: Its compute dtype.
        data_source: Where the texts came from.
        default: The switches the encoder was loaded with.
        checks: One check per combination run, the encoder's own first.
        tolerance: The value tolerance used.
        seconds: Wall time of the embedding.
        context: The context built from the card's context documents (reusable).
        truncated: How many texts were cut at the encoder's ``max_length``.
    """

    card: CardTable
    model_id: str
    weights_hash: str
    revision: str | None
    device: str
    dtype: str
    data_source: str
    default: Switches
    checks: tuple[TableCheck, ...]
    tolerance: float
    seconds: float
    context: CorpusContext = dataclasses.field(repr=False, compare=False)
    truncated: int = 0

    @property
    def passed(self) -> bool:
        """True when the encoder, as loaded, reproduces the card."""
        return self.checks[0].passed

    @property
    def matching(self) -> list[Switches]:
        """Every combination run that reproduces the card."""
        return [c.switches for c in self.checks if c.passed]

    def suggestion(self) -> str | None:
        """What to do next, or None when the check passed."""
        if self.passed:
            return None
        if self.dtype != "float32":
            return f"the card was computed in float32: run again in float32, not {self.dtype}."
        if len(self.checks) == 1:
            residual, pooling = (not s for s in self.default)
            return (
                "try the switches output_residual and pool_ignore_instruction_tokens "
                f"(CDEEncoder.from_pretrained(..., output_residual={residual}) or "
                f"pool_ignore_instruction_tokens={pooling}); `cde-rag verify --all-switches` "
                "compares all four combinations in one pass over the texts."
            )
        if self.matching:
            found = "; ".join(_switch_text(s) for s in self.matching)
            return (
                f"the card is reproduced with {found}: pass these to CDEEncoder.from_pretrained "
                "and report it, since the defaults should then change."
            )
        return (
            "no combination of output_residual and pool_ignore_instruction_tokens reproduces "
            "the card: the difference lies elsewhere (model revision, tokenizer, or a bug); "
            "please report it with this output."
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the context tensor)."""
        card = self.card
        return {
            "passed": self.passed,
            "model": self.model_id,
            "weights_hash": self.weights_hash,
            "revision": self.revision,
            "device": self.device,
            "dtype": self.dtype,
            "data": self.data_source,
            "card": {
                "model": card.model_id,
                "dataset": card.dataset,
                "split": card.split,
                "n_queries": card.n_queries,
                "n_documents": card.n_documents,
                "n_context": card.n_context,
                "values": [list(r) for r in card.values],
                "indices": [list(r) for r in card.indices],
                "source": card.source,
            },
            "tolerance": self.tolerance,
            "default": {
                "output_residual": self.default[0],
                "pool_ignore_instruction_tokens": self.default[1],
            },
            "checks": [c.as_dict() for c in self.checks],
            "matching": [
                {"output_residual": s[0], "pool_ignore_instruction_tokens": s[1]}
                for s in self.matching
            ],
            "suggestion": self.suggestion(),
            "context_fingerprint": self.context.fingerprint,
            "truncated": self.truncated,
            "seconds": round(self.seconds, 1),
        }


def _row(values: Sequence[float], indices: Sequence[int]) -> tuple[str, str]:
    return " ".join(f"{v:.4f}" for v in values), " ".join(str(i) for i in indices)


def format_report(report: VerifyReport, *, max_problems: int = 10) -> str:
    """The tables side by side with the card's, a verdict and what to try next.

    Args:
        report: The report to show.
        max_problems: Mismatch lines listed per combination (all are in ``as_dict()``).
    """
    card = report.card
    k = card.top_k
    tables = [card.indices] + [c.indices for c in report.checks]
    vw = 7 * k - 1
    iw = max(len(" ".join(map(str, row))) for table in tables for row in table) + 2
    lines = [
        f"model    {report.model_id} (weights {report.weights_hash[:12]}, revision "
        f"{report.revision}) on {report.device}, {report.dtype}",
        f"data     {report.data_source or 'given texts'}: context = last {card.n_context} of "
        f"{card.document_column!r}, documents = first {card.n_documents}, queries = first "
        f"{card.n_queries} of {card.query_column!r}"
        + (f" ({report.truncated} texts cut at max_length)" if report.truncated else ""),
        f"check    top-{k} cosine per query against {card.model_id}'s card: |diff| <= "
        f"{report.tolerance:g}, same documents (tied ranks as sets)",
    ]
    for check in report.checks:
        own = " (as loaded)" if check.switches == report.default else ""
        verdict = "PASS" if check.passed else "FAIL"
        lines += [
            "",
            f"{_switch_text(check.switches)}{own}: {verdict}, max |diff| {check.max_abs_diff:.4f}",
            f"query  {'card':<{vw}}  {'ours':<{vw}}  {'card docs':<{iw}}{'our docs':<{iw}}",
        ]
        for q in range(card.n_queries):
            cv, ci = _row(card.values[q], card.indices[q])
            ov, oi = _row(check.values[q], check.indices[q])
            bad = any(p.startswith(f"query {q},") for p in check.problems)
            mark = "MISMATCH" if bad else "ok"
            lines.append(f"{q:>5}  {cv:<{vw}}  {ov:<{vw}}  {ci:<{iw}}{oi:<{iw}}{mark}")
        lines += [f"  - {p}" for p in check.problems[:max_problems]]
        if len(check.problems) > max_problems:
            lines.append(f"  ... and {len(check.problems) - max_problems} more (see --json)")
    lines.append("")
    if report.passed:
        lines.append(f"PASS: {report.model_id} as loaded reproduces {card.model_id}'s card.")
    else:
        lines.append(f"FAIL: {report.model_id} as loaded does not reproduce the card.")
        lines.append(f"next: {report.suggestion()}")
    return "\n".join(lines)

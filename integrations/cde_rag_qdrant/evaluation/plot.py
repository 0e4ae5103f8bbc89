"""The PNG chart of a report (extra ``plot``: matplotlib)."""

from __future__ import annotations

import logging
from pathlib import Path

from cde_rag.errors import OptionalDependencyError
from cde_rag_qdrant.evaluation.metrics import METRICS
from cde_rag_qdrant.evaluation.report import EvaluationReport

logger = logging.getLogger(__name__)


def plot_report(report: EvaluationReport, path: str | Path) -> Path:
    """Draw one group of bars per metric, one bar per available condition, into ``path``.

    Raises:
        OptionalDependencyError: matplotlib is not installed (extra ``plot``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        msg = "the chart needs matplotlib; install the extra: pip install 'cde-rag[plot]'"
        raise OptionalDependencyError(msg, extra="plot") from exc
    shown = [c for c in report.conditions if c.available]
    width = 0.8 / max(len(shown), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(METRICS) + 0.4 * len(shown)), 4.0))
    try:
        for i, result in enumerate(shown):
            xs = [m + (i - (len(shown) - 1) / 2) * width for m in range(len(METRICS))]
            bars = ax.bar(xs, [result.metrics[m] for m in METRICS], width, label=result.name)
            ax.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
        ax.set_xticks(range(len(METRICS)), list(METRICS))
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("mean over queries")
        ax.set_title(f"{report.dataset} ({report.split}, {report.n_queries} queries)")
        ax.legend(
            fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=min(len(shown), 4)
        )
        fig.tight_layout()
        target = Path(path)
        tmp = target.with_name(target.stem + ".tmp.png")
        fig.savefig(tmp, dpi=120)
        tmp.replace(target)
    finally:
        plt.close(fig)
    logger.info("wrote chart %s", target)
    return target

"""The progress-bar rule shared by every cde-rag package (no heavy imports)."""

from __future__ import annotations

import logging

__all__ = ["progress_enabled"]


def progress_enabled(show_progress_bar: bool | None) -> bool:
    """Whether to show a progress bar.

    Args:
        show_progress_bar: ``True``/``False`` decide; ``None`` means on when the ``cde_rag``
            logger is at INFO or DEBUG (the CLI's ``-q`` raises it to WARNING).

    Returns:
        The decision.
    """
    if show_progress_bar is not None:
        return show_progress_bar
    return logging.getLogger("cde_rag").getEffectiveLevel() <= logging.INFO

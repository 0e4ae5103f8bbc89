"""Deterministic crash points for tests: ``CDE_RAG_TEST_CRASH_AT=<name>[:<n>]``.

Code that writes calls :func:`crash_point` at named places (``created``, ``upserted``,
``written``, ``deleted``, ``pruned``). When the environment variable names that point, the
process kills itself with SIGKILL there (on the ``n``-th time it reaches the point, default the
first): no cleanup, no flush, as a power cut or ``kill -9`` would. Tests use it to check that a
re-run converges from every point, without depending on timing. Unset, it costs a dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CDE_RAG_TEST_CRASH_AT"
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$CDE_RAG_TEST_CRASH_AT`` names this point (and count)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

"""Named kill points: a test-only hook that kills the process at a chosen step.

Crash-safety tests set ``CDE_RAG_TEST_KILL_AT`` to a point's name and check what a process
killed exactly there leaves behind, instead of killing at a random moment and hoping.
Unset (always, outside tests), a kill point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "CDE_RAG_TEST_KILL_AT"
AFTER_ALIAS_SWITCH = "recontextualize:after-alias-switch"
"""The new generation is published; the old one is not yet dropped."""


def kill_point(name: str) -> None:
    """SIGKILL this process when ``CDE_RAG_TEST_KILL_AT`` equals ``name`` (test hook)."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))

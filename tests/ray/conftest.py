"""Fixtures of the Ray tests: the CLI runner of the Qdrant tests."""

from __future__ import annotations

from tests.qdrant.conftest import run_cli

__all__ = ["run_cli"]

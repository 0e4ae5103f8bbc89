"""Single source of the package version (hatch reads it)."""

from __future__ import annotations

__version__ = "0.1.0"

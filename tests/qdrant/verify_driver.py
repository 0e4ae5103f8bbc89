"""``cde-rag verify`` in a subprocess, checked against a synthetic card instead of the real one.

Usage: ``python tests/qdrant/verify_driver.py CARD.json ARGS...``: replaces
``cde_rag.verify.CDE_SMALL_V2_NQ`` with the card in ``CARD.json`` (``dataclasses.asdict`` of a
``CardTable``), then runs ``cde_rag_qdrant.cli.main(ARGS)`` and exits with its code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cde_rag import verify
from cde_rag_qdrant.cli import main

if __name__ == "__main__":
    fields = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    for key in ("values", "indices"):
        fields[key] = tuple(tuple(row) for row in fields[key])
    verify.CDE_SMALL_V2_NQ = verify.CardTable(**fields)
    sys.exit(main(sys.argv[2:]))

"""qdrant-client internals stay in one module; packages use only public names of each other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTEGRATIONS = ROOT / "integrations"
INTERNALS = INTEGRATIONS / "cde_rag_qdrant" / "_qdrant_internals.py"
QDRANT_INTERNALS = re.compile(
    r"qdrant_client\.local|\b_client\._client\b|client\._client\b|meta\.json"
)


def _sources() -> list[Path]:
    return sorted([*INTEGRATIONS.rglob("*.py"), *(ROOT / "cde_rag").rglob("*.py")])


def test_qdrant_client_internals_live_in_one_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _sources()
        if path != INTERNALS
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if QDRANT_INTERNALS.search(line)
    ]
    assert not offenders, offenders
    assert QDRANT_INTERNALS.search(INTERNALS.read_text(encoding="utf-8"))


def test_no_package_imports_another_packages_private_names() -> None:
    private = re.compile(
        r"^\s*(?:from|import)\s+(cde_rag\w*)\.(?:\w+\.)*_\w+|from (cde_rag\w*)\S* import _"
    )
    offenders = []
    for path in _sources():
        own = path.relative_to(ROOT).parts[1 if path.is_relative_to(INTEGRATIONS) else 0]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = private.search(line)
            if match and (match.group(1) or match.group(2)) != own:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders

"""The dependency DAG: core <- qdrant <- {langchain, llamaindex}; adapters never meet."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "cde_rag": ROOT / "cde_rag",
    "cde_rag_qdrant": ROOT / "integrations" / "cde_rag_qdrant",
    "cde_rag_langchain": ROOT / "integrations" / "cde_rag_langchain",
    "cde_rag_llamaindex": ROOT / "integrations" / "cde_rag_llamaindex",
    "cde_rag_ray": ROOT / "integrations" / "cde_rag_ray",
}
FORBIDDEN = {
    "cde_rag": {
        "qdrant_client",
        "langchain_core",
        "langchain_qdrant",
        "llama_index",
        "cde_rag_qdrant",
        "cde_rag_langchain",
        "cde_rag_llamaindex",
    },
    "cde_rag_qdrant": {
        "langchain_core",
        "langchain_qdrant",
        "llama_index",
        "cde_rag_langchain",
        "cde_rag_llamaindex",
    },
    "cde_rag_langchain": {"llama_index", "cde_rag_llamaindex"},
    "cde_rag_llamaindex": {"langchain_core", "langchain_qdrant", "cde_rag_langchain"},
    "cde_rag_ray": {
        "langchain_core",
        "langchain_qdrant",
        "llama_index",
        "cde_rag_langchain",
        "cde_rag_llamaindex",
    },
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_respect_the_dag(package: str) -> None:
    files = sorted(PACKAGES[package].rglob("*.py"))
    assert files, f"{package} has no modules"
    for path in files:
        bad = _imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_importing_the_core_loads_no_framework() -> None:
    code = (
        "import sys, cde_rag, cde_rag.encoder, cde_rag.context;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('qdrant_client', 'langchain_core', 'langchain_qdrant', 'llama_index')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""``examples/make_beir_from_docs.py`` writes a data set ``load_beir`` reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cde_rag_qdrant.evaluation import load_beir

ROOT = Path(__file__).resolve().parents[2]
BODY = "This section explains the topic at length, with enough words to count as a real body. " * 2


def test_sections_become_documents_and_headings_queries(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.rst").write_text(
        f"Building Targets\n================\n\n{BODY}\n\nOptions\n-------\n\n{BODY}\n"
        f"Short\n-----\n\ntoo short\n"
    )
    (docs / "b.md").write_text(f"# Installing Packages\n\n{BODY}\n\n## Options\n\n{BODY}\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_beir_from_docs.py"), str(docs), "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = load_beir(tmp_path / "out")
    assert data.query_texts == ["Building Targets", "Installing Packages"]  # "Options" is generic
    assert data.doc_texts == [BODY.strip(), BODY.strip()]
    assert data.qrels == {"h0": {"s0": 1}, "h1": {"s1": 1}}

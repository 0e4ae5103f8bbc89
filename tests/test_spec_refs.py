"""Every ``spec §N`` cited in the repository names a section of docs/cde-spec.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "cde-spec.md"
CITED = re.compile(r"§\s*(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s", flags=re.MULTILINE)
SEARCHED = ("cde_rag", "integrations", "tests", "benchmarks", "examples", "docs")


def _files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in SEARCHED:
        files += (ROOT / folder).rglob("*.py")
        files += (ROOT / folder).rglob("*.md")
    return sorted(f for f in files if f.is_file())


def test_every_cited_section_is_a_heading_of_the_spec() -> None:
    sections = set(HEADING.findall(text := SPEC.read_text(encoding="utf-8")))
    assert {"2", "7.1.6", "15.6"} <= sections, text[:200]
    missing = []
    cited = 0
    for path in _files():
        for number in CITED.findall(path.read_text(encoding="utf-8")):
            cited += 1
            if number not in sections:
                missing.append(f"{path.relative_to(ROOT)}: §{number}")
    assert cited >= 27  # the code cites the spec throughout
    assert not missing, missing


def test_fixture_readme_links_to_the_spec() -> None:
    readme = ROOT / "tests" / "data" / "cde-reference" / "README.md"
    links = re.findall(r"\]\(([^)]*cde-spec\.md)\)", readme.read_text(encoding="utf-8"))
    assert links
    for link in links:
        assert (readme.parent / link).resolve() == SPEC.resolve()

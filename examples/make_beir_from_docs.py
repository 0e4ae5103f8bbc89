"""Turn documentation files into a BEIR-format retrieval set for ``cde-rag eval``.

Every section of the reStructuredText / Markdown files under SOURCE becomes a document (its
body, without the heading); its heading becomes the query whose one relevant document it is.
Headings used more than once ("Description", "Options", ...) are generic and left out.
"Which section is this heading about?" is a small, honest retrieval task on text nobody wrote
for it.

    python examples/make_beir_from_docs.py /usr/share/cmake-3.25/Help/manual ./cmake-sections
    cde-rag eval ./cmake-sections --model jxm/cde-small-v2
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")
MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
MIN_BODY = 120


def sections(text: str) -> list[tuple[str, str]]:
    """``(heading, body)`` pairs of an rst or Markdown text."""
    lines = text.splitlines()
    found: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        md = MD_HEADING.match(line)
        is_rst = (
            i + 1 < len(lines)
            and line.strip()
            and RST_UNDERLINE.match(lines[i + 1])
            and len(lines[i + 1].strip()) >= len(line.strip())
        )
        if md or is_rst:
            heading = md.group(1) if md else line.strip()
            found.append((heading, []))
            i += 1 if md else 2
            continue
        if found and not RST_UNDERLINE.match(line):
            found[-1][1].append(line)
        i += 1
    return [(h, " ".join(" ".join(body).split())) for h, body in found]


def main() -> None:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder of .rst/.md files (searched recursively)")
    parser.add_argument("target", type=Path, help="BEIR folder to write")
    parser.add_argument("--max-docs", type=int, default=400, help="keep the first N sections")
    args = parser.parse_args()
    docs: list[tuple[str, str]] = []
    for path in sorted(p for p in args.source.rglob("*") if p.suffix in {".rst", ".md"}):
        for heading, body in sections(path.read_text(encoding="utf-8", errors="replace")):
            if len(body) >= MIN_BODY and len(heading) > 3:
                docs.append((heading, body))
    counts = Counter(h.lower() for h, _ in docs)
    docs = [(h, b) for h, b in docs if counts[h.lower()] == 1][: args.max_docs]
    (args.target / "qrels").mkdir(parents=True, exist_ok=True)
    with (
        (args.target / "corpus.jsonl").open("w", encoding="utf-8") as corpus,
        (args.target / "qrels" / "test.tsv").open("w", encoding="utf-8") as qrels,
    ):
        qrels.write("query-id\tcorpus-id\tscore\n")
        for n, (_, body) in enumerate(docs):
            corpus.write(json.dumps({"_id": f"s{n}", "title": "", "text": body}) + "\n")
            qrels.write(f"h{n}\ts{n}\t1\n")
    with (args.target / "queries.jsonl").open("w", encoding="utf-8") as f:
        for n, (heading, _) in enumerate(docs):
            f.write(json.dumps({"_id": f"h{n}", "text": heading}) + "\n")
    print(f"{len(docs)} documents and queries -> {args.target}")


if __name__ == "__main__":
    main()

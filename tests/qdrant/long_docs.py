"""Long documents written for the chunking tests (deterministic, no external text)."""

from __future__ import annotations

import random

_WORDS = [
    "context",
    "corpus",
    "embedding",
    "vector",
    "query",
    "document",
    "chunk",
    "token",
    "window",
    "heading",
    "paragraph",
    "sentence",
    "retrieval",
    "index",
    "collection",
    "model",
    "stage",
    "prefix",
    "offset",
    "sample",
    "batch",
    "payload",
    "river",
    "mountain",
    "garden",
    "kitchen",
    "library",
    "harbour",
    "engine",
    "signal",
    "lantern",
    "meadow",
]
_CJK = "语境文档嵌入向量查询检索模型索引集合句子段落标题窗口样本批次花园河流山脉厨房图书馆"


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 18))]
    return " ".join(words).capitalize() + rng.choice([".", ".", "?", "!"])


def _paragraph(rng: random.Random, n: int = 5) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(2, n)))


def nested_markdown(seed: int = 0, sections: int = 14) -> str:
    """Markdown with three heading levels, lists and fenced code (holding a fake heading)."""
    rng = random.Random(seed)
    parts = ["# Handbook", "", _paragraph(rng), ""]
    for s in range(sections):
        parts += [f"## Part {s}", "", _paragraph(rng), ""]
        for t in range(3):
            parts += [f"### Topic {s}.{t}", "", _paragraph(rng, 8), ""]
            if t == 1:
                parts += ["```python", f"# not a heading {s}", "def f(x):", "    return x", "```"]
                parts += [""]
            parts += [f"- item {i}: {_sentence(rng)}" for i in range(4)] + [""]
    return "\n".join(parts)


def no_blank_lines(seed: int = 1, lines: int = 900) -> str:
    """Plain text whose lines are never separated by a blank line."""
    rng = random.Random(seed)
    return "\n".join(_sentence(rng) for _ in range(lines))


def cjk_text(seed: int = 2, sentences: int = 700) -> str:
    """Chinese text: no spaces, full-width sentence marks."""
    rng = random.Random(seed)
    out = []
    for i in range(sentences):
        out.append("".join(rng.choice(_CJK) for _ in range(rng.randint(8, 30))) + "。")
        if i % 40 == 39:
            out.append("\n\n")
    return "".join(out)


def code_heavy_markdown(seed: int = 3, blocks: int = 60) -> str:
    """Markdown made mostly of long fenced code blocks."""
    rng = random.Random(seed)
    parts = ["# Code"]
    for b in range(blocks):
        parts += ["", f"## Block {b}", "", _sentence(rng), "", "```c"]
        parts += [f"int f{b}_{i}(int x) {{ return x * {i} + {b}; }}" for i in range(12)]
        parts += ["```"]
    return "\n".join(parts)


def one_long_line(seed: int = 4, words: int = 5000) -> str:
    """A single line of words (no newline at all)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(words))


LONG_DOCS = {
    "nested.md": nested_markdown(),
    "no-blank-lines.txt": no_blank_lines(),
    "cjk.txt": cjk_text(),
    "code.md": code_heavy_markdown(),
    "one-line.txt": one_long_line(),
}

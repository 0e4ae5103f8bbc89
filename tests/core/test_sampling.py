"""Tests for the seeded minicorpus sampler."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from cde_rag.errors import InvalidInputError
from cde_rag.sampling import SAMPLING_STRATEGIES, SamplingStrategy, sample_minicorpus

REPO_ROOT = Path(__file__).resolve().parents[2]
STRATEGIES: tuple[SamplingStrategy, ...] = ("uniform", "diverse")

RARE_TOPICS = {
    "volcano": "volcano lava magma eruption crater ash basalt",
    "violin": "violin bow strings concerto orchestra rosin melody",
    "sourdough": "sourdough starter flour yeast oven crust loaf",
    "chess": "chess bishop knight checkmate opening gambit rook",
    "glacier": "glacier ice moraine crevasse meltwater fjord snow",
    "beekeeping": "beekeeping hive honey queen pollen swarm wax",
    "compiler": "compiler parser bytecode register lexer optimizer linker",
    "tax": "tax deduction invoice audit refund receipt filing",
    "orchid": "orchid petal greenhouse bloom fertilizer pot root",
    "satellite": "satellite orbit antenna launch telemetry payload rocket",
}


def _numbered(n: int) -> list[str]:
    return [f"document number {i} about item {i * 7919 % 1000}" for i in range(n)]


def _index(doc: str) -> int:
    return int(doc.split()[2])


def _skewed_corpus() -> list[str]:
    """950 near-identical football reports and 5 documents on each of 10 rare topics."""
    docs = [
        f"The home team won league match number {i} after a late goal in the second half."
        for i in range(950)
    ]
    for words in RARE_TOPICS.values():
        vocabulary = words.split()
        docs += [" ".join(vocabulary[j:] + vocabulary[:j]) + f" note {j}" for j in range(5)]
    random.Random(123).shuffle(docs)
    return docs


def _rare_topics_covered(sample: list[str]) -> int:
    return sum(any(topic in doc for doc in sample) for topic in RARE_TOPICS)


def test_strategy_tuple_matches_literal() -> None:
    assert get_args(SamplingStrategy) == SAMPLING_STRATEGIES


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_gives_same_sample(strategy: SamplingStrategy) -> None:
    corpus = _numbered(500)
    first = sample_minicorpus(corpus, 32, seed=7, strategy=strategy)
    second = sample_minicorpus(list(corpus), 32, seed=7, strategy=strategy)
    assert first == second
    assert len(first) == 32


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_different_seed_gives_different_sample(strategy: SamplingStrategy) -> None:
    corpus = _numbered(500)
    samples = {tuple(sample_minicorpus(corpus, 32, seed=s, strategy=strategy)) for s in range(3)}
    assert len(samples) == 3


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_large_corpus_is_sampled_without_replacement_in_corpus_order(
    strategy: SamplingStrategy,
) -> None:
    corpus = _numbered(300)
    sample = sample_minicorpus(corpus, 64, seed=3, strategy=strategy)
    assert len(sample) == 64
    assert len(set(sample)) == 64
    assert set(sample) <= set(corpus)
    indices = [_index(doc) for doc in sample]
    assert indices == sorted(indices)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_size_returns_corpus_unchanged(strategy: SamplingStrategy) -> None:
    corpus = ["zeta", "alpha", "mu", "alpha"]
    assert sample_minicorpus(corpus, 4, seed=5, strategy=strategy) == corpus


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_small_corpus_is_oversampled_in_stable_order(
    strategy: SamplingStrategy, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = ["first", "second", "third"]
    with caplog.at_level(logging.INFO, logger="cde_rag.sampling"):
        sample = sample_minicorpus(corpus, 8, seed=1, strategy=strategy)
    counts = Counter(sample)
    assert len(sample) == 8
    assert set(counts) == set(corpus)
    assert all(count in (2, 3) for count in counts.values())  # 8 // 3 = 2, 8 % 3 = 2 extras
    assert sum(count == 3 for count in counts.values()) == 2
    # sorted by corpus index, so copies of one document are adjacent
    assert sample == sorted(sample, key=corpus.index)
    assert "3 documents -> 8" in caplog.text


def test_oversampling_extras_depend_on_seed_only() -> None:
    corpus = [f"doc {i}" for i in range(10)]
    runs = {tuple(sample_minicorpus(corpus, 25, seed=s)) for s in range(5)}
    assert len(runs) > 1
    assert sample_minicorpus(corpus, 25, seed=4) == sample_minicorpus(
        corpus, 25, seed=4, strategy="diverse"
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_generator_input_is_read_once(strategy: SamplingStrategy) -> None:
    corpus = _numbered(200)

    def documents() -> Iterator[str]:
        yield from corpus

    from_generator = sample_minicorpus(documents(), 20, seed=2, strategy=strategy)
    assert from_generator == sample_minicorpus(corpus, 20, seed=2, strategy=strategy)


def test_diverse_covers_rare_topics_of_a_skewed_corpus() -> None:
    corpus = _skewed_corpus()
    diverse = [
        _rare_topics_covered(sample_minicorpus(corpus, 20, seed=s, strategy="diverse"))
        for s in range(5)
    ]
    uniform = [_rare_topics_covered(sample_minicorpus(corpus, 20, seed=s)) for s in range(5)]
    assert min(diverse) >= 8, diverse
    assert sum(uniform) / 5 < sum(diverse) / 5 - 4, (uniform, diverse)


def test_diverse_with_only_duplicates_left_still_returns_distinct_rows() -> None:
    corpus = ["the same text"] * 40 + ["another text"] * 40
    sample = sample_minicorpus(corpus, 10, seed=0, strategy="diverse")
    assert len(sample) == 10
    assert set(sample) == {"the same text", "another text"}


def test_diverse_does_not_depend_on_python_hash_seed() -> None:
    # a bare package object stands in for cde_rag/__init__.py, so only errors.py and sampling.py
    # are imported (not torch), which keeps the two interpreters quick to start
    script = (
        "import json, sys, types; package = types.ModuleType('cde_rag'); "
        f"package.__path__ = [{str(REPO_ROOT / 'cde_rag')!r}]; sys.modules['cde_rag'] = package; "
        "from cde_rag.sampling import sample_minicorpus; "
        "docs = [f'text {i} on subject {i % 13}' for i in range(400)]; "
        "print(json.dumps(sample_minicorpus(docs, 16, seed=9, strategy='diverse')))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
        )
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 16


def test_diverse_handles_a_large_corpus() -> None:
    corpus = [f"short doc {i} about topic {i % 37} and word{i % 101}" for i in range(100_000)]
    sample = sample_minicorpus(corpus, 512, seed=0, strategy="diverse")
    assert len(sample) == 512
    assert len(set(sample)) == 512
    indices = [int(doc.split()[2]) for doc in sample]
    assert indices == sorted(indices)


@pytest.mark.parametrize(
    ("corpus", "size", "strategy", "match"),
    [
        (["ok", None, "fine"], 2, "uniform", r"corpus\[1\] is None \(NoneType\)"),
        (["ok", "fine", 42], 2, "uniform", r"corpus\[2\] is 42 \(int\)"),
        (["ok", "", "fine"], 2, "uniform", r"corpus\[1\] is '': empty .*remove it"),
        (["ok", "fine", " \n\t"], 2, "diverse", r"corpus\[2\] is ' \\n\\t': empty"),
        ("a whole document", 2, "uniform", r"not a single str; wrap it"),
        (["ok", "x\udc80"], 1, "uniform", r"corpus\[1\] holds a lone surrogate"),
        ([], 2, "uniform", r"corpus is empty"),
        (["ok", "fine"], 0, "uniform", r"positive integer, got 0"),
        (["ok", "fine"], -3, "uniform", r"positive integer, got -3"),
        (["ok", "fine"], 1, "clustered", r"'clustered'.*\('uniform', 'diverse'\)"),
    ],
)
def test_bad_input_raises(corpus: object, size: int, strategy: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        sample_minicorpus(corpus, size, strategy=strategy)  # type: ignore[arg-type]


def test_invalid_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="corpus is empty"):
        sample_minicorpus(iter([]), 4)

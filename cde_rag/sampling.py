"""Seeded choice of the minicorpus: which corpus texts become a CDE model's dataset embeddings.

A CDE model conditions every embedding on ``size`` documents (512 for the published models)
drawn from the user's corpus. This module only chooses those texts; it embeds nothing.

Strategies:

* ``"uniform"`` (the default, upstream's rule): a seeded sample without replacement. It is an
  unbiased picture of the corpus, so a topic with 90% of the documents gets about 90% of the rows.
* ``"diverse"``: k-means++ seeding (D² sampling) over cheap hashed word features, so rare topics
  of a skewed corpus are still represented. See :func:`sample_minicorpus` for the trade-off.

When the corpus is smaller than ``size`` every strategy oversamples with replacement, as upstream
does. The result is always in corpus order and depends only on the inputs and ``seed``.
"""

from __future__ import annotations

import logging
import math
import random
import re
import zlib
from collections.abc import Iterable
from itertools import pairwise
from typing import Literal

import numpy as np
import numpy.typing as npt

from cde_rag.errors import InvalidInputError
from cde_rag.validation import validate_texts

logger = logging.getLogger(__name__)

SamplingStrategy = Literal["uniform", "diverse"]
SAMPLING_STRATEGIES: tuple[str, ...] = ("uniform", "diverse")

_N_FEATURES = 2**8  # dense hashed feature space of the "diverse" strategy (a power of two)
_CANDIDATES_PER_ROW = 20  # "diverse" looks at most max(20 * size, _MIN_CANDIDATES) documents
_MIN_CANDIDATES = 10_000
_MAX_WORDS = 128  # only the first words of a document are hashed
_WORD = re.compile(r"\w+")


def sample_minicorpus(
    corpus: Iterable[str],
    size: int,
    *,
    seed: int = 0,
    strategy: SamplingStrategy = "uniform",
) -> list[str]:
    """Choose the ``size`` documents a CDE model embeds as its minicorpus.

    * ``len(corpus) == size``: the corpus is returned unchanged, whatever the strategy.
    * ``len(corpus) > size``, ``"uniform"``: ``size`` documents without replacement, drawn with
      ``random.Random(seed)``.
    * ``len(corpus) > size``, ``"diverse"``: each document becomes an L2-normalised vector of
      the signed, hashed counts of its first 128 lower-cased words and their bigrams (2**8
      buckets, ``zlib.crc32``, so it is stable across processes), and ``size`` of them are
      picked by greedy k-means++ seeding: D² sampling with ``numpy.random.default_rng(seed)``,
      keeping the best of ``2 + ln(size)`` trials each step. To bound the cost, a seeded uniform
      pre-sample of ``max(20 * size, 10_000)`` candidates is taken first, so the work is
      O(candidates x size x trials x 2**8) whatever the corpus size (about a second for 512 of
      100k short documents); a topic much rarer than one in ``candidates`` may be missed.
      Trade-off: rare topics of a skewed corpus are covered much better, but the sample is no
      longer unbiased, so a dominant topic gets fewer rows than its share, and the features
      cost a hashing pass.
    * ``len(corpus) < size``: oversampled with replacement (upstream's rule): every document
      appears ``size // n`` times and ``size % n`` of them, drawn without replacement with
      ``random.Random(seed)``, once more. Copies of one document are adjacent.

    The result is in corpus order, and the same inputs and ``seed`` give the same result.

    Args:
        corpus: The documents, a list or any iterable (read once).
        size: How many documents to return (the model's minicorpus size).
        seed: Seed of the random choices.
        strategy: ``"uniform"`` or ``"diverse"``.

    Returns:
        ``size`` documents of ``corpus``, in corpus order.

    Raises:
        InvalidInputError: If ``corpus`` is a single string, is empty or holds an item that is not
            a non-blank string, if ``size < 1``, or if ``strategy`` is unknown.

    Example:
        >>> sample_minicorpus(["a", "b", "c", "d"], 2, seed=1)
        ['b', 'c']
    """
    if strategy not in SAMPLING_STRATEGIES:
        msg = f"Unknown sampling strategy {strategy!r}; expected one of {SAMPLING_STRATEGIES}."
        raise InvalidInputError(msg)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        msg = f"Minicorpus size must be a positive integer, got {size!r}; pass size >= 1."
        raise InvalidInputError(msg)
    docs = validate_texts(corpus, "corpus", non_empty=True)
    n = len(docs)
    if n == size:
        return docs
    if n < size:
        logger.info("Corpus oversampled with replacement: %d documents -> %d", n, size)
        repeats, extra = divmod(size, n)
        once_more = set(random.Random(seed).sample(range(n), extra))
        return [doc for i, doc in enumerate(docs) for _ in range(repeats + (i in once_more))]
    if strategy == "uniform":
        chosen = random.Random(seed).sample(range(n), size)
    else:
        chosen = _diverse_indices(docs, size, seed)
    return [docs[i] for i in sorted(chosen)]


def _diverse_indices(docs: list[str], size: int, seed: int) -> list[int]:
    """Corpus indices of ``size`` distinct documents chosen by greedy k-means++ seeding."""
    rng = np.random.default_rng(seed)
    n = len(docs)
    n_candidates = min(n, max(_CANDIDATES_PER_ROW * size, _MIN_CANDIDATES))
    if n_candidates < n:
        logger.debug("Diverse sampling: uniform pre-sample of %d of %d", n_candidates, n)
        candidates = np.sort(rng.choice(n, size=n_candidates, replace=False))
    else:
        candidates = np.arange(n)
    features = _hashed_features([docs[i] for i in candidates])
    # greedy k-means++ (scikit-learn's default): of a few D²-sampled trials, keep the one that
    # lowers the total squared distance most, so a dense topic rarely wins over an uncovered one
    n_trials = 2 + int(math.log(size))
    nearest = np.full(n_candidates, np.inf)  # squared distance to the nearest chosen document
    taken = np.zeros(n_candidates, dtype=bool)
    chosen: list[int] = []
    trials = np.asarray([rng.integers(n_candidates)])
    while True:
        # on unit vectors |a - b|² = 2 - 2 a·b
        distances = np.maximum(2.0 - 2.0 * (features[trials] @ features.T), 0.0)
        merged = np.minimum(nearest, distances)
        best = int(np.argmin(merged.sum(axis=1)))
        chosen.append(int(trials[best]))
        nearest = merged[best]
        nearest[chosen[-1]] = 0.0
        taken[chosen[-1]] = True
        if len(chosen) == size:
            return [int(candidates[i]) for i in chosen]
        cumulative = np.cumsum(nearest, dtype=np.float64)
        if cumulative[-1] > 0.0:
            # dividing makes the last entry exactly 1 > every draw, and a document with weight 0
            # (already taken) never gets a draw
            cumulative /= cumulative[-1]
            trials = np.searchsorted(cumulative, rng.random(n_trials), side="right")
        else:  # only exact duplicates of chosen documents are left: fall back to uniform
            trials = rng.choice(np.flatnonzero(~taken), size=1)


def _hashed_features(texts: list[str]) -> npt.NDArray[np.float32]:
    """Rows of L2-normalised, signed, hashed counts of each text's word unigrams and bigrams."""
    lengths: list[int] = []
    hashes: list[int] = []
    for text in texts:
        words = _WORD.findall(text.lower())[:_MAX_WORDS] or [text.strip()]
        terms = words + [f"{a} {b}" for a, b in pairwise(words)]
        hashes.extend(zlib.crc32(term.encode("utf-8")) for term in terms)
        lengths.append(len(terms))
    hashed = np.asarray(hashes, dtype=np.int64)
    rows = np.repeat(np.arange(len(texts)), lengths)
    # the top bit of the hash gives a sign, so colliding terms cancel out on average
    signs = np.where(hashed >> 31, -1.0, 1.0).astype(np.float32)
    matrix = np.zeros((len(texts), _N_FEATURES), dtype=np.float32)
    np.add.at(matrix, (rows, hashed & (_N_FEATURES - 1)), signs)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), np.float32(1e-12))
    return matrix

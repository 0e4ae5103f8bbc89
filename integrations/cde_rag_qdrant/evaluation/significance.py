"""Paired randomization (sign-flip permutation) test on per-query metric values.

Under the null hypothesis that two conditions are interchangeable, the sign of each query's
difference is a coin flip. The statistic is the mean difference; the two-sided p-value is the
share of sign assignments whose mean is at least as far from zero as the observed one. With up
to ``n_resamples`` possible assignments (``2**n``) all are enumerated (exact test); otherwise
``n_resamples`` random ones are drawn with a fixed seed and ``p = (hits + 1) / (n + 1)``. These
are the conventions of ``scipy.stats.permutation_test(..., permutation_type="samples")``,
against which the tests check the exact case. Smucker, Allan and Carterette (CIKM 2007)
recommend this test for IR evaluation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TEST_NAME = "paired randomization test (sign flips, two-sided)"
N_RESAMPLES = 10_000
_CHUNK = 1024


def _flips(n: int, rows: int, rng: np.random.Generator | None, start: int) -> npt.NDArray[np.int8]:
    if rng is None:  # exact: the rows start..start+rows of all 2**n sign patterns
        codes = np.arange(start, start + rows, dtype=np.int64)[:, None]
        bits = (codes >> np.arange(n, dtype=np.int64)[None, :]) & 1
        return (1 - 2 * bits).astype(np.int8)
    return (1 - 2 * rng.integers(0, 2, size=(rows, n))).astype(np.int8)


def paired_randomization_test(
    a: npt.ArrayLike, b: npt.ArrayLike, *, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> float:
    """Two-sided p-value that paired samples ``a`` and ``b`` have the same mean.

    Args:
        a: Per-query values of one condition.
        b: The same queries under another condition.
        n_resamples: Random sign assignments when ``2**len(a)`` exceeds it.
        seed: Seed of those assignments.

    Returns:
        The p-value in (0, 1]; 1.0 when every difference is zero.

    Raises:
        ValueError: ``a`` and ``b`` differ in length or are empty.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or diff.size == 0 or np.shape(a) != np.shape(b):
        msg = f"expected two equal-length 1-D samples; got shapes {np.shape(a)}, {np.shape(b)}"
        raise ValueError(msg)
    n = diff.size
    observed = float(diff.mean())
    if not np.any(diff):
        return 1.0
    exact = n < 63 and 2**n <= n_resamples
    total = 2**n if exact else n_resamples
    rng = None if exact else np.random.default_rng(seed)
    tolerance = abs(observed) * 1e-14 * n
    greater = less = 0
    for start in range(0, total, _CHUNK):
        rows = min(_CHUNK, total - start)
        means = (_flips(n, rows, rng, start) @ diff) / n
        greater += int(np.count_nonzero(means >= observed - tolerance))
        less += int(np.count_nonzero(means <= observed + tolerance))
    extra = 0 if exact else 1
    p_greater = (greater + extra) / (total + extra)
    p_less = (less + extra) / (total + extra)
    return min(1.0, 2 * min(p_greater, p_less))

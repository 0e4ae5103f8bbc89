"""Length-sorted batching and right padding (cde_rag._batching)."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from cde_rag._batching import length_sorted_batches, pad_batch
from cde_rag.errors import InvalidInputError


def _random_lengths(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 60) for _ in range(rng.randint(1, 40))]


CASES = [
    pytest.param(seed, batch_size, cap, extra, id=f"s{seed}-b{batch_size}-cap{cap}-x{extra}")
    for seed, batch_size, cap, extra in itertools.product(
        range(4), (1, 2, 3, 7, 100), (None, 1, 60, 250, 10_000), (0, 24)
    )
]


@pytest.mark.parametrize(("seed", "batch_size", "cap", "extra"), CASES)
def test_length_sorted_batches_invariants(
    seed: int, batch_size: int, cap: int | None, extra: int
) -> None:
    lengths = _random_lengths(seed)
    batches = length_sorted_batches(
        lengths, batch_size=batch_size, max_batch_tokens=cap, extra_tokens=extra
    )
    flat = [i for batch in batches for i in batch]
    # every index exactly once
    assert sorted(flat) == list(range(len(lengths)))
    assert all(batches), "no empty batch"
    # longest first; equal lengths keep the caller's order
    keys = [(-lengths[i], i) for i in flat]
    assert keys == sorted(keys)
    for batch in batches:
        assert len(batch) <= batch_size
        padded = len(batch) * (extra + max(lengths[i] for i in batch))
        if cap is not None and len(batch) > 1:
            assert padded <= cap
    # greedy: a batch is closed only when the next text would break a limit
    for batch, _next in itertools.pairwise(batches):
        full = len(batch) == batch_size
        over = cap is not None and (len(batch) + 1) * (extra + lengths[batch[0]]) > cap
        assert full or over


def test_length_sorted_batches_small_example() -> None:
    assert length_sorted_batches([3, 10, 5, 10, 1], batch_size=2) == [[1, 3], [2, 0], [4]]


def test_token_cap_counts_extra_tokens() -> None:
    assert length_sorted_batches([5, 5, 5], batch_size=10, max_batch_tokens=10) == [[0, 1], [2]]
    assert length_sorted_batches([5, 5, 5], batch_size=10, max_batch_tokens=10, extra_tokens=5) == [
        [0],
        [1],
        [2],
    ]


def test_text_over_the_cap_forms_its_own_batch() -> None:
    assert length_sorted_batches([2, 50, 2], batch_size=8, max_batch_tokens=10) == [
        [1],
        [0, 2],
    ]


def test_no_lengths_gives_no_batches() -> None:
    assert length_sorted_batches([], batch_size=4) == []


@pytest.mark.parametrize("batch_size", [0, -1])
def test_non_positive_batch_size_is_refused(batch_size: int) -> None:
    with pytest.raises(InvalidInputError, match=rf"batch_size={batch_size}; expected a positive"):
        length_sorted_batches([1, 2], batch_size=batch_size)


@pytest.mark.parametrize("cap", [0, -5])
def test_non_positive_token_cap_is_refused(cap: int) -> None:
    with pytest.raises(InvalidInputError, match=rf"max_batch_tokens={cap}; expected a positive"):
        length_sorted_batches([1, 2], batch_size=2, max_batch_tokens=cap)


def test_pad_batch_right_pads_with_pad_id_and_masks() -> None:
    ids, mask = pad_batch([[7, 8, 9], [4], [5, 6]], pad_id=510)
    torch.testing.assert_close(
        ids, torch.tensor([[7, 8, 9], [4, 510, 510], [5, 6, 510]]), rtol=0, atol=0
    )
    torch.testing.assert_close(
        mask, torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]]), rtol=0, atol=0
    )
    assert ids.dtype == mask.dtype == torch.int64


def test_pad_batch_of_equal_lengths_adds_no_padding() -> None:
    ids, mask = pad_batch([(1, 2), (3, 4)], pad_id=0)
    torch.testing.assert_close(ids, torch.tensor([[1, 2], [3, 4]]), rtol=0, atol=0)
    assert bool(mask.all())

"""Token-length-sorted batches (caller's order restored by the encoder) and right padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cde_rag.errors import InvalidInputError


def length_sorted_batches(
    lengths: Sequence[int],
    *,
    batch_size: int,
    max_batch_tokens: int | None = None,
    extra_tokens: int = 0,
) -> list[list[int]]:
    """Group indices into batches of similar token length, longest first.

    Longest first surfaces out-of-memory errors at once and keeps padding small.

    Args:
        lengths: Token count of each text.
        batch_size: Most texts per batch.
        max_batch_tokens: Optional cap on ``len(batch) * (extra_tokens + longest)``; a single
            text over the cap still forms its own batch.
        extra_tokens: Tokens every sequence carries besides its text (context rows + prompt).

    Returns:
        Batches of indices into ``lengths``.

    Raises:
        InvalidInputError: Non-positive ``batch_size`` or ``max_batch_tokens``.
    """
    if batch_size < 1:
        msg = f"batch_size={batch_size}; expected a positive int."
        raise InvalidInputError(msg)
    if max_batch_tokens is not None and max_batch_tokens < 1:
        msg = f"max_batch_tokens={max_batch_tokens}; expected a positive int or None."
        raise InvalidInputError(msg)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        too_many = len(current) >= batch_size
        too_big = (
            max_batch_tokens is not None
            and current
            and (len(current) + 1) * (extra_tokens + longest) > max_batch_tokens
        )
        if current and (too_many or too_big):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``(ids, attention_mask)`` int64 tensors."""
    width = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, tokens in enumerate(token_ids):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return ids, mask

"""The ingest pipeline regroups small batches into length-sortable embedding windows."""

from __future__ import annotations

from cde_rag_qdrant._pipeline import PendingBatch, _windows


def _batch(start: int, n: int) -> PendingBatch:
    ids = [f"id{i}" for i in range(start, start + n)]
    return PendingBatch(
        ids,
        [f"text {i}" for i in range(start, start + n)],
        [{"i": i} for i in range(start, start + n)],
    )


def test_windows_regroup_without_losing_or_reordering_points() -> None:
    batches = [_batch(0, 7), _batch(7, 7), _batch(14, 3)]
    windows = list(_windows(batches, 5))
    assert [len(w.ids) for w in windows] == [5, 5, 5, 2]
    assert [i for w in windows for i in w.ids] == [f"id{i}" for i in range(17)]
    for window in windows:  # ids, texts and payloads stay aligned
        for point_id, text, payload in zip(window.ids, window.texts, window.payloads, strict=True):
            assert point_id == f"id{payload['i']}"
            assert text == f"text {payload['i']}"


def test_windows_of_nothing_is_nothing() -> None:
    assert list(_windows([], 4)) == []

"""The batching queue, with a fake encoder that blocks until told (no timing assumptions)."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from concurrent.futures import Future

import numpy as np
import pytest

from cde_rag_qdrant.server.batcher import Batcher, BatcherClosedError, Vectors

WAIT = 30  # generous upper bound for a thread to reach a point; never a timing assumption


class FakeEncoder:
    """Returns one row per text holding the text's number; the first call can be held."""

    def __init__(self) -> None:
        self.calls: list[tuple[Hashable, list[str]]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: str | None = None

    def __call__(self, key: Hashable, texts: list[str]) -> Vectors:
        self.calls.append((key, list(texts)))
        self.entered.set()
        assert self.gate.wait(WAIT)
        if self.fail_on is not None and self.fail_on in texts:
            msg = "boom"
            raise RuntimeError(msg)
        return np.array([[float(t.split("-")[1])] for t in texts], dtype=np.float32)

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()


def _rows(future: Future[Vectors]) -> list[float]:
    return [float(x) for x in future.result(WAIT)[:, 0]]


def test_requests_queued_while_busy_share_one_call_per_key() -> None:
    fake = FakeEncoder()
    batcher = Batcher(fake, max_batch_tokens=1000)
    fake.hold()
    first = batcher.submit(("a", "query"), ["t-0"], tokens=1)
    assert fake.entered.wait(WAIT)  # the worker is inside the first call
    a = [batcher.submit(("a", "query"), [f"t-{i}", f"t-{i + 100}"], tokens=2) for i in (1, 2, 3)]
    b = [batcher.submit(("b", "query"), [f"t-{i}"], tokens=1) for i in (4, 5)]
    a_doc = batcher.submit(("a", "document"), ["t-6"], tokens=1)
    assert batcher.pending == 6
    fake.gate.set()
    assert _rows(first) == [0.0]
    assert [_rows(f) for f in a] == [[1.0, 101.0], [2.0, 102.0], [3.0, 103.0]]
    assert [_rows(f) for f in b] == [[4.0], [5.0]]
    assert _rows(a_doc) == [6.0]
    batcher.close()
    keys = [key for key, _ in fake.calls]
    assert keys == [("a", "query"), ("a", "query"), ("b", "query"), ("a", "document")]
    assert fake.calls[1][1] == ["t-1", "t-101", "t-2", "t-102", "t-3", "t-103"]
    batches = next(iter(batcher.metrics.batch_requests.collect())).samples
    assert next(s.value for s in batches if s.name.endswith("_sum")) == 1 + 3 + 2 + 1


def test_token_and_input_budgets_split_batches() -> None:
    fake = FakeEncoder()
    batcher = Batcher(fake, max_batch_tokens=10, max_batch_inputs=3)
    fake.hold()
    batcher.submit("k", ["t-0"], tokens=1)
    assert fake.entered.wait(WAIT)
    futures = [batcher.submit("k", [f"t-{i}"], tokens=4) for i in range(1, 6)]
    fake.gate.set()
    assert [_rows(f) for f in futures] == [[float(i)] for i in range(1, 6)]
    batcher.close()
    # 4 + 4 tokens fit in 10, a third does not; the budget never drops a request
    assert [texts for _, texts in fake.calls] == [["t-0"], ["t-1", "t-2"], ["t-3", "t-4"], ["t-5"]]


def test_batching_off_runs_one_call_per_request() -> None:
    fake = FakeEncoder()
    batcher = Batcher(fake, enabled=False)
    fake.hold()
    batcher.submit("k", ["t-0"], tokens=1)
    assert fake.entered.wait(WAIT)
    futures = [batcher.submit("k", [f"t-{i}"], tokens=1) for i in range(1, 4)]
    fake.gate.set()
    assert [_rows(f) for f in futures] == [[1.0], [2.0], [3.0]]
    batcher.close()
    assert len(fake.calls) == 4


def test_a_failing_batch_fails_its_requests_only() -> None:
    fake = FakeEncoder()
    batcher = Batcher(fake)
    fake.hold()
    batcher.submit("k", ["t-0"], tokens=1)
    assert fake.entered.wait(WAIT)
    bad = [batcher.submit("k", ["t-1"], tokens=1), batcher.submit("k", ["t-2"], tokens=1)]
    other = batcher.submit("j", ["t-3"], tokens=1)
    fake.fail_on = "t-2"
    fake.gate.set()
    for future in bad:
        with pytest.raises(RuntimeError, match="boom"):
            future.result(WAIT)
    assert _rows(other) == [3.0]
    fake.fail_on = None
    assert _rows(batcher.submit("k", ["t-4"], tokens=1)) == [4.0]  # still serving
    batcher.close()


def test_close_finishes_accepted_work_then_refuses() -> None:
    fake = FakeEncoder()
    batcher = Batcher(fake)
    fake.hold()
    first = batcher.submit("k", ["t-0"], tokens=1)
    assert fake.entered.wait(WAIT)
    queued = [batcher.submit(("x", i % 2), [f"t-{i}"], tokens=1) for i in range(1, 5)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    while batcher.alive:  # wait until close() has flagged the batcher (observable progress)
        time.sleep(0.001)
    with pytest.raises(BatcherClosedError, match="shutting down"):
        batcher.submit("k", ["t-9"], tokens=1)
    fake.gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert _rows(first) == [0.0]
    assert [_rows(f) for f in queued] == [[1.0], [2.0], [3.0], [4.0]]


def test_cancelled_requests_are_skipped_and_calls_run_in_order() -> None:
    fake = FakeEncoder()
    batcher = Batcher(fake)
    fake.hold()
    batcher.submit("k", ["t-0"], tokens=1)
    assert fake.entered.wait(WAIT)
    dropped = batcher.submit("k", ["t-1"], tokens=1)
    kept = batcher.submit("k", ["t-2"], tokens=1)
    order: list[str] = []

    def record_call() -> int:
        order.append("call")
        return len(fake.calls)

    call = batcher.submit_call(record_call)
    assert dropped.cancel()
    fake.gate.set()
    assert _rows(kept) == [2.0]
    assert call.result(WAIT) == 2  # ran after the batch queued before it
    batcher.close()
    assert [texts for _, texts in fake.calls] == [["t-0"], ["t-2"]]
    assert order == ["call"]

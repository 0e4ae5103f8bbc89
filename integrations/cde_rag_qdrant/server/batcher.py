"""Dynamic batching: requests waiting for the same context and input type share one encoder call.

One worker thread owns the encoder. While it runs a batch, new requests queue up; when it is
free it takes the oldest request and every queued request with the same key (context name and
input type) that fits the token budget, embeds their texts in one call and hands each request
its rows. Requests for different contexts are never mixed. Other model work (searches, document
upserts) runs on the same thread as exclusive jobs, so the model is never used concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from cde_rag_qdrant.server.metrics import ServerMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
Vectors = npt.NDArray[np.float32]
EmbedFn = Callable[[Hashable, list[str]], Vectors]


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and accepts no new work (answered as HTTP 503)."""


@dataclass
class _Job:
    key: Hashable | None  # None: an exclusive job
    texts: list[str]
    tokens: int
    future: Future[Any]
    fn: Callable[[], Any] | None = None
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Coalesces embedding requests per key into encoder calls on one worker thread.

    Args:
        embed: ``embed(key, texts) -> (len(texts), dim) float32`` (runs on the worker).
        enabled: Coalesce requests (``False``: one encoder call per request).
        max_batch_tokens: Most tokens in one coalesced call (a single larger request still
            runs, alone).
        max_batch_inputs: Most texts in one coalesced call.
        metrics: Where batch sizes, queue times and depth are recorded.

    Example:
        >>> batcher = Batcher(embed, enabled=True, max_batch_tokens=16384)  # doctest: +SKIP
        >>> vectors = await batcher.embed(("notes", "query"), ["hi"], tokens=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        embed: EmbedFn,
        *,
        enabled: bool = True,
        max_batch_tokens: int = 16384,
        max_batch_inputs: int = 1024,
        metrics: ServerMetrics | None = None,
    ) -> None:
        """Start the worker thread."""
        self._embed = embed
        self.enabled = enabled
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_inputs = max_batch_inputs
        self.metrics = metrics or ServerMetrics()
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="cde-rag-batcher", daemon=True)
        self._thread.start()

    # -- submitting ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the worker runs and new work is accepted."""
        return self._thread.is_alive() and not self._closing

    @property
    def pending(self) -> int:
        """Jobs waiting (not yet taken by the worker)."""
        with self._cond:
            return len(self._queue)

    def _put(self, job: _Job) -> None:
        with self._cond:
            if self._closing:
                msg = "the server is shutting down and accepts no new work; retry elsewhere."
                raise BatcherClosedError(msg)
            self._queue.append(job)
            self.metrics.queue_depth.set(len(self._queue))
            self._cond.notify()

    def submit(self, key: Hashable, texts: Sequence[str], tokens: int) -> Future[Vectors]:
        """Queue ``texts`` for embedding under ``key``; the future resolves to their rows.

        Raises:
            BatcherClosedError: After :meth:`close`.
        """
        future: Future[Vectors] = Future()
        self._put(_Job(key, list(texts), tokens, future))
        return future

    def submit_call(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` alone on the worker thread (after the jobs queued before it)."""
        future: Future[T] = Future()
        self._put(_Job(None, [], 0, future, fn))
        return future

    async def embed(self, key: Hashable, texts: Sequence[str], tokens: int) -> Vectors:
        """Async :meth:`submit` (cancelling the await drops the job if it has not started)."""
        return await asyncio.wrap_future(self.submit(key, texts, tokens))

    async def call(self, fn: Callable[[], T]) -> T:
        """Async :meth:`submit_call`."""
        return await asyncio.wrap_future(self.submit_call(fn))

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish every queued job, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # -- the worker ----------------------------------------------------------------------

    def _take(self) -> list[_Job] | None:
        """The next batch (oldest job first), or None when closing with nothing left."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            first = self._queue.popleft()
            batch = [first]
            if first.key is not None and self.enabled:
                tokens, inputs = first.tokens, len(first.texts)
                rest: deque[_Job] = deque()
                for job in self._queue:
                    fits = (
                        job.key == first.key
                        and tokens + job.tokens <= self.max_batch_tokens
                        and inputs + len(job.texts) <= self.max_batch_inputs
                    )
                    if fits:
                        batch.append(job)
                        tokens += job.tokens
                        inputs += len(job.texts)
                    else:
                        rest.append(job)
                self._queue = rest
            self.metrics.queue_depth.set(len(self._queue))
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            for job in live:
                self.metrics.queue_seconds.observe(started - job.enqueued)
            if not live:
                continue
            if live[0].key is None:
                self._run_call(live[0])
            else:
                self._run_batch(live)

    @staticmethod
    def _run_call(job: _Job) -> None:
        assert job.fn is not None  # noqa: S101 (type narrowing of an invariant): exclusive jobs carry their function
        try:
            job.future.set_result(job.fn())
        except BaseException as exc:  # handed to the awaiting request
            job.future.set_exception(exc)

    def _run_batch(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        started = time.perf_counter()
        try:
            vectors = self._embed(jobs[0].key, texts)
        except BaseException as exc:  # every request of the batch gets the error
            logger.exception("embedding a batch of %d texts failed", len(texts))
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_inputs.observe(len(texts))
        self.metrics.batch_requests.observe(len(jobs))
        start = 0
        for job in jobs:
            stop = start + len(job.texts)
            job.future.set_result(vectors[start:stop])
            start = stop

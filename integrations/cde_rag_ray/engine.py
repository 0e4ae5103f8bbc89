"""A pool of Ray actors that embed windows of texts with one shared context.

The driver puts the context bytes into Ray's object store once; each actor loads the model
once, fetches and validates the context (see :mod:`cde_rag_ray.worker`) and then embeds the
windows it is handed. Windows are dealt to the actors in turn; results come back in submission
order, so a caller can write them as if one process had embedded them. Each window is embedded
by one actor with the same call the single-process ingest makes, so the vectors are the same
bits (on the same hardware and thread count).

Where the points go: with a collection on a Qdrant server, ``ContextualCollection.sync`` (and
``cde-rag ingest --engine ray --qdrant-url URL``) let the actors write (:meth:`RayEmbedder.
imap_write`): each actor embeds its window and upserts the points itself with the collection's
upload rules, and only counts come back, so the driver's bandwidth no longer bounds the job.
The driver keeps the rest: it creates the collection and its context record, plans the sync,
defers and restores indexing, moves the progress bar per confirmed window, and deletes old
versions only after every new chunk was confirmed. With an embedded store (a folder or
``:memory:``), or ``RayOptions(worker_writes=False)``, the actors return vectors and the driver
is the single writer.

Crashed actors are restarted by Ray (``max_restarts``) and their unfinished windows are retried
(``max_task_retries``); windows are idempotent (deterministic point ids), so a retry changes
nothing, even when the crashed actor had written part of its window.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cde_rag import CorpusContext
from cde_rag.errors import CDERagError, InvalidInputError, OptionalDependencyError
from cde_rag_ray.worker import EmbedWorker, ModelSpec

if TYPE_CHECKING:
    from cde_rag_qdrant.worker_writes import WriteTarget

logger = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module, or an error naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        msg = "Ray is not installed."
        raise OptionalDependencyError(msg, extra="ray") from exc
    return ray


def _remote(method: str, *args: Any) -> Callable[[Any], Any]:
    """A call of ``method(*args)`` on whichever actor it is handed (returns the object ref)."""
    return lambda actor: getattr(actor, method).remote(*args)


@dataclass(frozen=True)
class RayOptions:
    """Sizing of the actor pool.

    Attributes:
        address: Ray cluster address (``"auto"``, ``"ray://head:10001"``); None starts or joins
            a local instance.
        actors: Number of actors (model replicas).
        gpus_per_actor: GPUs each actor holds (0: CPU actors; fractions share a GPU).
        cpus_per_actor: CPUs each actor reserves.
        max_restarts: How often Ray restarts a crashed actor.
        max_task_retries: How often a window that was running on a crashed actor is retried.
        runtime_env: Ray runtime environment for the actors (``env_vars``, ``pip``, ...).
        worker_writes: When the collection lives on a Qdrant server, the actors upsert their
            own points (the server URL must be reachable from every node); False: the driver
            writes everything. Embedded stores always have the driver write.
    """

    address: str | None = None
    actors: int = 2
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    max_restarts: int = 3
    max_task_retries: int = 3
    runtime_env: dict[str, Any] | None = None
    worker_writes: bool = True

    def __post_init__(self) -> None:
        """Validate the sizes before anything starts."""
        if not isinstance(self.actors, int) or isinstance(self.actors, bool) or self.actors < 1:
            msg = f"actors={self.actors!r}; expected a positive int"
            raise InvalidInputError(msg)
        for name in ("gpus_per_actor", "cpus_per_actor"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                msg = f"{name}={value!r}; expected a number >= 0"
                raise InvalidInputError(msg)


class RayEmbedder:
    """Embed windows of texts on a pool of Ray actors that share one context.

    Args:
        spec: How each actor loads the model.
        context: The shared context (made by the same weights).
        options: Pool sizing.
        prefix: The document prefix to use (None: the model's).

    Example:
        >>> with RayEmbedder(spec, context, RayOptions(actors=4)) as pool:  # doctest: +SKIP
        ...     for vectors in pool.imap(windows):
        ...         ...
    """

    def __init__(
        self,
        spec: ModelSpec,
        context: CorpusContext,
        options: RayOptions | None = None,
        *,
        prefix: str | None = None,
    ) -> None:
        """Start (or join) Ray and create the actors; see the class docstring."""
        self.options = options or RayOptions()
        self.worker_writes = self.options.worker_writes
        self.ray = import_ray()
        self._owns_ray = not self.ray.is_initialized()
        if self._owns_ray:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry unless asked
            self.ray.init(address=self.options.address, log_to_driver=False)
        device = "cuda" if self.options.gpus_per_actor > 0 else "cpu"
        remote = self.ray.remote(
            num_cpus=self.options.cpus_per_actor,
            num_gpus=self.options.gpus_per_actor,
            max_restarts=self.options.max_restarts,
            max_task_retries=self.options.max_task_retries,
            runtime_env=self.options.runtime_env,
        )(EmbedWorker)
        # Held for the pool's lifetime and sent boxed with every call: an actor fetches the
        # bytes when it holds no context (first call, first call after a restart).
        self._context_ref = self.ray.put(context.to_bytes())
        self._box = [self._context_ref]
        self.fingerprint = context.fingerprint
        self.actors = [
            remote.remote(spec, None, context.fingerprint, prefix, device)
            for _ in range(self.options.actors)
        ]
        # Fail fast (and clearly) when an actor cannot load the model or refuses the context.
        seen = self.ray.get([actor.load.remote(self._box) for actor in self.actors])
        if any(fp != context.fingerprint for fp in seen):  # pragma: no cover - checked in actor
            msg = "a Ray actor embeds with another context"
            raise RuntimeError(msg)
        logger.info("%d Ray actors ready (context %s)", len(self.actors), self.fingerprint[:12])

    def __enter__(self) -> RayEmbedder:
        """Use as a context manager: the actors are released on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the actors."""
        self.close()

    def close(self) -> None:
        """Kill the actors; disconnect from Ray too when this pool was what connected.

        A Ray instance the caller started (or joined) with ``ray.init`` stays up for it.
        """
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self._owns_ray and self.ray.is_initialized():
            self._owns_ray = False
            self.ray.shutdown()

    def _dispatch(self, calls: Iterable[Callable[[Any], Any]]) -> Iterator[Any]:
        """Run each call (actor -> object ref) on the actors in turn; results in order.

        At most two calls per actor are in flight; ``calls`` is consumed lazily.
        """
        if not self.actors:
            msg = "this RayEmbedder is closed; create a new one"
            raise InvalidInputError(msg)
        pending: deque[Any] = deque()
        limit = 2 * len(self.actors)
        for turn, call in enumerate(calls):
            pending.append(call(self.actors[turn % len(self.actors)]))
            if len(pending) >= limit:
                yield self._get(pending.popleft())
        while pending:
            yield self._get(pending.popleft())

    def _get(self, ref: Any) -> Any:
        """The result of ``ref``; a cde-rag error raised in an actor is raised as itself."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, CDERagError):
                raise cause from exc
            raise

    def imap(self, windows: Iterable[Sequence[str]]) -> Iterator[npt.NDArray[np.float32]]:
        """Vectors of each window, in the order given; at most two windows per actor in flight.

        Windows are dealt to the actors in turn (equal-sized windows keep them evenly busy) and
        each is embedded whole by one actor. The iterable is consumed lazily, so a long stream
        of windows never sits in memory at once.
        """
        calls = (_remote("embed", list(window), self._box) for window in windows)
        for vectors in self._dispatch(calls):
            yield np.asarray(vectors, dtype=np.float32)

    def imap_write(
        self,
        windows: Iterable[tuple[Sequence[Any], list[str], list[dict[str, Any]]]],
        target: WriteTarget,
    ) -> Iterator[int]:
        """Embed each ``(ids, texts, payloads)`` window and let its actor upsert the points.

        Scheduled as :meth:`imap`; yields the number of points each window's actor wrote (and
        the server applied), in the order given. Each actor first connects to ``target`` and
        checks the collection (one request, no retries), so a server some node cannot reach
        fails before any window is embedded.

        Raises:
            QdrantUnavailableError: An actor cannot reach the server (checked first), or could
                not write through every retry.
            CollectionNotFoundError: The server has no such collection.
            RequestTooLargeError: One point exceeds the request limit.
        """
        target_ref = self.ray.put(target)  # one copy; Ray hands each call the value
        # Every actor connects once first: a URL some node cannot reach fails now, clearly.
        for check in [actor.check_target.remote(target_ref) for actor in self.actors]:
            self._get(check)
        calls = (_remote("write", *window, target_ref, self._box) for window in windows)
        for count in self._dispatch(calls):
            yield int(count)

    def embed(self, texts: Sequence[str], *, window: int = 512) -> npt.NDArray[np.float32]:
        """All vectors of ``texts`` (split into windows of ``window`` texts), in input order."""
        windows = [texts[i : i + window] for i in range(0, len(texts), window)]
        parts = list(self.imap(windows))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

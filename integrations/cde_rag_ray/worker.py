"""The work one Ray actor does: load the model once, check the shared context, embed (and write).

An actor receives the context as safetensors bytes through Ray's object store (one copy per
node, not per task), decodes it with full validation and refuses it when its fingerprint is not
the one the driver announced or the context was made by other weights. Every later call embeds
with that decoded tensor, so all actors of a job use bit-identical dataset embeddings.

The object reference travels with every call, boxed in a one-element list (Ray passes a nested
reference on without fetching it), and an actor fetches the bytes only when it has no context
yet: on its first call, and on the first call after Ray restarted it. The actor's constructor
therefore takes nothing from the object store, so a restart never depends on an object that
might be gone (and Ray has nothing to warn about).

:meth:`EmbedWorker.embed` returns the vectors to the driver. :meth:`EmbedWorker.write` (used
when the collection lives on a Qdrant server) embeds a window and upserts its points itself
through :class:`cde_rag_qdrant.worker_writes.PointWriter`: the points the driver would have
built, sent with the collection's upload rules (batch size, request-size split, retries of
transient failures, parallel streams) by a client the actor creates on its first write; only
the count goes back to the driver.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cde_rag import CDEEncoder, CorpusContext
from cde_rag.errors import ContextMismatchError, InvalidInputError

if TYPE_CHECKING:
    from cde_rag_qdrant.worker_writes import PointWriter, WriteTarget

logger = logging.getLogger(__name__)

CRASH_ENV = "CDE_RAG_TEST_RAY_CRASH"
"""Test hook: ``"<marker file>:<call number>"``. The first actor to reach that call number
creates the marker and dies with ``os._exit`` (a hard crash, as a lost node would look); the
marker makes it happen once per job, so Ray's restart and retry can be observed."""

CRASH_WRITTEN_ENV = "CDE_RAG_TEST_RAY_CRASH_WRITTEN"
"""Test hook, as :data:`CRASH_ENV` but in :meth:`EmbedWorker.write` after the first upsert of
that call's window: the window is then partly stored when the actor dies."""


@dataclass(frozen=True)
class ModelSpec:
    """How every actor loads the model: a hub id or a folder every node can read, plus options.

    Attributes:
        name_or_path: ``"jxm/cde-small-v2"`` or a path present on every node.
        options: Keyword arguments for :meth:`CDEEncoder.from_pretrained` (``device`` is
            chosen per actor: ``"cuda"`` when the actor holds a GPU, else ``"cpu"``).
        threads: ``torch.set_num_threads`` inside each actor (None: torch's default).
    """

    name_or_path: str
    options: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None


def _maybe_crash(calls: int, env: str = CRASH_ENV) -> None:
    spec = os.environ.get(env)
    if not spec:
        return
    marker, _, number = spec.rpartition(":")
    if calls != int(number):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # this job already crashed once
    os.close(fd)
    logger.warning("test hook %s: killing this actor at call %d", env, calls)
    os._exit(1)


class EmbedWorker:
    """One model and one validated context; embeds (and writes) windows (Ray actor body).

    Args:
        spec: How to load the model.
        context: The shared context as ``CorpusContext.to_bytes()``, an object reference to
            those bytes, or a one-element list holding that reference (a "box"): decoded now;
            or None: decoded from the box the first call brings.
        fingerprint: The fingerprint the driver announced; the decoded bytes must match it.
        prefix: The document prefix the collection records (None: the model's).
        device: ``"cpu"`` or ``"cuda"``.

    Raises:
        ContextMismatchError: The bytes decode to another fingerprint, or the context was made
            by other weights than the model this actor loaded (here or on the first call).
    """

    def __init__(
        self,
        spec: ModelSpec,
        context: bytes | Any,
        fingerprint: str,
        prefix: str | None = None,
        device: str = "cpu",
    ) -> None:
        """Load the model (and the context, when given); see the class docstring."""
        import torch

        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        options = {k: v for k, v in spec.options.items() if k != "device"}
        self.encoder = CDEEncoder.from_pretrained(spec.name_or_path, device=device, **options)
        self.announced = fingerprint
        self.context: CorpusContext | None = None
        if context is not None:
            self._decode(context)
        self.prefix = prefix
        self.calls = 0
        self._writer: PointWriter | None = None

    def _decode(self, context: bytes | Any) -> CorpusContext:
        if isinstance(context, list | tuple):  # a box: the reference itself
            context = context[0]
        if not isinstance(context, bytes):  # an object reference (Ray Data, boxes)
            import ray

            context = ray.get(context)
        decoded = CorpusContext.from_bytes(context)
        if decoded.fingerprint != self.announced:
            msg = (
                f"the context this Ray actor received has fingerprint "
                f"{decoded.fingerprint[:12]}, the driver announced {self.announced[:12]}; "
                "the object store returned other bytes: re-run the job"
            )
            raise ContextMismatchError(msg)
        decoded.check_compatible(self.encoder)
        self.context = decoded
        return decoded

    def _context(self, box: Any | None) -> CorpusContext:
        if self.context is not None:
            return self.context
        if box is None:
            msg = (
                "this Ray actor holds no context yet (a restarted actor starts without one); "
                "pass the boxed context reference with the call, as RayEmbedder does"
            )
            raise InvalidInputError(msg)
        return self._decode(box)

    def load(self, context: Any | None = None) -> str:
        """Decode ``context`` (a box) unless one is held; the held context's fingerprint."""
        return self._context(context).fingerprint

    def fingerprint(self) -> str:
        """The fingerprint of the context this actor embeds with.

        Raises:
            InvalidInputError: No context was loaded yet.
        """
        return self._context(None).fingerprint

    def embed(self, texts: Sequence[str], context: Any | None = None) -> npt.NDArray[np.float32]:
        """Document vectors of ``texts`` under the shared context (unit norm, float32).

        ``context`` is the boxed reference, decoded only when this actor holds no context.
        """
        self.calls += 1
        _maybe_crash(self.calls)
        held = self._context(context)
        return self.encoder.embed_documents(
            list(texts), held, show_progress_bar=False, prefix=self.prefix
        )

    def write(
        self,
        ids: Sequence[Any],
        texts: Sequence[str],
        payloads: Sequence[dict[str, Any]],
        target: WriteTarget,
        context: Any | None = None,
    ) -> int:
        """Embed one window and upsert its points to ``target``; returns the count written.

        The first call (and the first with another target) creates this actor's Qdrant client;
        later calls reuse it. Ids are deterministic, so a window retried after a crash rewrites
        the same points.
        """
        vectors = self.embed(texts, context)
        writer = self._writer_for(target)
        calls = self.calls

        def sent(_: int) -> None:
            _maybe_crash(calls, CRASH_WRITTEN_ENV)

        return writer.write(ids, texts, vectors, payloads, on_sent=sent)

    def _writer_for(self, target: WriteTarget) -> PointWriter:
        from cde_rag_qdrant.worker_writes import PointWriter

        if self._writer is None or self._writer.target != target:
            if self._writer is not None:
                self._writer.close()
            self._writer = PointWriter(target)
        return self._writer

    def check_target(self, target: WriteTarget) -> None:
        """Connect to ``target`` and check its collection before any window (no retries).

        Raises:
            QdrantUnavailableError: This node cannot reach the server, or the key is refused.
            CollectionNotFoundError: The server has no such collection.
        """
        self._writer_for(target).check()


def model_spec_for(encoder_path: str | Path, **options: Any) -> ModelSpec:
    """A :class:`ModelSpec` for a hub id or folder (folders become absolute paths)."""
    path = Path(encoder_path)
    name = str(path.resolve()) if path.exists() else str(encoder_path)
    threads = options.pop("threads", None)
    return ModelSpec(name, options, threads)

"""Points written by workers (Ray actors) straight to a Qdrant server, by the driver's rules.

When a collection lives on a server, a worker that embedded a window can upsert it itself
instead of shipping the vectors back to one driver whose upload bandwidth would cap the job.
The driver hands each worker a :class:`WriteTarget` (how to connect, which collection, the
collection's :class:`~cde_rag_qdrant._upload.UploadOptions`, the batch size and the sparse
encoder of a hybrid collection) with every window; the worker's :class:`PointWriter` builds
the points with the same function the driver uses and sends them through the same uploader
(request-size split, ``tenacity`` retries of transient failures, parallel streams), so the
stored points are the ones a single process would have written. An embedded store (a folder
or ``:memory:``) allows one writer: :func:`write_target` returns None for it and the driver
writes, as before.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from cde_rag_qdrant._qdrant_internals import server_options
from cde_rag_qdrant._upload import TRANSIENT_STATUS, Uploader, UploadOptions, batched_points
from cde_rag_qdrant.errors import (
    CollectionConfigError,
    CollectionNotFoundError,
    QdrantUnavailableError,
)
from cde_rag_qdrant.sparse import SparseEncoder

__all__ = ["PointWriter", "WriteTarget", "write_target"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteTarget:
    """Where and how a worker writes the points of its windows.

    Attributes:
        client_options: Keyword arguments of ``QdrantClient`` for the server (url or host,
            port, api key, timeout, ...); not shown in ``repr`` (it holds the API key).
        collection_name: The collection (or alias) to upsert into.
        upload: The collection's upload rules (request size, retries, parallel streams).
        batch_size: Points per upsert.
        sparse: The sparse encoder of a hybrid collection (None: dense only).
    """

    client_options: Mapping[str, Any] = field(repr=False)
    collection_name: str
    upload: UploadOptions
    batch_size: int
    sparse: SparseEncoder | None = None

    @property
    def where(self) -> str:
        """The server, for messages (never the API key)."""
        opts = self.client_options
        url = opts.get("url") or f"{opts.get('host')}:{opts.get('port')}"
        return f"{url} (collection {self.collection_name!r})"


def write_target(
    client: QdrantClient,
    collection_name: str,
    *,
    upload: UploadOptions,
    batch_size: int,
    sparse: SparseEncoder | None,
) -> WriteTarget | None:
    """The target workers write to for ``client``'s server; None for an embedded store."""
    options = server_options(client)
    if options is None:
        return None
    return WriteTarget(options, collection_name, upload, batch_size, sparse)


@contextmanager
def _portable_errors(target: WriteTarget, n_points: int, what: str = "") -> Iterator[None]:
    """Turn qdrant-client's HTTP errors into cde-rag errors that survive the trip to the driver.

    ``UnexpectedResponse`` cannot be rebuilt from a pickle (Ray would hand the driver an
    ``UnserializableException``); the cde-rag errors take one message and can.
    """
    try:
        yield
    except UnexpectedResponse as exc:
        what = what or f"a worker could not write {n_points} points to {target.where}"
        body = exc.content.decode("utf-8", "replace")[:300]
        status = exc.status_code
        if status is None or status in TRANSIENT_STATUS or status in (401, 403):
            msg = (
                f"{what}: HTTP {status} {exc.reason_phrase} ({body}) after "
                f"{target.upload.retries} retries. Check the server's health and API key, "
                "then run the same command again: written points are kept, the rest is redone."
            )
            raise QdrantUnavailableError(msg) from None
        if status == 404:
            msg = f"{what}: the server has no such collection (HTTP 404: {body})."
            raise CollectionNotFoundError(msg) from None
        msg = (
            f"{what}: the server refused the points (HTTP {status}: {body}); the collection's "
            "vector configuration does not match them."
        )
        raise CollectionConfigError(msg) from None


class PointWriter:
    """A worker's writer: one client (made on first use) and one uploader per target.

    Args:
        target: Where to write; a later :meth:`write` with another target reconnects.
    """

    def __init__(self, target: WriteTarget) -> None:
        """Remember the target; nothing connects before the first write."""
        self.target = target
        self._client: QdrantClient | None = None
        self._uploader: Uploader | None = None

    def _connect(self) -> Uploader:
        if self._uploader is None:
            self._client = QdrantClient(**self.target.client_options)
            self._uploader = Uploader(self._client, self.target.collection_name, self.target.upload)
            logger.info("worker writes to %s", self.target.where)
        return self._uploader

    def check(self) -> None:
        """Connect and ask the server for the collection once, before any window is embedded.

        One request, no retries: a URL that this node cannot reach (``localhost`` seen from
        another node, a firewall) or a refused API key is reported at once, not after a
        window's retries.

        Raises:
            QdrantUnavailableError: The server cannot be reached from this node, or refused
                the API key.
            CollectionNotFoundError: The server has no such collection.
        """
        target = self.target
        what = f"a Ray worker on {socket.gethostname()} could not check {target.where}"
        try:
            with _portable_errors(target, 0, what):
                self._connect()
                assert self._client is not None  # noqa: S101 (type narrowing): _connect made it
                exists = self._client.collection_exists(target.collection_name)
        except ResponseHandlingException as exc:
            msg = (
                f"a Ray worker on {socket.gethostname()} cannot reach the Qdrant server at "
                f"{target.where}: {exc}. The URL must be reachable from every node (not "
                "localhost): pass it as the nodes see it (--qdrant-url), or let the driver "
                "write (RayOptions(worker_writes=False))."
            )
            raise QdrantUnavailableError(msg) from None
        if not exists:
            msg = f"the Qdrant server at {target.where} has no such collection."
            raise CollectionNotFoundError(msg)

    def write(
        self,
        ids: Sequence[models.ExtendedPointId],
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
        payloads: Sequence[dict[str, Any]],
        *,
        on_sent: Callable[[int], None] | None = None,
    ) -> int:
        """Upsert one embedded window; returns the number of points written.

        The window's last request waits until the server applied everything sent so far, so
        a returned count means the points are stored and searchable.

        Args:
            ids: Point ids (deterministic: a retried window rewrites the same points).
            texts: The texts (for the sparse vectors of a hybrid collection).
            vectors: Their dense vectors.
            payloads: Their payloads.
            on_sent: Called with the number of points after each upsert (test hooks).

        Raises:
            RequestTooLargeError: One point exceeds the request limit.
            QdrantUnavailableError: The server stayed unreachable or overloaded (HTTP 408, 429,
                5xx) through every retry, or refused the API key.
            CollectionNotFoundError: The collection is not on the server.
            CollectionConfigError: The server refused the points (HTTP 400).
        """
        target = self.target
        chunks = list(
            batched_points(ids, texts, vectors, payloads, target.sparse, target.batch_size)
        )
        with _portable_errors(target, len(ids)):
            uploader = self._connect()
            for i, points in enumerate(chunks):
                uploader.send(points, wait_applied=i == len(chunks) - 1)
                if on_sent is not None:
                    on_sent(len(points))
            uploader.drain()
        return sum(len(points) for points in chunks)

    def close(self) -> None:
        """Stop the upload streams and close the client."""
        if self._uploader is not None:
            self._uploader.close()
            self._uploader = None
        if self._client is not None:
            self._client.close()
            self._client = None

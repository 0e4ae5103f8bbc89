"""A tiny Qdrant REST endpoint for tests: upserts land in an embedded client of the test.

It answers the requests a ``QdrantClient(url=...)`` makes to check a collection and upsert
points: ``GET /`` (the version check), ``GET /collections/{name}/exists`` and
``PUT /collections/{name}/points``. The body is parsed with
qdrant-client's own model (``models.PointsList``) and forwarded into the embedded client the
test's driver uses, so a test reads what the workers wrote with the driver's client. Each
upsert is recorded with its size, its ``wait`` flag and the process that sent it (from the
TCP peer, via ``/proc``); the first ``refuse`` upserts get a 503 (a counter, not timing).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from qdrant_client import QdrantClient, models

_POINTS = re.compile(r"^/collections/([^/]+)/points$")
_EXISTS = re.compile(r"^/collections/([^/]+)/exists$")


@dataclass(frozen=True)
class Upsert:
    """One upsert the endpoint applied."""

    collection: str
    ids: list[str]
    body_bytes: int
    wait: bool
    pid: int | None


def peer_pid(peer_port: int, server_port: int) -> int | None:
    """The pid of the local process whose TCP socket ``127.0.0.1:peer_port`` talks to us."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == peer_port and (
                int(remote.rsplit(":", 1)[1], 16) == server_port
            ):
                inode = fields[9]
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == wanted:
                    return int(proc.name)
        except OSError:
            continue
    return None


class FakeQdrant:
    """Serve on ``127.0.0.1`` (free port) in a thread; forward upserts into ``store``.

    Args:
        store: The embedded client the points go to.
        refuse: Answer the first ``refuse`` upserts with 503 Service Unavailable.
        on_upsert: Called (under the endpoint's lock) before each applied upsert.
    """

    def __init__(
        self,
        store: QdrantClient,
        *,
        refuse: int = 0,
        on_upsert: Callable[[Upsert], None] | None = None,
    ) -> None:
        self._upsert = store.upsert  # bound now: a test may spy on the driver's store.upsert
        self._exists = store.collection_exists
        self.refuse = refuse
        self.refused = 0
        self.on_upsert = on_upsert
        self.upserts: list[Upsert] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        self._pids: dict[int, int | None] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeQdrant:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _pid(self, peer_port: int) -> int | None:
        if peer_port not in self._pids:  # one lookup per connection (keep-alive)
            self._pids[peer_port] = peer_pid(peer_port, self._server.server_address[1])
        return self._pids[peer_port]

    def _apply(self, path: str, query: str, body: bytes, peer_port: int) -> tuple[int, Any]:
        match = _POINTS.match(path)
        if match is None:
            self.unexpected.append(path)
            return 404, {"status": {"error": f"not in the fake: {path}"}, "time": 0.0}
        with self._lock:
            if self.refused < self.refuse:
                self.refused += 1
                return 503, {"status": {"error": "overloaded (fake)"}, "time": 0.0}
            batch = models.PointsList.model_validate_json(body)
            wait = parse_qs(query).get("wait", ["false"])[0] == "true"
            record = Upsert(
                collection=match.group(1),
                ids=[str(p.id) for p in batch.points],
                body_bytes=len(body),
                wait=wait,
                pid=self._pid(peer_port),
            )
            if self.on_upsert is not None:
                self.on_upsert(record)
            self._upsert(record.collection, points=batch.points, wait=True)
            self.upserts.append(record)
            operation = len(self.upserts)
        result = {"operation_id": operation, "status": "completed"}
        return 200, {"result": result, "status": "ok", "time": 0.0}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                exists = _EXISTS.match(path)
                if path == "/":
                    version = importlib.metadata.version("qdrant-client")  # compatible
                    self._reply(200, {"title": "qdrant (fake)", "version": version})
                elif exists is not None:
                    found = fake._exists(exists.group(1))
                    self._reply(200, {"result": {"exists": found}, "status": "ok", "time": 0.0})
                else:
                    fake.unexpected.append(self.path)
                    self._reply(404, {"status": {"error": "not in the fake"}, "time": 0.0})

            def do_PUT(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, data = fake._apply(parts.path, parts.query, body, self.client_address[1])
                self._reply(status, data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet

        return Handler

"""Prometheus metrics of a server (one registry per app, so apps in one process never clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServerMetrics:
    """The counters and histograms exported at ``/metrics``.

    Attributes:
        registry: The Prometheus registry they live in.
        requests: ``cde_rag_requests_total{route, method, status}``.
        request_seconds: ``cde_rag_request_seconds{route}`` (handler time).
        inputs: ``cde_rag_inputs_total{model, input_type}`` texts embedded.
        tokens: ``cde_rag_tokens_total{model, input_type}`` tokens embedded (prefix included).
        batch_inputs: ``cde_rag_batch_inputs`` texts per encoder call.
        batch_requests: ``cde_rag_batch_requests`` requests coalesced into one encoder call.
        batch_seconds: ``cde_rag_batch_seconds`` time of one encoder call.
        queue_seconds: ``cde_rag_queue_seconds`` time a request waited for the encoder.
        queue_depth: ``cde_rag_queue_depth`` requests waiting now.
        context_reloads: ``cde_rag_context_reloads_total{model}`` collections re-read after a
            recontextualization.
    """

    def __init__(self) -> None:
        """Create the metrics in a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cde_rag_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "cde_rag_request_seconds", "Request handling time", ["route"], registry=r,
            buckets=_TIME_BUCKETS,
        )  # fmt: skip
        self.inputs = Counter(
            "cde_rag_inputs", "Texts embedded", ["model", "input_type"], registry=r
        )
        self.tokens = Counter(
            "cde_rag_tokens", "Tokens embedded (prefix included)", ["model", "input_type"],
            registry=r,
        )  # fmt: skip
        self.batch_inputs = Histogram(
            "cde_rag_batch_inputs", "Texts per encoder call", registry=r, buckets=_BATCH_BUCKETS
        )
        self.batch_requests = Histogram(
            "cde_rag_batch_requests", "Requests per encoder call", registry=r,
            buckets=_BATCH_BUCKETS,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "cde_rag_batch_seconds", "Time of one encoder call", registry=r, buckets=_TIME_BUCKETS
        )
        self.queue_seconds = Histogram(
            "cde_rag_queue_seconds", "Time waited for the encoder", registry=r,
            buckets=_TIME_BUCKETS,
        )  # fmt: skip
        self.queue_depth = Gauge("cde_rag_queue_depth", "Requests waiting", registry=r)
        self.context_reloads = Counter(
            "cde_rag_context_reloads", "Contexts re-read after a recontextualization", ["model"],
            registry=r,
        )  # fmt: skip

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

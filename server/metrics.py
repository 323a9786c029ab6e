"""Prometheus metrics of the detection server, served at ``http://HOST:PORT/metrics``.

- ``detect_requests_total{method, code}``: finished RPCs by method and gRPC status code name
  (a stream counts once, with the status it ended with).
- ``detect_request_latency_seconds{method}``: time from receiving an image to its response being
  ready (for streams, per image).
- ``detect_stage_seconds{stage}``: per image, ``decode``, ``queue``, ``inference`` (the whole
  batch's run) and ``postprocess``.
- ``detect_batch_size``: images per model call; ``detect_queue_depth``: requests waiting.
- ``detect_model_info{name, version, provider, precision}``: always 1; names the model and the
  ONNX Runtime execution provider in use.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """The server's metrics in their own registry (so several servers can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "detect_requests",
            "Finished RPCs by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "detect_request_latency_seconds",
            "Seconds from receiving an image to its response being ready.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "detect_stage_seconds",
            "Seconds per image in each stage: decode, queue, inference (whole batch), postprocess.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "detect_batch_size",
            "Images per model call.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "detect_queue_depth", "Requests waiting for a batch.", registry=self.registry
        )
        self.model = Gauge(
            "detect_model_info",
            "The loaded model and the ONNX Runtime execution provider in use (value 1).",
            ["name", "version", "provider", "precision"],
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint on a background thread; the port it listens on."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)

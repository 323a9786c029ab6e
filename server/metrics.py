"""Prometheus metrics of the detection server, served at ``http://HOST:PORT/metrics``.

- ``detect_requests_total{method, code}``: finished RPCs by method and gRPC status code name
  (a stream counts once, with the status it ended with). No model label: a request may name a
  model that does not exist, and label sets made from what clients send would grow without end.
- ``detect_request_latency_seconds{method, model, version}``: time from receiving an image to
  its response being ready (for streams, per image).
- ``detect_stage_seconds{stage, model, version}``: per image, ``decode``, ``queue``,
  ``inference`` (the whole batch's run) and ``postprocess``.
- ``detect_batch_size{model, version}``: images per model call; ``detect_queue_depth{model,
  version}``: requests waiting.
- ``detect_frames_dropped_total{model, version}``: stream frames answered ``dropped`` because
  their own ``deadline_ms`` could not be met.
- ``detect_model_info{name, version, provider, precision}``: 1 for each served model version;
  names the engine's provider in use.

A model version's series are removed when it is unloaded (`ServerMetrics.forget`), so reloads do
not pile up label sets.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
METHODS = ("Detect", "DetectStream")
STAGES = ("decode", "queue", "inference", "postprocess")


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
            ["method", "model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "detect_stage_seconds",
            "Seconds per image in each stage: decode, queue, inference (whole batch), postprocess.",
            ["stage", "model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "detect_batch_size",
            "Images per model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.dropped = Counter(
            "detect_frames_dropped",
            "Stream frames answered `dropped` because their deadline_ms could not be met.",
            ["model", "version"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "detect_queue_depth",
            "Requests waiting for a batch.",
            ["model", "version"],
            registry=self.registry,
        )
        self.model = Gauge(
            "detect_model_info",
            "Each served model version and the engine's provider in use (value 1).",
            ["name", "version", "provider", "precision"],
            registry=self.registry,
        )

    def forget(self, model: str, version: str, provider: str, precision: str) -> None:
        """Remove every series of an unloaded model version."""
        for metric, prefixes in (
            (self.latency, [(m,) for m in METHODS]),
            (self.stage, [(s,) for s in STAGES]),
            (self.batch_size, [()]),
            (self.dropped, [()]),
            (self.queue_depth, [()]),
        ):
            for prefix in prefixes:
                with contextlib.suppress(KeyError):
                    metric.remove(*prefix, model, version)
        with contextlib.suppress(KeyError):
            self.model.remove(model, version, provider, precision)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint on a background thread; the port it listens on."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)

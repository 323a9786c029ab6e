"""Prometheus metrics of `detect watch --metrics-port N` (`WatchMetrics`), on its own registry:

* ``detect_watch_events_total{camera, kind}``: events written (kind: ``centre:enter``,
  ``middle:cross-forward``, ``frozen:problem``, ...);
* ``detect_watch_camera_problem{camera, problem}``: 1 while a health problem is on
  (`detect.video.health`: dark, blurred, frozen, no_detections, fps, source, stalled),
  else 0;
* ``detect_watch_camera_fps{camera}``: processed frames/s over the last status interval;
* ``detect_watch_camera_coverage{camera}``: the share of its processed frames that went to the
  model (motion gating, `detect.video.motion`), and
  ``detect_watch_camera_inferred_age_seconds{camera}``: video seconds since the last one did;
* ``detect_watch_sink_delivered{sink}``, ``detect_watch_sink_refused{sink}``,
  ``detect_watch_sink_backlog{sink}``: what each sink delivered and refused for good in this
  run, and has left (refreshed at each status line);
* ``detect_watch_outbox_dropped``: undelivered events the outbox's bounds dropped (in the
  outbox file's life).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from detect.errors import ConfigError

if TYPE_CHECKING:
    from detect.video.summary import VideoSummary
    from detect.watch.delivery import Delivery


class WatchMetrics:
    """The site's metrics; `observe` each event, `refresh` at each status line."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "detect_watch_events", "Events written", ["camera", "kind"], registry=r
        )
        self.problem = Gauge(
            "detect_watch_camera_problem",
            "1 while a camera health problem is on",
            ["camera", "problem"],
            registry=r,
        )
        self.fps = Gauge(
            "detect_watch_camera_fps", "Processed frames/s, last interval", ["camera"], registry=r
        )
        self.coverage = Gauge(
            "detect_watch_camera_coverage",
            "Share of processed frames the model ran on",
            ["camera"],
            registry=r,
        )
        self.inferred_age = Gauge(
            "detect_watch_camera_inferred_age_seconds",
            "Video seconds since the last frame the model ran on",
            ["camera"],
            registry=r,
        )
        self.delivered = Gauge(
            "detect_watch_sink_delivered", "Events a sink delivered", ["sink"], registry=r
        )
        self.refused = Gauge(
            "detect_watch_sink_refused", "Events a sink refused for good", ["sink"], registry=r
        )
        self.backlog = Gauge(
            "detect_watch_sink_backlog", "Events a sink has still to deliver", ["sink"], registry=r
        )
        self.dropped = Gauge(
            "detect_watch_outbox_dropped",
            "Undelivered events dropped by the outbox's bounds",
            registry=r,
        )

    def serve(self, port: int) -> int:
        """Start ``/metrics`` on ``port`` (0: any free; all addresses); the port it took."""
        try:
            server, _ = start_http_server(port, registry=self.registry)
        except OSError as exc:
            taken = "is in use" if exc.errno == errno.EADDRINUSE else f"fails ({exc.strerror})"
            raise ConfigError(
                f"metrics port {port} {taken}: pass --metrics-port N (0: any free port)"
            ) from None
        return int(server.server_port)

    def observe(self, record: dict[str, Any], kind: str) -> None:
        """Count a written event (``kind``: its place and kind, as in its id)."""
        camera = str(record.get("camera", ""))
        self.events.labels(camera, kind).inc()
        if "health" in record:
            on = 1 if record.get("event") == "problem" else 0
            self.problem.labels(camera, str(record["health"])).set(on)

    def refresh(
        self,
        fps: dict[str, float],
        summaries: dict[str, VideoSummary],
        delivery: Delivery | None,
    ) -> None:
        for camera, value in fps.items():
            self.fps.labels(camera).set(value)
        for camera, summary in summaries.items():
            self.coverage.labels(camera).set(summary.coverage)
            self.inferred_age.labels(camera).set(summary.inferred_age_s)
        if delivery is None:
            return
        left = delivery.left()
        for name, stats in delivery.stats.items():
            self.delivered.labels(name).set(stats.delivered)
            self.refused.labels(name).set(stats.refused)
            self.backlog.labels(name).set(left[name])
        self.dropped.set(delivery.outbox.dropped)

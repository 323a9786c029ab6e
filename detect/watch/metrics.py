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
* ``detect_watch_stage_seconds{camera, stage}``: a histogram of the seconds each frame spent in
  each stage of its camera's run (read, motion, queue, model, postprocess, tracking, counting,
  drawing, writing: `detect.video.stages`), as of the last status line;
* ``detect_watch_sink_delivered{sink}``, ``detect_watch_sink_refused{sink}``,
  ``detect_watch_sink_backlog{sink}``: what each sink delivered and refused for good in this
  run, and has left (refreshed at each status line);
* ``detect_watch_outbox_dropped``: undelivered events the outbox's bounds dropped (in the
  outbox file's life).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily

from detect.errors import ConfigError
from detect.video.stages import BUCKETS

if TYPE_CHECKING:
    from detect.video.summary import VideoSummary
    from detect.watch.delivery import Delivery


BOUNDS = [*map(str, BUCKETS), "+Inf"]


class _StageHistograms:
    """``detect_watch_stage_seconds`` from the cameras' summaries (their `StageTimes`), read at
    each scrape: the histograms are kept by the runs themselves, so a camera on Ray has them
    too."""

    def __init__(self) -> None:
        self.summaries: dict[str, VideoSummary] = {}

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "detect_watch_stage_seconds",
            "Seconds per frame in each stage of a camera's run",
            labels=["camera", "stage"],
        )
        for camera, summary in dict(self.summaries).items():
            for stage, (cumulative, total) in summary.stages.histograms().items():
                buckets = list(zip(BOUNDS, cumulative, strict=True))
                family.add_metric([camera, stage], buckets, total)
        yield family


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
        self.stages = _StageHistograms()
        r.register(self.stages)
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
        self.stages.summaries = dict(summaries)
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

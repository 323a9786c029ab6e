"""`StageTimes`: where a camera's frame time goes, stage by stage.

Stages, in a frame's order:

* ``read``: taking the next frame from the source: decoding it (a file), or waiting for it and
  decoding it (a live camera);
* ``motion``: the motion gate (`detect.video.motion`);
* ``queue``: waiting for the model: the local model's turn (another camera holds it) and a slot
  of the site's budget (`detect.video.budget`);
* ``model``: the model's run, preparing the image included (a local model), or the server's
  round trip (send, the server's own queue, model and post-processing, answer);
* ``postprocess``: a local model's masks pasted and traced to polygons, and its thresholds;
* ``tracking``: the tracker, colour histograms included;
* ``counting``: zones and lines, and the health checks;
* ``drawing``: the annotated frame of the MP4;
* ``writing``: the MP4, the JSONL line, the events with their pictures and clips.

Each stage keeps its total seconds and a histogram over `BUCKETS` (its counts add up to the
stage's observations): `detect.watch.metrics` serves them, cumulative as Prometheus has them,
as ``detect_watch_stage_seconds``; the summary gives the mean milliseconds per processed frame.
A frame the gate kept from the model adds nothing to ``queue``, ``model`` and ``postprocess``;
the means are per processed frame all the same, so that they add up to the frame's time.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

STAGES = (
    "read",
    "motion",
    "queue",
    "model",
    "postprocess",
    "tracking",
    "counting",
    "drawing",
    "writing",
)
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the histograms' buckets; a last one, +Inf, is implied."""


@dataclass
class StageTimes:
    """Seconds spent per stage (see the module docstring); safe to add to from several
    threads (a camera's reader and answer threads, `detect.video.remote.gated_stream`)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    buckets: dict[str, list[int]] = field(
        default_factory=lambda: {s: [0] * (len(BUCKETS) + 1) for s in STAGES}
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, seconds: float) -> None:
        """One observation of ``stage`` (one of `STAGES`)."""
        with self._lock:
            self.seconds[stage] += seconds
            self.buckets[stage][bisect.bisect_left(BUCKETS, seconds)] += 1

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def histograms(self) -> dict[str, tuple[list[int], float]]:
        """Each stage that ran: its cumulative bucket counts (`BUCKETS`, then +Inf) and its sum
        of seconds, as Prometheus's histograms have them (a consistent copy)."""
        with self._lock:
            return {
                s: (list(itertools.accumulate(self.buckets[s])), self.seconds[s])
                for s in STAGES
                if self._ran(s)
            }

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        """Mean milliseconds per processed frame in each stage that ran (``frames`` of them)."""
        if not frames:
            return {}
        return {s: round(1000 * t / frames, 3) for s, t in self.seconds.items() if self._ran(s)}

    def _ran(self, stage: str) -> bool:
        """Whether ``stage`` has an observation (its buckets count them)."""
        return any(self.buckets[stage])

    def __getstate__(self) -> dict:  # a camera's summary crosses processes on Ray
        with self._lock:  # a consistent copy while the run adds to it
            return {
                "seconds": dict(self.seconds),
                "buckets": {s: list(b) for s, b in self.buckets.items()},
            }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

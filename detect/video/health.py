"""Camera health (`HealthMonitor`): the problems operators ask for most, as events.

Each processed frame is measured on a 160x120 grey copy: ``brightness``, its mean grey level
(0-255), and ``sharpness``, the variance of its Laplacian.

Over the first ``health_baseline_s`` seconds of video the monitor learns the camera's own
brightness and sharpness (their medians). After that, every problem starts once its condition has
held for ``health_hold_s`` seconds of video, and it ends (``recovered``) once the condition has
been absent as long:
* ``dark``: brightness under ``health_dark`` x the camera's own (covered, lights out, failed IR);
* ``blurred``: sharpness under ``health_blur`` x its own, the picture not dark (defocused,
  fogged, smeared, a hand over the lens in daylight);
* ``frozen``: the picture unchanged (`STILL`) for ``health_frozen_s`` seconds, the picture not
  dark (a stuck encoder or a replayed still); a real sensor always has some noise, so a picture
  this still is not a live one;
* ``no_detections``: nothing detected for ``health_quiet_s`` seconds (0: never checked);
* ``fps``: a live camera processed under ``health_fps`` x its sampling rate (``target_fps``, or
  the stream's rate over ``every``) over the last ``FPS_WINDOW_S`` seconds of wall clock (a slow
  server, a starved machine, a stream that stutters).

A problem's events are ``{"health": KIND, "event": "problem" | "recovered", "frame", "timestamp_ms",
"value", "baseline"}``: brightness or sharpness against the camera's own; for ``frozen`` and
``no_detections`` the seconds so far against the limit; for ``fps`` the rate against the
sampling rate. Times are the video's (``timestamp_ms``), so a file is judged as a live camera
would be, except the frame rate's window, which is the wall clock's. Two problems of a live
camera come from the frame source itself (`detect.video.source.FrameSource`): ``source`` (the
stream lost, then reopened) and ``stalled`` (the stream open but giving no frame for
``health_stalled_s`` seconds of wall clock: ``value`` the seconds waited, ``baseline`` the limit;
it ends at the next frame).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from detect.settings import at_least, between, setting

FPS_WINDOW_S = 10.0
SIZE = (160, 120)
STILL = 0.05
"""Frozen: the grey copies of two frames differ by under this on average. A stuck stream that is
re-encoded differs by 0.001-0.033 (H.264's drift and its key frames); a live sensor's noise of
2 grey levels, averaged down to 160x120, by about 0.2 at 1080p and 0.1 at 4K."""


@dataclass(frozen=True)
class HealthSettings:
    """A camera's health thresholds (camera keys; see `detect.video.health`)."""

    health: bool = setting(
        False, "report camera problems as events (on a site: default true)", flag=""
    )
    health_baseline_s: float = setting(
        5.0, "seconds of video that set the camera's own brightness and sharpness", flag="",
        check=at_least(0.1),
    )  # fmt: skip
    health_hold_s: float = setting(
        1.0, "seconds a problem (or its absence) must last to be reported", flag="",
        check=at_least(0),
    )  # fmt: skip
    health_dark: float = setting(
        0.35, "dark: brightness under this share of the camera's own", flag="", check=between(0, 1)
    )
    health_blur: float = setting(
        0.2, "blurred: sharpness under this share of the camera's own", flag="",
        check=between(0, 1),
    )  # fmt: skip
    health_frozen_s: float = setting(
        10.0, "frozen: the picture unchanged this many seconds (0: never)", flag="",
        check=at_least(0),
    )  # fmt: skip
    health_fps: float = setting(
        0.5, "fps: a live camera processing under this share of its sampling rate (0: never)",
        flag="", check=between(0, 1),
    )  # fmt: skip
    health_stalled_s: float = setting(
        10.0, "stalled: a live camera's open stream giving no frame this many seconds (0: never)",
        flag="", check=at_least(0),
    )  # fmt: skip
    health_quiet_s: float = setting(
        0.0, "no_detections: nothing detected this many seconds (0: never)", flag="",
        check=at_least(0),
    )  # fmt: skip


@dataclass
class _Problem:
    """One kind of problem: whether it is on, and since when its condition has been otherwise."""

    on: bool = False
    since: float | None = None  # when the condition last flipped against ``on`` (seconds)


@dataclass
class HealthMonitor:
    """Feeds on each processed frame (`update`); the health events it confirms."""

    settings: HealthSettings
    _learning: list[tuple[float, float]] = field(default_factory=list)
    _baseline: tuple[float, float] | None = None
    _previous: np.ndarray | None = None
    _still_since: float | None = None
    _seen_at: float | None = None  # when something was last detected
    _start: float | None = None
    _problems: dict[str, _Problem] = field(default_factory=dict)
    _processed: deque[float] = field(default_factory=deque)  # wall-clock times, last window

    def update(
        self,
        frame: np.ndarray,
        index: int,
        timestamp_ms: float,
        detected: int,
        wall: float,
        expected_fps: float | None,
    ) -> list[dict[str, Any]]:
        """Measure ``frame`` (``(H, W, 3) uint8`` BGR) at ``timestamp_ms`` with its number of
        detections, processed at ``wall`` (seconds, monotonic), for a camera that should process
        ``expected_fps`` (None: no frame rate to keep, a file); the problems that start or end
        here, as events."""
        s = self.settings
        now = timestamp_ms / 1000.0
        grey = cv2.cvtColor(
            cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )
        brightness = float(grey.mean())
        sharpness = float(cv2.Laplacian(grey, cv2.CV_32F).var())
        same = False
        if self._previous is not None:
            same = float(np.abs(grey.astype(np.int16) - self._previous).mean()) < STILL
        self._previous = grey.astype(np.int16)
        if self._start is None:
            self._start = self._seen_at = now
        if detected:
            self._seen_at = now
        if self._baseline is None:
            self._learning.append((brightness, sharpness))
            if now - self._start >= s.health_baseline_s:
                self._baseline = (
                    statistics.median(b for b, _ in self._learning),
                    statistics.median(v for _, v in self._learning),
                )
            return []
        bright0, sharp0 = self._baseline
        dark = brightness < s.health_dark * bright0
        if not same or dark:
            self._still_since = None
        elif self._still_since is None:
            self._still_since = now
        frozen = (
            s.health_frozen_s > 0
            and self._still_since is not None
            and now - self._still_since >= s.health_frozen_s
        )
        assert self._seen_at is not None
        unseen = now - self._seen_at
        quiet = s.health_quiet_s > 0 and unseen >= s.health_quiet_s
        self._processed.append(wall)
        while wall - self._processed[0] > FPS_WINDOW_S:
            self._processed.popleft()
        rate = 0.0
        slow = self._problems.get("fps", _Problem()).on  # too little history: as it was
        if expected_fps and s.health_fps > 0 and wall - self._processed[0] >= FPS_WINDOW_S * 0.9:
            rate = (len(self._processed) - 1) / max(wall - self._processed[0], 1e-9)
            slow = rate < s.health_fps * expected_fps
        still = now - self._still_since if self._still_since is not None else 0.0
        checks = {
            "dark": (dark, brightness, bright0),
            "blurred": (not dark and sharpness < s.health_blur * sharp0, sharpness, sharp0),
            "frozen": (frozen, still, s.health_frozen_s),
            "no_detections": (quiet, unseen, s.health_quiet_s),
            "fps": (slow, rate, expected_fps or 0.0),
        }
        events = []
        hold = s.health_hold_s
        for kind, (condition, value, baseline) in checks.items():
            problem = self._problems.setdefault(kind, _Problem())
            if condition == problem.on:
                problem.since = None
                continue
            if problem.since is None:
                problem.since = now
            if now - problem.since >= hold:
                problem.on, problem.since = condition, None
                events.append(
                    {
                        "health": kind,
                        "event": "problem" if condition else "recovered",
                        "frame": index,
                        "timestamp_ms": round(timestamp_ms, 3),
                        "value": round(value, 3),
                        "baseline": round(baseline, 3),
                    }
                )
        return events

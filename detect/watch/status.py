"""`StatusBoard`: a status line per camera on stderr."""

from __future__ import annotations

import time
from typing import Protocol, TextIO

from detect.video.summary import VideoSummary


class Shown(Protocol):
    """A camera as the board shows it (`detect.watch.camera.CameraWorker`, or on Ray the
    driver's view of a camera actor)."""

    @property
    def summary(self) -> VideoSummary: ...

    def status(self, fps: float) -> str: ...


class StatusBoard:
    """A status line per camera on stderr: redrawn in place every second on a terminal, else
    printed every ``every`` seconds. Frames per second are over the last interval."""

    def __init__(self, workers: list[Shown], every: float, stream: TextIO) -> None:
        self.workers = workers
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 1.0 if self.tty else every
        self._last = (time.monotonic(), [0] * len(workers))
        self._drawn = 0
        self.fps = [0.0] * len(workers)  # each camera's processed frames/s over the last tick

    def tick(self) -> None:
        now = time.monotonic()
        then, counts = self._last
        current = [w.summary.frames_processed for w in self.workers]
        elapsed = max(now - then, 1e-9)
        self.fps = [(c - p) / elapsed for c, p in zip(current, counts, strict=True)]
        rows = [w.status(fps) for w, fps in zip(self.workers, self.fps, strict=True)]
        self._last = (now, current)
        if self.tty:  # back to the first line of the last drawing, each line cleared
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{row}\n" for row in rows))
        else:
            self.stream.write("".join(f"status {row}\n" for row in rows))
        self.stream.flush()
        self._drawn = len(rows)

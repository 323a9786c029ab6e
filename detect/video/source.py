"""Frames of a video file, stream or webcam, sampled, reconnecting (OpenCV).

Sources: a file, an ``rtsp://`` / ``http(s)://`` URL, or a webcam index. Sampling: every
``every``-th frame, or ``target_fps`` frames per second of video time; ``realtime``: a reader
thread keeps only the newest frame and processing takes whatever is newest (a file is read at
its own frame rate), so a slow detector drops frames instead of lagging. A stream that fails is
reopened up to ``reconnect`` times (None: for ever) with growing pauses (`backoff`), then
iteration ends; a live source that does not open at first is retried the same way, then its
error is raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from detect.errors import DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts")
"""Suffixes (lower case) of the files taken as video clips when a folder or a glob pattern is
listed (`detect.runtime.sources.list_files`)."""


class Sampling(Protocol):
    """The source settings `FrameSource` reads (`detect.video.config.VideoConfig` has them)."""

    source: str
    every: int
    target_fps: float | None
    realtime: bool
    reconnect: int | None
    max_frames: int | None


@dataclass
class SourceCounts:
    """What the source side of a run counts: frames read, frames dropped by the real-time reader
    (its thread counts them), reopenings, and why the frames ended. `FrameSource` writes them
    (and `open_source`, retrying a live source that does not open);
    `detect.video.summary.VideoSummary` reads them."""

    frames_read: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    stopped: str = "end of source"


def _cannot_open(source: str, tries: int = 1) -> str:
    """Why ``source`` did not open (after ``tries`` attempts), and what to check."""
    tried = f" (tried {tries} times)" if tries > 1 else ""
    if source.isdecimal():
        return (
            f"no camera at index {source}{tried}: check the index (the N of /dev/videoN), that "
            "the camera is plugged in and that no other program holds it"
        )
    if "://" in source:
        return (
            f"could not connect to stream {source}{tried}: check the URL, and that the camera "
            "is on and reachable from here"
        )
    return f"cannot open video {source}: OpenCV cannot read it (corrupt or unsupported?)"


def _open(source: str) -> cv2.VideoCapture:
    """The source opened once; a `DataError` saying what it is and what to check otherwise."""
    if source.isdecimal():
        capture = cv2.VideoCapture(int(source))
    else:
        if not is_live(source) and not Path(source).is_file():
            raise DataError(
                f"video {source} not found; give a file, a stream URL or a webcam index"
            )
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise DataError(_cannot_open(source))
    return capture


def _say_retry(attempt: int, text: str, *args: object) -> None:
    """A retry's line: the first of a series (``attempt`` 1) a warning, the others info lines
    (shown with --verbose), so that a source that stays away does not flood the log."""
    log.log(logging.WARNING if attempt == 1 else logging.INFO, text, *args)


def open_source(
    config: Sampling, counts: SourceCounts, stopped: threading.Event
) -> cv2.VideoCapture | None:
    """The source opened. A live one that does not open is tried again as a lost one is
    reopened (``config.reconnect`` times, None: for ever, `backoff` pauses, each counted in
    ``counts.reconnects``), with one warning and one line when it opens; its `DataError` when
    the attempts run out. None when ``stopped`` is set meanwhile."""
    limit, attempt = config.reconnect, 0
    while True:
        try:
            capture = _open(config.source)
        except DataError as exc:
            if not is_live(config.source) or not attempts_left(attempt, limit):
                if attempt:
                    raise DataError(_cannot_open(config.source, attempt + 1)) from None
                raise
            pause = backoff(attempt)
            attempt += 1
            _say_retry(
                attempt, "%s; retrying in %g s (%s)", exc, pause, attempt_label(attempt, limit)
            )
            counts.reconnects += 1
            if stopped.wait(pause):
                return None
            continue
        if attempt:
            log.warning("%s opened (%s)", config.source, attempt_label(attempt, limit))
        return capture


def is_live(source: str) -> bool:
    """Whether ``source`` is a stream or a webcam (reconnected when it drops), not a file."""
    return "://" in source or source.isdecimal()


def backoff(attempt: int) -> float:
    """Seconds to wait before reopening attempt ``attempt`` (0-based): 0.5, 1, 2, 4, 8, 8, ..."""
    return min(0.5 * 2**attempt, 8.0)


def attempts_left(attempt: int, limit: int | None) -> bool:
    """Whether attempt ``attempt`` (0-based) may be made; ``limit`` None: for ever."""
    return limit is None or attempt < limit


def attempt_label(attempt: int, limit: int | None) -> str:
    """How a warning names attempt ``attempt`` (1-based): ``2/5``, or ``attempt 2``."""
    return f"{attempt}/{limit}" if limit is not None else f"attempt {attempt}"


class FrameSource:
    """Frames of the source with their index and timestamp (ms), sampled, reconnecting.

    Iterating yields ``(index, timestamp_ms, frame (H, W, 3) uint8 BGR)`` for the frames to
    process; ``counts`` counts what was read and dropped (a new `SourceCounts`, or the one
    given). ``stop`` ends the iteration. Opening a live source retries it (`open_source`);
    ``cancel`` set meanwhile gives a source with nothing to read. ``skip_through``: frames up to
    this index are read and sampled (they count towards ``max_frames``) but not yielded: a run
    resumed after its last written frame (`detect.watch` on Ray).
    """

    def __init__(
        self,
        config: Sampling,
        counts: SourceCounts | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.counts = counts if counts is not None else SourceCounts()
        self.live = is_live(config.source)
        self.stopped = threading.Event()
        capture = open_source(config, self.counts, cancel or self.stopped)
        if capture is None:  # cancelled while opening: nothing to read
            capture = cv2.VideoCapture()
            self.stopped.set()
        self.capture = capture
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.size = (
            int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.total = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.live else 0
        self._reconnecting = 0  # reopenings under way: the source's, the server stream's
        self.lost = False  # a live source gave up after its reconnect attempts
        # camera health (`detect.video.health`): told when a live stream is lost and reopened,
        # and when it gives no frame for ``stall_s`` seconds (0: never) and then gives one
        self.on_health: Callable[[dict[str, Any]], None] | None = None
        self.stall_s = 0.0
        self._asked_at: float | None = None  # when the read under way started (monotonic)
        self._stalled = False
        self._index = 0
        self.skip_through = -1
        # OpenCV's FFmpeg decoder must not be used from two threads at once (it aborts the
        # process): reads may come from gRPC's request thread or the real-time reader while
        # the main thread closes the source.
        self._lock = threading.Lock()
        self._lock_flags = threading.Lock()
        self._closed = False

    def stop(self, reason: str) -> None:
        """End the iteration after the frame in hand; ``reason`` goes to the counts unless
        something else ended it first."""
        if not self.stopped.is_set():
            self.counts.stopped = reason
        self.stopped.set()

    def _read(self) -> tuple[int, float, np.ndarray] | None:
        """The next frame of the source (reconnecting live sources), or None at its end."""
        while not self.stopped.is_set():
            with self._lock:
                if self._closed:
                    return None
                self._asked_at = time.monotonic()
                ok, frame = self.capture.read()
                self._asked_at = None
            if ok and frame is not None:
                if self._stalled:
                    self._stalled = False
                    self._health("recovered", "stalled")
                index = self._index
                self._index += 1
                self.counts.frames_read += 1
                if self.fps > 0:
                    timestamp = 1000.0 * index / self.fps
                else:
                    timestamp = self.capture.get(cv2.CAP_PROP_POS_MSEC)
                return index, timestamp, frame
            if not self.live or not self._reconnect():
                if self.counts.frames_read == 0:
                    raise DataError(
                        f"no frame could be read from {self.config.source}; is it a video?"
                    )
                return None
        return None

    def _reconnect(self) -> bool:
        with self.reconnection():
            self._health("problem", "source")
            back = self._reopen()
            if back:
                self._health("recovered", "source")
            return back

    def _health(self, kind: str, problem: str, waited: float | None = None) -> None:
        """Tell ``on_health`` that ``problem`` (``source``: the stream was lost; ``stalled``:
        it gave no frame for ``waited`` seconds) started or ended (``kind``)."""
        if self.on_health is not None:
            at = 1000.0 * self._index / self.fps if self.fps > 0 else 0.0
            event = {"health": problem, "event": kind, "frame": self._index, "timestamp_ms": at}
            if waited is not None:
                event |= {"value": round(waited, 3), "baseline": self.stall_s}
            self.on_health(event)

    def _watch_stalls(self) -> None:
        """A live source's ``stalled`` problem: a read of the open stream waiting ``stall_s``
        seconds of wall clock for its frame (a reopening is a ``source`` problem; a camera held
        back by a slow model is not asked); it ends at the next frame."""
        while not self.stopped.wait(min(0.25, self.stall_s / 4)):
            asked = self._asked_at
            waited = time.monotonic() - asked if asked is not None else 0.0
            if not self._stalled and waited >= self.stall_s:
                self._stalled = True
                self._health("problem", "stalled", waited)

    @property
    def reconnecting(self) -> bool:
        """Whether the source, or the server's stream (`detect.video.remote`), is being
        reopened now."""
        return self._reconnecting > 0

    @contextlib.contextmanager
    def reconnection(self) -> Iterator[None]:
        """Marks a reopening under way (for status lines) while the block runs."""
        with self._lock_flags:
            self._reconnecting += 1
        try:
            yield
        finally:
            with self._lock_flags:
                self._reconnecting -= 1

    def _reopen(self) -> bool:
        limit = self.config.reconnect
        attempt = 0
        while attempts_left(attempt, limit):
            pause = backoff(attempt)
            attempt += 1
            _say_retry(
                attempt,
                "%s dropped; reconnecting in %g s (%s)",
                self.config.source,
                pause,
                attempt_label(attempt, limit),
            )
            if self.stopped.wait(pause):
                return False
            with self._lock:
                if self._closed:
                    return False
                self.capture.release()
                self.capture = cv2.VideoCapture(self.config.source)
                opened = self.capture.isOpened()
            self.counts.reconnects += 1
            if opened:
                log.warning(
                    "%s reconnected (%s)", self.config.source, attempt_label(attempt, limit)
                )
                return True
        self.counts.stopped = f"stream lost after {limit} reconnect attempts"
        self.lost = True
        self.stopped.set()  # ended for good: a later stop() keeps this reason
        return False

    def planned(self) -> int | None:
        """How many frames iterating will yield if nothing stops it early: the file's frames
        as sampled, at most ``max_frames``; for a live source ``max_frames`` (None without it),
        and None when reading in real time (it drops frames) or when the file does not say
        how many frames (or, sampling by ``target_fps``, at what rate) it has."""
        limit = self.config.max_frames
        if self.live:
            return limit
        if self.config.realtime or self.total <= 0:
            return None
        if self.config.target_fps is None:
            sampled = -(-self.total // self.config.every)
        elif self.fps > 0:
            due = [0.0]
            sampled = sum(self._wanted(i, 1000.0 * i / self.fps, due) for i in range(self.total))
        else:
            return None
        return sampled if limit is None else min(sampled, limit)

    def sampling_fps(self) -> float | None:
        """The frames per second of video time that sampling keeps: ``target_fps`` (at most the
        stream's rate), or the stream's rate over ``every``; None when the stream does not say
        its rate."""
        if self.fps <= 0:
            return self.config.target_fps
        if self.config.target_fps is not None:
            return min(self.config.target_fps, self.fps)
        return self.fps / self.config.every

    def _wanted(self, index: int, timestamp: float, due: list[float]) -> bool:
        if self.config.target_fps is None:
            return index % self.config.every == 0
        if timestamp + 1e-6 < due[0]:
            return False
        due[0] += 1000.0 / self.config.target_fps
        return True

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        if self.live and self.on_health is not None and self.stall_s > 0:
            threading.Thread(target=self._watch_stalls, daemon=True, name="stalls").start()
        frames = self._realtime() if self.config.realtime else iter(self._read, None)
        due = [0.0]
        taken = 0
        for index, timestamp, frame in frames:
            if self.stopped.is_set():
                return
            if not self._wanted(index, timestamp, due):
                continue
            if self.config.max_frames is not None and taken >= self.config.max_frames:
                self.stop("--max-frames reached")
                return
            taken += 1
            if index <= self.skip_through:
                continue
            yield index, timestamp, frame

    def _realtime(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """Only the newest frame is kept; older unprocessed ones count as dropped."""
        latest: list[tuple[int, float, np.ndarray] | None] = [None]
        done = threading.Event()
        fresh = threading.Condition()
        error: list[BaseException] = []

        def reader() -> None:
            started = time.monotonic()
            try:
                while (item := self._read()) is not None:
                    if not self.live and self.fps > 0:  # a file plays at its own rate
                        delay = started + item[1] / 1000.0 - time.monotonic()
                        if delay > 0 and self.stopped.wait(delay):
                            break
                    with fresh:
                        if latest[0] is not None:
                            self.counts.frames_dropped += 1
                        latest[0] = item
                        fresh.notify()
            except BaseException as exc:
                error.append(exc)
            finally:
                done.set()
                with fresh:
                    fresh.notify()

        thread = threading.Thread(target=reader, daemon=True, name="frames")
        thread.start()
        try:
            while True:
                with fresh:
                    while latest[0] is None and not done.is_set():
                        fresh.wait(0.5)
                    item, latest[0] = latest[0], None
                if item is None:
                    break
                yield item
        finally:
            self.stopped.set()
            thread.join(timeout=5)
        if error:
            raise error[0]

    def close(self) -> None:
        """Release the source once no other thread is reading it."""
        self.stopped.set()
        with self._lock:
            self._closed = True
            self.capture.release()

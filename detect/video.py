"""`detect video SOURCE`: frames of a file, stream or webcam through a detector, with tracks,
zone and line counts, an annotated MP4, one JSONL line per processed frame, and a summary.

Sources: a file, an ``rtsp://`` / ``http(s)://`` URL, or a webcam index, read with OpenCV.
Inference: local (`Detector`, ``model``) or remote (``server``: one ``DetectStream`` call with up
to ``in_flight`` frames on their way; raw BGR pixels are sent, so both paths see the same
pixels). Sampling: every ``every``-th frame, or ``target_fps`` frames per second of video time.
``realtime``: a reader thread keeps only the newest frame and processing takes whatever is newest
(a file is read at its own frame rate), so a slow detector drops frames instead of lagging.

A stream that fails is reopened up to ``reconnect`` times with growing pauses (0.5 s, 1 s, 2 s,
... up to 8 s), then the run ends with its summary. An unavailable server (down at the start or
gone mid-run) is a clear error, or, with ``retry``, the stream is reopened after the same growing
pauses up to ``retry`` times in a row. SIGTERM/SIGINT end the run after the frame
in hand: the MP4 is finalised (playable) and every JSONL line is complete (each is flushed when
written).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from detect.errors import ConfigError, DataError
from detect.runtime.detector import Detection
from detect.runtime.draw import class_color, draw_detections
from detect.track import Tracker
from detect.zones import LineCounter, Tracked, Zones


@dataclass
class VideoConfig:
    """Settings of `detect video` (see the module docstring)."""

    source: str
    model: Path | None = None
    server: str | None = None
    every: int = 1
    target_fps: float | None = None
    realtime: bool = False
    track: bool = False
    zones: Path | None = None
    line: str | None = None
    out_video: Path | None = None
    jsonl: Path | None = None
    score: float | None = None
    classes: list[str] | None = None
    agnostic_nms: bool | None = None  # None: the model card's default
    polygons: bool = True
    device: str = "auto"
    reconnect: int = 5
    retry: int = 0
    in_flight: int = 4
    max_frames: int | None = None
    tls: bool = False
    ca: Path | None = None
    token: str | None = None

    def validate(self) -> None:
        if (self.model is None) == (self.server is None):
            raise ConfigError("give exactly one of --model (local) or --server (gRPC)")
        if self.every < 1:
            raise ConfigError(f"--every {self.every}: use 1 or more")
        if self.target_fps is not None and (self.target_fps <= 0 or self.every != 1):
            raise ConfigError("--target-fps needs a positive rate and cannot go with --every")
        if self.reconnect < 0 or self.retry < 0 or self.in_flight < 1:
            raise ConfigError("--reconnect and --retry must be 0 or more, --in-flight 1 or more")
        if self.score is not None and not 0 <= self.score <= 1:
            raise ConfigError(f"--score {self.score}: use 0 to 1")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames {self.max_frames}: use 1 or more")
        for flag, path in (("--out-video", self.out_video), ("--jsonl", self.jsonl)):
            if path is not None and path.is_dir():
                raise ConfigError(f"{flag} {path} is a folder; give a file name")
        if self.out_video is not None and self.out_video.suffix.lower() != ".mp4":
            raise ConfigError(f"--out-video {self.out_video}: name an .mp4 file")


@dataclass
class VideoSummary:
    """What a run did: frame counts, speed, classes, tracks, zone and line totals."""

    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    seconds: float = 0.0
    detections: Counter = field(default_factory=Counter)  # label -> detections
    tracks: dict[str, set[int]] = field(default_factory=dict)  # label -> track ids
    zones: dict[str, int] = field(default_factory=dict)  # "zone enter" -> count
    line: dict[str, int] = field(default_factory=dict)  # "forward car" -> count
    reconnects: int = 0
    stopped: str = "end of source"

    @property
    def fps(self) -> float:
        return self.frames_processed / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "detections": dict(self.detections),
            "tracks": {label: len(ids) for label, ids in self.tracks.items()},
            "unique_tracks": sum(len(ids) for ids in self.tracks.values()),
            "zones": self.zones,
            "line": self.line,
            "reconnects": self.reconnects,
            "stopped": self.stopped,
        }

    def lines(self) -> list[str]:
        d = self.as_dict()
        out = [
            f"frames: {d['frames_read']} read, {d['frames_processed']} processed, "
            f"{d['frames_dropped']} dropped; {d['fps']:.2f} processed frames/s; "
            f"stopped: {d['stopped']}",
            "detections: " + (", ".join(f"{k} {v}" for k, v in d["detections"].items()) or "none"),
        ]
        if self.tracks:
            per_class = ", ".join(f"{k} {v}" for k, v in d["tracks"].items())
            out.append(f"tracks: {d['unique_tracks']} ({per_class})")
        if self.zones:
            out.append("zones: " + ", ".join(f"{k} {v}" for k, v in self.zones.items()))
        if self.line:
            out.append("line: " + ", ".join(f"{k} {v}" for k, v in self.line.items()))
        return out


# --------------------------------------------------------------------------- reading frames


def _open(source: str) -> cv2.VideoCapture:
    if source.isdigit():
        capture = cv2.VideoCapture(int(source))
        what = f"webcam {source}"
    elif "://" in source:
        capture = cv2.VideoCapture(source)
        what = f"stream {source}"
    else:
        if not Path(source).is_file():
            raise DataError(
                f"video {source} not found; give a file, a stream URL or a webcam index"
            )
        capture = cv2.VideoCapture(source)
        what = f"video {source}"
    if not capture.isOpened():
        raise DataError(f"cannot open {what}: OpenCV cannot read it (corrupt or unsupported?)")
    return capture


def _backoff(attempt: int) -> float:
    """Seconds to wait before reopening attempt ``attempt`` (0-based): 0.5, 1, 2, 4, 8, 8, ..."""
    return min(0.5 * 2**attempt, 8.0)


class FrameSource:
    """Frames of the source with their index and timestamp (ms), sampled, reconnecting.

    Iterating yields ``(index, timestamp_ms, frame (H, W, 3) uint8 BGR)`` for the frames to
    process; ``summary`` counts what was read and dropped. ``stop`` ends the iteration.
    """

    def __init__(self, config: VideoConfig, summary: VideoSummary) -> None:
        self.config = config
        self.summary = summary
        self.live = "://" in config.source or config.source.isdigit()
        self.capture = _open(config.source)
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.size = (
            int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.total = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.live else 0
        self.stopped = threading.Event()
        self._index = 0
        # OpenCV's FFmpeg decoder must not be used from two threads at once (it aborts the
        # process): reads may come from gRPC's request thread or the real-time reader while
        # the main thread closes the source.
        self._lock = threading.Lock()
        self._closed = False

    def stop(self, reason: str) -> None:
        self.summary.stopped = reason
        self.stopped.set()

    def _read(self) -> tuple[int, float, np.ndarray] | None:
        """The next frame of the source (reconnecting live sources), or None at its end."""
        while not self.stopped.is_set():
            with self._lock:
                if self._closed:
                    return None
                ok, frame = self.capture.read()
            if ok and frame is not None:
                index = self._index
                self._index += 1
                self.summary.frames_read += 1
                if self.fps > 0:
                    timestamp = 1000.0 * index / self.fps
                else:
                    timestamp = self.capture.get(cv2.CAP_PROP_POS_MSEC)
                return index, timestamp, frame
            if not self.live or not self._reconnect():
                if self.summary.frames_read == 0:
                    raise DataError(
                        f"no frame could be read from {self.config.source}; is it a video?"
                    )
                return None
        return None

    def _reconnect(self) -> bool:
        for attempt in range(self.config.reconnect):
            pause = _backoff(attempt)
            print(
                f"warning: {self.config.source} dropped; reconnecting in {pause:g} s "
                f"({attempt + 1}/{self.config.reconnect})",
                file=sys.stderr,
            )
            if self.stopped.wait(pause):
                return False
            with self._lock:
                if self._closed:
                    return False
                self.capture.release()
                self.capture = cv2.VideoCapture(self.config.source)
                opened = self.capture.isOpened()
            self.summary.reconnects += 1
            if opened:
                return True
        self.summary.stopped = f"stream lost after {self.config.reconnect} reconnect attempts"
        return False

    def _wanted(self, index: int, timestamp: float, due: list[float]) -> bool:
        if self.config.target_fps is None:
            return index % self.config.every == 0
        if timestamp + 1e-6 < due[0]:
            return False
        due[0] += 1000.0 / self.config.target_fps
        return True

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
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
                            self.summary.frames_dropped += 1
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


# --------------------------------------------------------------------------- detecting


Result = tuple[int, float, np.ndarray, list[Detection]]


def _local(config: VideoConfig, frames: FrameSource) -> Iterator[Result]:
    from detect.runtime.detector import Detector

    detector = Detector(config.model, device=config.device)
    options = {
        "score_threshold": config.score,
        "classes": config.classes,
        "agnostic_nms": config.agnostic_nms,
        "polygons": config.polygons,
    }
    for index, timestamp, frame in frames:
        yield index, timestamp, frame, detector.detect(frame, "BGR", **options)


def _remote(config: VideoConfig, frames: FrameSource) -> Iterator[Result]:
    """Results of one ``DetectStream`` call (reopened after UNAVAILABLE up to ``retry`` times).

    The request generator runs on gRPC's thread; it pulls frames from one shared iterator, so a
    reopened stream goes on where the failed one stopped, after sending again, in order, the
    frames that were in flight when the server went away.
    """
    import grpc

    from detect.client import DetectorClient, Frame, ServerError

    source = iter(frames)
    pull = threading.Lock()  # one generator at a time: the old call's may still be running
    pending: dict[str, tuple[int, float, np.ndarray]] = {}  # sent, not answered
    backlog: list[tuple[int, float, np.ndarray]] = []  # in flight when a call failed
    current = [0]  # the live call's number; older generators stop at their next pull
    attempt = 0

    def requests(mine: int, slots: threading.Semaphore) -> Iterator[Frame]:
        while True:
            while not slots.acquire(timeout=0.5):
                if frames.stopped.is_set() or current[0] != mine:
                    return
            with pull:
                if current[0] != mine:
                    return
                item = backlog.pop(0) if backlog else next(source, None)
                if item is None:
                    return
                index, timestamp, frame = item
                pending[str(index)] = item
            yield Frame(frame, str(index), round(timestamp), "BGR")

    with DetectorClient(
        config.server, tls=config.tls, ca=config.ca, token=config.token, timeout=None
    ) as client:
        while True:
            slots = threading.Semaphore(config.in_flight)
            results = client.detect_stream(
                requests(current[0], slots),
                score_threshold=config.score,
                classes=config.classes,
                agnostic_nms=config.agnostic_nms,
                polygons=config.polygons,
            )
            try:
                for result in results:
                    attempt = 0
                    index, timestamp, frame = pending.pop(result.frame_id)
                    slots.release()
                    yield index, timestamp, frame, result.detections
                return
            except ServerError as exc:
                with pull:
                    current[0] += 1
                    backlog[:0] = sorted(pending.values(), key=lambda item: item[0])
                    pending.clear()
                if exc.code != grpc.StatusCode.UNAVAILABLE or attempt >= config.retry:
                    raise
                pause = _backoff(attempt)
                attempt += 1
                print(
                    f"warning: {exc}; retrying in {pause:g} s ({attempt}/{config.retry})",
                    file=sys.stderr,
                )
                if frames.stopped.wait(pause):
                    return


# --------------------------------------------------------------------------- output


def _annotate(
    frame: np.ndarray,
    detections: list[Detection],
    ids: list[int],
    zones: Zones | None,
    line: LineCounter | None,
    panel: list[str],
) -> np.ndarray:
    """The frame (BGR) with detections, track ids, zone outlines, the line and a counter panel."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    captions = [
        f"{d.label} {d.score:.2f}" + (f" #{i}" if i >= 0 else "")
        for d, i in zip(detections, ids, strict=True)
    ]
    canvas = draw_detections(rgb, detections, captions)
    if zones is not None:
        for k, (name, polygon) in enumerate(zip(zones.names, zones.polygons, strict=True)):
            points = np.round(np.asarray(polygon.exterior.coords)).astype(np.int32)
            color = class_color(k + 7)
            cv2.polylines(canvas, [points], True, color, 2, cv2.LINE_AA)
            x, y = points.min(axis=0)
            cv2.putText(canvas, name, (int(x) + 3, int(y) + 14), 0, 0.45, color, 1, cv2.LINE_AA)
    if line is not None:
        ends = (round(line.x1), round(line.y1)), (round(line.x2), round(line.y2))
        cv2.line(canvas, *ends, (255, 255, 0), 2, cv2.LINE_AA)
    if panel:
        height = 16 * len(panel) + 8
        width = min(canvas.shape[1], 8 + 7 * max(len(t) for t in panel))
        box = canvas[:height, :width]
        canvas[:height, :width] = (box * 0.4).astype(np.uint8)
        for k, text in enumerate(panel):
            cv2.putText(canvas, text, (4, 16 * (k + 1)), 0, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(canvas[:, :, ::-1])


def _detection_record(d: Detection, track_id: int) -> dict[str, Any]:
    return {
        "top": round(d.top, 2),
        "left": round(d.left, 2),
        "width": round(d.width, 2),
        "height": round(d.height, 2),
        "label": d.label,
        "score": round(d.score, 4),
        "track_id": track_id,
        "polygons": [[np.round(r, 1).ravel().tolist() for r in p.rings()] for p in d.polygons],
    }


@contextlib.contextmanager
def _stop_on_signals(frames: FrameSource) -> Iterator[None]:
    """SIGTERM/SIGINT end the run after the frame in hand (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: object) -> None:
        frames.stop(f"{signal.Signals(signum).name} received")

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_video(config: VideoConfig) -> VideoSummary:
    """Process the source (see the module docstring); the summary of the run."""
    config.validate()
    zones = Zones.read(config.zones) if config.zones is not None else None
    line = LineCounter.parse(config.line) if config.line is not None else None
    tracker = Tracker() if config.track or zones is not None or line is not None else None
    summary = VideoSummary()
    frames = FrameSource(config, summary)
    writer = jsonl = None
    labels: dict[str, int] = {}
    started = time.perf_counter()
    try:
        if config.out_video is not None:
            config.out_video.parent.mkdir(parents=True, exist_ok=True)
            rate = frames.fps or 25.0
            rate = config.target_fps or rate / config.every
            writer = cv2.VideoWriter(
                str(config.out_video), cv2.VideoWriter_fourcc(*"mp4v"), rate, frames.size
            )
            if not writer.isOpened():
                raise DataError(f"--out-video {config.out_video}: cannot write an MP4 there")
        if config.jsonl is not None:
            config.jsonl.parent.mkdir(parents=True, exist_ok=True)
            jsonl = config.jsonl.open("w", encoding="utf-8")
        detect = _local if config.model is not None else _remote
        total = frames.total // config.every if frames.total and not config.realtime else None
        with (
            _stop_on_signals(frames),
            tqdm(total=total, unit="frame", disable=not sys.stderr.isatty()) as bar,
        ):
            for index, timestamp, frame, detections in detect(config, frames):
                ids = [-1] * len(detections)
                if tracker is not None and detections:
                    boxes = np.array(
                        [[d.left, d.top, d.left + d.width, d.top + d.height] for d in detections]
                    )
                    classes = np.array(
                        [labels.setdefault(d.label, len(labels)) for d in detections]
                    )
                    scores = np.array([d.score for d in detections])
                    ids = [int(i) for i in tracker.update(boxes, scores, classes)]
                elif tracker is not None:
                    tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
                objects = [
                    Tracked(i, d.label, d.left, d.top, d.width, d.height)
                    for d, i in zip(detections, ids, strict=True)
                ]
                counts, events = zones.update(objects) if zones is not None else ({}, [])
                crossings = line.update(objects) if line is not None else []
                summary.frames_processed += 1
                for d, i in zip(detections, ids, strict=True):
                    summary.detections[d.label] += 1
                    if i >= 0:
                        summary.tracks.setdefault(d.label, set()).add(i)
                if zones is not None:
                    summary.zones = {f"{z} {e}": n for (z, e), n in sorted(zones.totals.items())}
                if line is not None:
                    summary.line = {f"{k} {c}": n for (k, c), n in sorted(line.totals.items())}
                if jsonl is not None:
                    record = {
                        "frame": index,
                        "timestamp_ms": round(timestamp, 3),
                        "detections": [
                            _detection_record(d, i) for d, i in zip(detections, ids, strict=True)
                        ],
                    }
                    if zones is not None:
                        record["zones"] = counts
                        record["events"] = events
                    if line is not None:
                        record["line_events"] = crossings
                    jsonl.write(json.dumps(record) + "\n")
                    jsonl.flush()
                if writer is not None:
                    panel = [f"frame {index}  {len(detections)} objects"]
                    panel += [f"{k}: {v}" for k, v in {**summary.zones, **summary.line}.items()]
                    writer.write(_annotate(frame, detections, ids, zones, line, panel))
                bar.update()
    finally:
        summary.seconds = time.perf_counter() - started
        frames.stopped.set()
        frames.close()
        if writer is not None:
            writer.release()
        if jsonl is not None:
            jsonl.close()
    return summary

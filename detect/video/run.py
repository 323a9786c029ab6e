"""The `detect video` run: frames from `detect.video.source`, detections from a local backend or
the server (`detect.video.remote`), then tracks, zone and line counts (`detect.zones`), the
annotated MP4, JSONL and the summary. SIGTERM/SIGINT end the run after the frame in hand: the MP4
is finalised (playable) and every JSONL line is complete (each is flushed when written).

`VideoRun` is one camera's run; `detect watch` runs one per camera, in threads, sharing a local
backend or each with its own stream to the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm import tqdm

from detect.config import (
    Connection,
    add_agnostic_nms_flag,
    add_backend_flag,
    add_connection_flags,
    add_device_flag,
    detect_options,
    from_flags,
)
from detect.errors import ConfigError, DataError
from detect.runtime.draw import class_color, draw_detections
from detect.structures import Detection, DetectOptions
from detect.track import Tracker
from detect.video.source import FrameSource
from detect.zones import ANCHORS, Counting, Line, Tracked, Zone, read_zones

if TYPE_CHECKING:  # the gRPC side loads only for --server
    from detect.runtime.backend import Backend
    from detect.video.remote import Result

EventSink = Callable[[dict[str, Any]], None]
"""Receives each zone or line event of a run as it is confirmed (`detect.zones`)."""


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
    zones: list[Zone] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    anchor: str = "bottom_center"
    min_frames: int = 2
    out_video: Path | None = None
    jsonl: Path | None = None
    options: DetectOptions = field(default_factory=DetectOptions)
    device: str = "auto"
    backend: str = "auto"
    reconnect: int | None = 5  # None: for ever
    retry: int | None = 0  # None: for ever
    in_flight: int = 4
    frame_deadline_ms: int = 0
    max_frames: int | None = None
    connection: Connection = field(default_factory=Connection)
    name: str = ""  # the camera's name (`detect watch`)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """`detect video`'s flags."""
        p.add_argument("source", help="video file, rtsp:// or http:// URL, or webcam index")
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--model", type=Path, help="exported NAME.onnx (local ONNX Runtime)")
        where.add_argument("--server", help="HOST:PORT of a running `detect serve`")
        p.add_argument("--every", type=int, default=1, help="process every Nth frame")
        p.add_argument("--target-fps", type=float, help="process this many frames per video second")
        p.add_argument("--realtime", action="store_true", help="drop frames instead of lagging")
        p.add_argument("--track", action="store_true", help="give objects stable track ids")
        p.add_argument("--zones", type=Path, help="zones.json: named polygons to count in")
        p.add_argument(
            "--line",
            action="append",
            default=[],
            help="[NAME=]x1,y1,x2,y2: count crossings of this line by direction (repeatable)",
        )
        p.add_argument(
            "--anchor",
            default="bottom_center",
            choices=ANCHORS,
            help="the point(s) of a box that place it in zones and on sides of lines",
        )
        p.add_argument(
            "--min-frames",
            type=int,
            default=2,
            help="frames an object must stay in or out of a zone, or past a line, to count",
        )
        p.add_argument("--out-video", type=Path, help="annotated .mp4")
        p.add_argument("--jsonl", type=Path, help="one JSON line per processed frame")
        p.add_argument("--score", type=float, help="score threshold (default: the model card's)")
        p.add_argument("--classes", nargs="+", help="keep only these class names or category ids")
        add_agnostic_nms_flag(p)
        p.add_argument("--no-polygons", action="store_true", help="boxes only")
        add_device_flag(p, "--model")
        add_backend_flag(p)
        p.add_argument("--reconnect", type=int, default=5, help="reopen attempts for a lost stream")
        p.add_argument(
            "--retry",
            type=int,
            default=0,
            help="--server: reopen after UNAVAILABLE this many times",
        )
        p.add_argument("--in-flight", type=int, default=4, help="--server: frames on their way")
        p.add_argument(
            "--frame-deadline-ms",
            type=int,
            default=0,
            help="--server: a frame the server cannot run within this is dropped (default: none)",
        )
        p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
        add_connection_flags(p)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> VideoConfig:
        lines = [
            Line.parse(text, f"line{k + 1}" if len(args.line) > 1 else "line")
            for k, text in enumerate(args.line)
        ]
        return from_flags(
            cls,
            args,
            zones=read_zones(args.zones) if args.zones is not None else [],
            lines=lines,
            options=detect_options(args),
            connection=Connection.from_args(args),
        )

    def validate(self) -> None:
        if (self.model is None) == (self.server is None):
            raise ConfigError("give exactly one of --model (local) or --server (gRPC)")
        if self.every < 1:
            raise ConfigError(f"--every {self.every}: use 1 or more")
        if self.target_fps is not None and (self.target_fps <= 0 or self.every != 1):
            raise ConfigError("--target-fps needs a positive rate and cannot go with --every")
        if (self.reconnect or 0) < 0 or (self.retry or 0) < 0 or self.in_flight < 1:
            raise ConfigError("--reconnect and --retry must be 0 or more, --in-flight 1 or more")
        if self.frame_deadline_ms < 0:
            raise ConfigError(
                f"--frame-deadline-ms {self.frame_deadline_ms}: give milliseconds (0: no deadline)"
            )
        if self.frame_deadline_ms and self.server is None:
            raise ConfigError("--frame-deadline-ms goes with --server: a local model drops nothing")
        if self.min_frames < 1:
            raise ConfigError(f"--min-frames {self.min_frames}: use 1 or more")
        Counting(self.zones, self.lines, self.anchor, self.min_frames)  # the anchor, the names
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames {self.max_frames}: use 1 or more")
        for flag, path in (("--out-video", self.out_video), ("--jsonl", self.jsonl)):
            if path is not None and path.is_dir():
                raise ConfigError(f"{flag} {path} is a folder; give a file name")
        if self.out_video is not None and self.out_video.suffix.lower() != ".mp4":
            raise ConfigError(f"--out-video {self.out_video}: name an .mp4 file")


@dataclass
class VideoSummary:
    """What a run did: frame counts, speed, classes, tracks, zone and line totals, dwell."""

    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # by the source (--realtime); its reader thread counts them
    frames_dropped_by_server: int = 0  # --frame-deadline-ms; counted on the main thread
    seconds: float = 0.0
    detections: Counter = field(default_factory=Counter)  # label -> detections
    tracks: dict[str, set[int]] = field(default_factory=dict)  # label -> track ids
    counting: dict[str, Any] = field(default_factory=dict)  # `Counting.summary()`, at the end
    reconnects: int = 0
    stopped: str = "end of source"

    @property
    def fps(self) -> float:
        return self.frames_processed / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped + self.frames_dropped_by_server,
            "frames_dropped_by_server": self.frames_dropped_by_server,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "detections": dict(self.detections),
            "tracks": {label: len(ids) for label, ids in self.tracks.items()},
            "unique_tracks": sum(len(ids) for ids in self.tracks.values()),
            **self.counting,
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
        if self.counting:
            counts = self.counting["counts"]
            out.append("counts: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
            for zone, dwell in self.counting["dwell"].items():
                out.append(
                    f"dwell in {zone}: {dwell['visits']} visit{'s' * (dwell['visits'] != 1)}, "
                    f"mean {dwell['mean_s']:.2f} s, "
                    f"max {dwell['max_s']:.2f} s"
                )
        return out


@dataclass
class LocalModel:
    """An open backend that several runs share; one frame at a time goes through it."""

    backend: Backend
    lock: threading.Lock = field(default_factory=threading.Lock)

    def detect(self, frame: np.ndarray, options: DetectOptions) -> list[Detection]:
        """Detections of one ``(H, W, 3)`` uint8 BGR frame."""
        from detect.runtime.backend import detect_batch

        with self.lock:
            (detected,) = detect_batch(self.backend, [frame], options, "BGR")
        return detected.detections

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: VideoConfig) -> Iterator[LocalModel]:
        from detect.runtime.backend import open_backend

        backend = open_backend(model=config.model, device=config.device, engine=config.backend)
        try:
            yield cls(backend)
        finally:
            backend.close()


def _results(
    config: VideoConfig, frames: FrameSource, local: LocalModel | None
) -> Iterator[Result]:
    """Each frame with its detections: through the server (`detect.video.remote.stream`) or a
    local backend (``local``, else opened here), one frame at a time."""
    if config.server is not None:
        from detect.client import DetectorClient
        from detect.video.remote import stream

        with DetectorClient(config.server, **asdict(config.connection), timeout=None) as client:
            yield from stream(
                client,
                frames,
                config.options,
                config.in_flight,
                config.retry,
                config.frame_deadline_ms,
            )
        return
    with contextlib.ExitStack() as stack:
        if local is None:
            local = stack.enter_context(LocalModel.open(config))
        for index, timestamp, frame in frames:
            yield index, timestamp, frame, local.detect(frame, config.options)


def _annotate(
    frame: np.ndarray,
    detections: list[Detection],
    ids: list[int],
    counting: Counting,
    panel: list[str],
) -> np.ndarray:
    """The frame (BGR) with detections, track ids, zone outlines, lines and a counter panel."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    captions = [
        f"{d.label} {d.score:.2f}" + (f" #{i}" if i >= 0 else "")
        for d, i in zip(detections, ids, strict=True)
    ]
    canvas = draw_detections(rgb, detections, captions)
    for k, zone in enumerate(counting.zones):
        points = np.round(np.asarray(zone.polygon.exterior.coords)).astype(np.int32)
        color = class_color(k + 7)
        cv2.polylines(canvas, [points], True, color, 2, cv2.LINE_AA)
        x, y = points.min(axis=0)
        cv2.putText(canvas, zone.name, (int(x) + 3, int(y) + 14), 0, 0.45, color, 1, cv2.LINE_AA)
    for line in counting.lines:
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
    """One detection of a JSONL line: TLWH box, label, score, track id, polygon rings."""
    top, left, width, height = d.tlwh
    return {
        "top": round(top, 2),
        "left": round(left, 2),
        "width": round(width, 2),
        "height": round(height, 2),
        "label": d.label,
        "score": round(d.score, 4),
        "track_id": track_id,
        "polygons": [[np.round(r, 1).ravel().tolist() for r in p.rings()] for p in d.polygons],
    }


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM/SIGINT call ``stop(reason)`` instead of killing the process (main thread only;
    elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: object) -> None:
        stop(f"{signal.Signals(signum).name} received")

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class VideoRun:
    """One source's run (see the module docstring). Opening it opens the source (`DataError`
    when it cannot be read); `run` processes it; `stop` ends it after the frame in hand, from
    any thread. ``summary`` counts as the run goes (a status line may read it).

    ``local``: a backend shared with other runs (else ``config.model`` is opened for this run);
    ``on_event``: receives each zone and line event as it is confirmed; ``track_ids``: the first
    track id and the step between ids (`Tracker`).
    """

    def __init__(
        self,
        config: VideoConfig,
        local: LocalModel | None = None,
        on_event: EventSink | None = None,
        track_ids: tuple[int, int] = (1, 1),
    ) -> None:
        config.validate()
        self.config = config
        self.local = local
        self.on_event = on_event
        self.counting = Counting(config.zones, config.lines, config.anchor, config.min_frames)
        wanted = config.track or bool(self.counting)
        self.tracker = Tracker(None, *track_ids) if wanted else None
        self.summary = VideoSummary()
        self.frames = FrameSource(config, self.summary)
        self._labels: dict[str, int] = {}

    def stop(self, reason: str) -> None:
        self.frames.stop(reason)

    def run(self, progress: Callable[[], None] = lambda: None) -> VideoSummary:
        """Process the source; ``progress`` is called after each frame. The summary."""
        config, summary = self.config, self.summary
        writer = jsonl = None
        started = time.perf_counter()
        try:
            if config.jsonl is not None:
                try:
                    config.jsonl.parent.mkdir(parents=True, exist_ok=True)
                    jsonl = config.jsonl.open("w", encoding="utf-8")
                except OSError as exc:
                    raise DataError(
                        f"--jsonl {config.jsonl}: cannot write it ({exc.strerror}); "
                        "give a writable path"
                    ) from None
            with stop_on_signals(self.stop):
                for index, timestamp, frame, detections in _results(
                    config, self.frames, self.local
                ):
                    if detections is None:  # dropped by the server
                        summary.frames_dropped_by_server += 1
                        progress()
                        continue
                    if writer is None and config.out_video is not None:
                        writer = self._open_writer(frame)
                    record, ids = self._process(index, timestamp, detections)
                    if jsonl is not None:
                        try:
                            jsonl.write(json.dumps(record) + "\n")
                            jsonl.flush()
                        except OSError as exc:
                            raise DataError(
                                f"--jsonl {config.jsonl}: cannot write it ({exc.strerror})"
                            ) from None
                    if writer is not None:
                        writer.write(self._frame(frame, index, detections, ids))
                    progress()
        finally:
            summary.seconds = time.perf_counter() - started
            if self.counting:
                summary.counting = self.counting.summary()
            self.frames.close()
            if writer is not None:
                writer.release()
            if jsonl is not None:
                jsonl.close()
        return summary

    def _open_writer(self, frame: np.ndarray) -> cv2.VideoWriter:
        config = self.config
        assert config.out_video is not None
        try:
            config.out_video.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"--out-video {config.out_video}: {exc.strerror}") from None
        rate = config.target_fps or (self.frames.fps or 25.0) / config.every
        size = (frame.shape[1], frame.shape[0])
        writer = cv2.VideoWriter(str(config.out_video), cv2.VideoWriter_fourcc(*"mp4v"), rate, size)
        if not writer.isOpened():
            raise DataError(f"--out-video {config.out_video}: cannot write an MP4 there")
        return writer

    def _process(
        self, index: int, timestamp: float, detections: list[Detection]
    ) -> tuple[dict[str, Any], list[int]]:
        """Track and count one frame's detections: its JSONL record and the track ids."""
        summary, tracker = self.summary, self.tracker
        ids = [-1] * len(detections)
        if tracker is not None:
            boxes = np.array([d.box for d in detections]).reshape(-1, 4)
            classes = np.array(
                [self._labels.setdefault(d.label, len(self._labels)) for d in detections], int
            )
            scores = np.array([d.score for d in detections])
            ids = [int(i) for i in tracker.update(boxes, scores, classes)]
        objects = [Tracked(i, d.label, d.box) for d, i in zip(detections, ids, strict=True)]
        summary.frames_processed += 1
        for d, i in zip(detections, ids, strict=True):
            summary.detections[d.label] += 1
            if i >= 0:
                summary.tracks.setdefault(d.label, set()).add(i)
        record: dict[str, Any] = {
            "frame": index,
            "timestamp_ms": round(timestamp, 3),
            "detections": [_detection_record(d, i) for d, i in zip(detections, ids, strict=True)],
        }
        if self.counting:
            live = tracker.live_ids() if tracker is not None else None
            counts, events = self.counting.update(objects, index, timestamp, live)
            if self.counting.zones:
                record["zones"] = counts
            record["events"] = events
            if self.on_event is not None:
                for event in events:
                    self.on_event(event)
        return record, ids

    def _frame(
        self, frame: np.ndarray, index: int, detections: list[Detection], ids: list[int]
    ) -> np.ndarray:
        panel = [f"frame {index}  {len(detections)} objects"]
        panel += [f"{k}: {v}" for k, v in self.counting.counts().items()]
        return _annotate(frame, detections, ids, self.counting, panel)


def run_video(config: VideoConfig) -> VideoSummary:
    """Process the source (see the module docstring) with a progress bar; the summary."""
    video = VideoRun(config)
    frames = video.frames
    total = frames.total // config.every if frames.total and not config.realtime else None
    with tqdm(total=total, unit="frame", disable=not sys.stderr.isatty()) as bar:
        return video.run(bar.update)


add_arguments = VideoConfig.add_arguments


def run(args: argparse.Namespace) -> int:
    """`detect video` from parsed flags: the summary on stdout."""
    config = VideoConfig.from_args(args)
    summary = run_video(config)
    for text in summary.lines():
        print(text)
    outputs = [str(p) for p in (config.out_video, config.jsonl) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))
    return 0

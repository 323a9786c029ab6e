"""The `detect video` run: frames from `detect.video.source`, detections from a local backend or
the server (`detect.video.remote`), then tracks, zone and line counts, the annotated MP4, JSONL
and the summary. SIGTERM/SIGINT end the run after the frame in hand: the MP4 is finalised
(playable) and every JSONL line is complete (each is flushed when written).
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
from collections.abc import Iterator
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
from detect.zones import LineCounter, Tracked, Zones

if TYPE_CHECKING:  # the gRPC side loads only for --server
    from detect.video.remote import Result


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
    options: DetectOptions = field(default_factory=DetectOptions)
    device: str = "auto"
    backend: str = "auto"
    reconnect: int = 5
    retry: int = 0
    in_flight: int = 4
    frame_deadline_ms: int = 0
    max_frames: int | None = None
    connection: Connection = field(default_factory=Connection)

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
        p.add_argument("--line", help="x1,y1,x2,y2: count crossings of this line by direction")
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
        return from_flags(
            cls, args, options=detect_options(args), connection=Connection.from_args(args)
        )

    def validate(self) -> None:
        if (self.model is None) == (self.server is None):
            raise ConfigError("give exactly one of --model (local) or --server (gRPC)")
        if self.every < 1:
            raise ConfigError(f"--every {self.every}: use 1 or more")
        if self.target_fps is not None and (self.target_fps <= 0 or self.every != 1):
            raise ConfigError("--target-fps needs a positive rate and cannot go with --every")
        if self.reconnect < 0 or self.retry < 0 or self.in_flight < 1:
            raise ConfigError("--reconnect and --retry must be 0 or more, --in-flight 1 or more")
        if self.frame_deadline_ms < 0:
            raise ConfigError(
                f"--frame-deadline-ms {self.frame_deadline_ms}: give milliseconds (0: no deadline)"
            )
        if self.frame_deadline_ms and self.server is None:
            raise ConfigError("--frame-deadline-ms goes with --server: a local model drops nothing")
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
    frames_dropped: int = 0  # by the source (--realtime); its reader thread counts them
    frames_dropped_by_server: int = 0  # --frame-deadline-ms; counted on the main thread
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
            "frames_dropped": self.frames_dropped + self.frames_dropped_by_server,
            "frames_dropped_by_server": self.frames_dropped_by_server,
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


def _results(config: VideoConfig, frames: FrameSource) -> Iterator[Result]:
    """Each frame with its detections: through the server (`detect.video.remote.stream`) or a
    local backend, one frame at a time."""
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
    from detect.runtime.backend import detect_batch, open_backend

    backend = open_backend(model=config.model, device=config.device, engine=config.backend)
    try:
        for index, timestamp, frame in frames:
            (detected,) = detect_batch(backend, [frame], config.options, "BGR")
            yield index, timestamp, frame, detected.detections
    finally:
        backend.close()


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
        total = frames.total // config.every if frames.total and not config.realtime else None
        with (
            _stop_on_signals(frames),
            tqdm(total=total, unit="frame", disable=not sys.stderr.isatty()) as bar,
        ):
            for index, timestamp, frame, detections in _results(config, frames):
                if detections is None:  # dropped by the server
                    summary.frames_dropped_by_server += 1
                    bar.update()
                    continue
                ids = [-1] * len(detections)
                if tracker is not None and detections:
                    boxes = np.array([d.box for d in detections])
                    classes = np.array(
                        [labels.setdefault(d.label, len(labels)) for d in detections]
                    )
                    scores = np.array([d.score for d in detections])
                    ids = [int(i) for i in tracker.update(boxes, scores, classes)]
                elif tracker is not None:
                    tracker.update(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
                objects = [Tracked(i, d.label, d.box) for d, i in zip(detections, ids, strict=True)]
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

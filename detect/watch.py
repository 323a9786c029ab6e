"""`detect watch site.yaml`: every camera of a site through one detector, each with its own
tracker, zones, lines and outputs, plus one event log for the whole site.

Each camera is a `detect.video.VideoRun` on its own thread: through ``server`` (one
``DetectStream`` per camera; the server batches frames of different cameras together) or a local
``model`` (one backend shared by the cameras, one frame at a time). Trackers are per camera and
number their tracks apart (camera k of n: k, k + n, k + 2n, ...), so a track id names one
object on the whole site. A camera that drops (a live source) reconnects on its own, for ever by
default, while the others go on; a live source that cannot be opened at the start is retried the
same way, and so is the server once the cameras run (a server that cannot be reached at the start
is an error: more likely a wrong address than a restart). A camera that fails for good (out of
attempts, or an error) stops alone, with a warning, and makes the exit code 1. SIGTERM/SIGINT
finish every camera after the frame in hand (each gets `FINISH_S`); a second signal exits at once.

The site file (paths in it are relative to its folder):

```yaml
server: 127.0.0.1:50051          # or model: models/demo.onnx
events: out/events.jsonl         # the site's event log (optional)
summary: out/summary.json        # the summaries, as JSON (optional)
defaults: {target_fps: 5, min_frames: 2}   # any camera key, for every camera
cameras:
  - name: gate
    source: rtsp://10.0.0.7/stream1
    zones: [{name: door, polygon: [[0, 0], [160, 0], [160, 240], [0, 240]]}]  # or a zones.json
    lines: [{name: entry, points: [[160, 240], [160, 0]]}]   # forward: left to right
    jsonl: out/gate.jsonl
    out_video: out/gate.mp4
```

Camera keys: ``name``, ``source`` and optional ``every`` / ``target_fps``, ``realtime``,
``track`` (default true), ``zones``, ``lines``, ``anchor``, ``min_frames``, ``jsonl``,
``out_video``, ``score``, ``classes``, ``agnostic_nms``, ``reconnect`` (attempts or
``forever``), ``retry`` (likewise, after the server is unavailable), ``in_flight``,
``frame_deadline_ms``, ``max_frames``. Site keys: ``server`` or ``model`` (``device``,
``backend``), ``events``, ``summary``, ``defaults``, ``cameras``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from detect.config import (
    Connection,
    add_backend_flag,
    add_connection_flags,
    add_device_flag,
    load_yaml,
)
from detect.errors import ConfigError, DataError, DetectError
from detect.structures import options_from_flags
from detect.video.run import LocalModel, VideoConfig, VideoRun, VideoSummary, stop_on_signals
from detect.video.source import attempts_left, backoff, is_live
from detect.zones import Line, read_zones, zones_from_dict

CAMERA_KEYS = {
    "name",
    "source",
    "every",
    "target_fps",
    "realtime",
    "track",
    "zones",
    "lines",
    "anchor",
    "min_frames",
    "jsonl",
    "out_video",
    "score",
    "classes",
    "agnostic_nms",
    "reconnect",
    "retry",
    "in_flight",
    "frame_deadline_ms",
    "max_frames",
}
FINISH_S = 30.0  # how long stopped cameras get to finish their frame in hand
SITE_KEYS = {"server", "model", "device", "backend", "events", "summary", "defaults", "cameras"}
FOREVER = "forever"


@dataclass
class Site:
    """A parsed site file: one `VideoConfig` per camera, the event log and summary paths."""

    cameras: list[VideoConfig]
    events: Path | None = None
    summary: Path | None = None


def _attempts(value: Any, where: str) -> int | None:
    """``forever`` (None) or a count of 0 or more."""
    if value == FOREVER:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: give a number of attempts (0 or more) or '{FOREVER}'")
    return value


def _lines(value: Any, where: str) -> list[Line]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'lines' is a list of {{name, points: [[x1, y1], [x2, y2]]}}")
    lines = []
    for k, item in enumerate(value):
        if isinstance(item, str):
            lines.append(Line.parse(item, f"line{k + 1}"))
        elif isinstance(item, dict):
            lines.append(Line.of(item.get("name"), item.get("points"), where))
        else:
            raise ConfigError(
                f"{where}: line {k + 1} is neither {{name, points}} nor 'x1,y1,x2,y2'"
            )
    return lines


def _camera(
    item: Any, defaults: dict[str, Any], root: Path, common: dict[str, Any], k: int
) -> VideoConfig:
    """One camera's `VideoConfig` from its entry merged over ``defaults``."""
    if not isinstance(item, dict):
        raise ConfigError(f"camera {k + 1}: expected a mapping with at least name and source")
    if item.keys() & {"every", "target_fps"}:  # a camera's own sampling replaces the default's
        defaults = {k: v for k, v in defaults.items() if k not in ("every", "target_fps")}
    values = {**defaults, **item}
    name = values.get("name")
    where = f"camera {name!r}" if isinstance(name, str) and name else f"camera {k + 1}"
    unknown = sorted(set(values) - CAMERA_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(CAMERA_KEYS))}"
        )
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: give it a 'name'")
    source = values.get("source")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)  # a webcam index
    if not isinstance(source, str) or not source:
        raise ConfigError(
            f"{where}: give its 'source' (a file, an rtsp:// or http:// URL, a webcam)"
        )
    if not is_live(source):
        source = str(root / source)
        if not Path(source).is_file():
            raise ConfigError(f"{where}: source {source}: no such file")
    zones = values.get("zones") or []
    if isinstance(zones, str):
        zones = read_zones(root / zones, f"{where}: zones")
    else:
        zones = zones_from_dict(zones, where)
    paths = {}
    for key in ("jsonl", "out_video"):
        if values.get(key) is not None:
            if not isinstance(values[key], str):
                raise ConfigError(f"{where}: '{key}' is a file path")
            paths[key] = root / values[key]
    lines = _lines(values.get("lines") or [], where)
    reconnect = _attempts(values.get("reconnect", FOREVER), f"{where}: reconnect")
    retry = _attempts(values.get("retry", FOREVER), f"{where}: retry")
    try:
        classes = values.get("classes")
        if classes is None:
            classes = []
        elif isinstance(classes, str | int) and not isinstance(classes, bool):
            classes = [classes]
        if not isinstance(classes, list) or any(isinstance(c, bool | dict | list) for c in classes):
            raise ConfigError("'classes' is a list of class names or category ids")
        classes = tuple(str(c) for c in classes)
        options = options_from_flags(
            score_threshold=values.get("score"),
            classes=classes,
            agnostic_nms=values.get("agnostic_nms"),
        )
        target_fps = values.get("target_fps")
        max_frames = values.get("max_frames")
        config = VideoConfig(
            source=source,
            every=int(values.get("every", 1)),
            target_fps=None if target_fps is None else float(target_fps),
            realtime=bool(values.get("realtime", False)),
            track=bool(values.get("track", True)),
            zones=zones,
            lines=lines,
            anchor=str(values.get("anchor", "bottom_center")),
            min_frames=int(values.get("min_frames", 2)),
            options=options,
            reconnect=reconnect,
            retry=retry,
            in_flight=int(values.get("in_flight", 4)),
            frame_deadline_ms=int(values.get("frame_deadline_ms", 0)),
            max_frames=None if max_frames is None else int(max_frames),
            name=name,
            **paths,
            **common,
        )
        config.validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: a value has the wrong type ({exc})") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


def read_site(
    path: Path,
    server: str | None = None,
    model: Path | None = None,
    events: Path | None = None,
    max_frames: int | None = None,
    connection: Connection | None = None,
    device: str | None = None,
    backend: str | None = None,
) -> Site:
    """The site file at ``path``; the arguments given override its keys. `ConfigError` names
    the camera and key at fault."""
    data = load_yaml(path)
    root = Path(path).parent
    unknown = sorted(set(data) - SITE_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(SITE_KEYS))}"
        )
    if server is None and model is None:
        server, model = data.get("server"), data.get("model")
        for key, value in (("server", server), ("model", model)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{path}: '{key}' is a text (HOST:PORT, or an .onnx path)")
        model = root / model if model is not None else None
    if (server is None) == (model is None):
        raise ConfigError(f"{path}: give exactly one of 'server' (HOST:PORT) or 'model' (an .onnx)")
    if model is not None and not Path(model).is_file():
        raise ConfigError(f"model {model}: no such file")
    cameras = data.get("cameras")
    if not isinstance(cameras, list) or not cameras:
        raise ConfigError(f"{path}: 'cameras' must list at least one camera")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: 'defaults' is a mapping of camera keys")
    common: dict[str, Any] = {
        "server": server,
        "model": model,
        "device": device or str(data.get("device", "auto")),
        "backend": backend or str(data.get("backend", "auto")),
        "connection": connection or Connection(),
    }
    configs = [_camera(item, defaults, root, common, k) for k, item in enumerate(cameras)]
    if max_frames is not None:
        configs = [replace(c, max_frames=max_frames) for c in configs]
    names = [c.name for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{path}: camera name {repeated[0]!r} is used twice")
    if events is None and data.get("events") is not None:
        events = root / str(data["events"])
    summary = root / str(data["summary"]) if data.get("summary") is not None else None
    owners: dict[Path, str] = {}
    named = [(f"camera {c.name!r}", c.jsonl) for c in configs]
    named += [(f"camera {c.name!r}", c.out_video) for c in configs]
    named += [("the event log", events), ("the summary", summary)]
    for owner, output in named:
        if output is None:
            continue
        where = Path(output).resolve()
        if where in owners:
            raise ConfigError(
                f"{path}: {owners[where]} and {owner} both write {output}; give each its own file"
            )
        owners[where] = owner
    return Site(configs, events, summary)


class EventLog:
    """The site's event log: one JSON line per event (``camera``, wall-clock ``time`` in UTC,
    then the event's own keys), written and flushed as events come, from any camera's thread."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("w", encoding="utf-8")
            except OSError as exc:
                raise DataError(
                    f"events log {path}: cannot write it ({exc.strerror}); give a writable path"
                ) from None
        self.count = 0

    def write(self, camera: str, event: dict[str, Any]) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = json.dumps({"camera": camera, "time": stamp, **event})
        with self._lock:
            self.count += 1
            if self._file is not None:
                try:
                    self._file.write(line + "\n")
                    self._file.flush()
                except OSError as exc:
                    raise DataError(
                        f"events log {self._file.name}: cannot write it ({exc.strerror})"
                    ) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class CameraWorker:
    """One camera's thread: opens its source (retrying a live one), runs it, keeps its state."""

    config: VideoConfig
    local: LocalModel | None
    log: EventLog
    track_ids: tuple[int, int]
    summary: VideoSummary = field(default_factory=VideoSummary)
    state: str = "starting"
    error: str | None = None
    _video: VideoRun | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"camera {self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Whether the thread has ended (waiting up to ``timeout`` seconds)."""
        assert self._thread is not None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, reason: str) -> None:
        """End the camera after the frame in hand (nothing, if it has already ended)."""
        with self._lock:
            if self._stopped.is_set() or self.state in ("ended", "failed"):
                return
            self._stopped.set()
            if self._video is not None:
                self._video.stop(reason)  # keeps a reason its source already gave
            else:
                self.summary.stopped = reason

    def _open(self) -> VideoRun | None:
        """The camera's run once its source opens; None when stopped or out of attempts."""
        config, attempt = self.config, 0
        while not self._stopped.is_set():
            try:
                return VideoRun(
                    config, self.local, lambda e: self.log.write(config.name, e), self.track_ids
                )
            except DataError as exc:
                if not is_live(config.source) or not attempts_left(attempt, config.reconnect):
                    raise
                pause = backoff(attempt)
                attempt += 1
                self.summary.reconnects += 1
                self.state = "connecting"
                print(
                    f"warning: camera {self.name}: {exc}; retrying in {pause:g} s", file=sys.stderr
                )
                self._stopped.wait(pause)
        return None

    def _main(self) -> None:
        try:
            video = self._open()
            with self._lock:
                if video is None or self._stopped.is_set():
                    self.state = "stopped"
                    if video is not None:
                        video.frames.close()
                    return
                self._video = video
                video.summary.reconnects += self.summary.reconnects
                self.summary = video.summary
                self.state = "running"
            video.run()
            if video.frames.lost:  # gave up reconnecting: this camera is gone for good
                self._fail(video.summary.stopped)
            else:
                self.state = "ended"
        except DetectError as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug: this camera stops, the others go on
            traceback.print_exc()
            self._fail(f"internal error: {exc!r}")

    def _fail(self, error: str) -> None:
        self.error, self.state = error, "failed"
        print(f"warning: camera {self.name} stopped: {error}", file=sys.stderr)

    def status(self, fps: float) -> str:
        s = self.summary
        dropped = s.frames_dropped + s.frames_dropped_by_server
        video = self._video
        state = "reconnecting" if video is not None and video.frames.reconnecting else self.state
        return (
            f"{self.name}: {state}, {fps:.1f} frames/s, {s.frames_processed} processed, "
            f"{dropped} dropped, {s.reconnects} reconnects"
        )


class StatusBoard:
    """A status line per camera on stderr: redrawn in place every second on a terminal, else
    printed every ``every`` seconds. Frames per second are over the last interval."""

    def __init__(self, workers: list[CameraWorker], every: float, stream: TextIO) -> None:
        self.workers = workers
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 1.0 if self.tty else every
        self._last = (time.monotonic(), [0] * len(workers))
        self._drawn = 0

    def tick(self) -> None:
        now = time.monotonic()
        then, counts = self._last
        current = [w.summary.frames_processed for w in self.workers]
        elapsed = max(now - then, 1e-9)
        rows = [
            w.status((c - p) / elapsed)
            for w, c, p in zip(self.workers, current, counts, strict=True)
        ]
        self._last = (now, current)
        if self.tty:  # back to the first line of the last drawing, each line cleared
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{row}\n" for row in rows))
        else:
            self.stream.write("".join(f"status {row}\n" for row in rows))
        self.stream.flush()
        self._drawn = len(rows)


@dataclass
class WatchResult:
    """Each camera's summary and error (None: it ran to its end), the site's totals."""

    summaries: dict[str, VideoSummary]
    errors: dict[str, str]
    seconds: float
    events: int

    def as_dict(self) -> dict[str, Any]:
        processed = sum(s.frames_processed for s in self.summaries.values())
        return {
            "cameras": {
                name: {**s.as_dict(), "error": self.errors.get(name)}
                for name, s in self.summaries.items()
            },
            "seconds": round(self.seconds, 3),
            "frames_processed": processed,
            "fps": round(processed / self.seconds, 3) if self.seconds else 0.0,
            "events": self.events,
        }


def watch(site: Site, status_every: float = 10.0, stream: TextIO = sys.stderr) -> WatchResult:
    """Run every camera of the site until each ends or SIGTERM/SIGINT (see the module
    docstring); the summaries."""
    first = site.cameras[0]
    if first.server is not None:  # a wrong address is one error now, not retries for ever
        from detect.client import DetectorClient

        with DetectorClient(first.server, **asdict(first.connection), timeout=10) as client:
            client.wait_ready(timeout=10)  # rides out a server that is still starting
            client.health("")
    log = EventLog(site.events)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        local = None
        if site.cameras[0].model is not None:
            local = stack.enter_context(LocalModel.open(site.cameras[0]))
        n = len(site.cameras)
        workers = [
            CameraWorker(config, local, log, (k + 1, n)) for k, config in enumerate(site.cameras)
        ]
        board = StatusBoard(workers, status_every, stream)

        def stop_all(reason: str) -> None:
            for worker in workers:
                worker.stop(reason)

        asked: list[str] = []  # SIGTERM/SIGINT: the handler only records it, the loop acts

        def on_signal(reason: str) -> None:
            if asked:  # a second signal: the user does not want to wait
                print(f"error: {reason} again: exiting without finishing", file=sys.stderr)
                os._exit(130)
            asked.append(reason)

        with stop_on_signals(on_signal):
            for worker in workers:
                worker.start()
            try:
                due = time.monotonic() + board.every
                while not all(w.join(timeout=0.1) for w in workers):
                    if asked:
                        stop_all(asked[0])
                    if time.monotonic() >= due:
                        board.tick()
                        due += board.every
                board.tick()
            finally:  # whatever ended the loop, the cameras finish before the model closes
                stop_all(asked[0] if asked else "watch ended")
                deadline = time.monotonic() + FINISH_S
                for worker in workers:
                    if not worker.join(max(0.0, deadline - time.monotonic())):
                        print(
                            f"warning: camera {worker.name} did not finish within {FINISH_S:g} s "
                            "of being stopped; leaving it",
                            file=sys.stderr,
                        )
    seconds = time.perf_counter() - started
    return WatchResult(
        {w.name: w.summary for w in workers},
        {w.name: w.error for w in workers if w.error is not None},
        seconds,
        log.count,
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`detect watch`'s flags."""
    p.add_argument(
        "site",
        type=Path,
        help="site file: cameras (name, source, zones, lines, outputs); README: Watch a site",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--server", help="HOST:PORT of a running `detect serve` (overrides the file)"
    )
    where.add_argument(
        "--model", type=Path, help="exported NAME.onnx, run here (overrides the file)"
    )
    p.add_argument("--events", type=Path, help="the site's event log (overrides the file)")
    p.add_argument(
        "--max-frames", type=int, help="stop each camera after this many processed frames"
    )
    p.add_argument(
        "--status-every",
        type=float,
        default=10.0,
        help="seconds between status lines when stderr is not a terminal",
    )
    add_device_flag(p, "--model")
    add_backend_flag(p)
    add_connection_flags(p)


def run(args: argparse.Namespace) -> int:
    """`detect watch` from parsed flags: status lines on stderr, the summaries on stdout; exit 1
    when a camera failed."""
    if args.status_every <= 0:
        raise ConfigError(f"--status-every {args.status_every}: give seconds, more than 0")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames {args.max_frames}: use 1 or more")
    site = read_site(
        args.site,
        args.server,
        args.model,
        args.events,
        args.max_frames,
        Connection.from_args(args),
        None if args.device == "auto" else args.device,
        None if args.backend == "auto" else args.backend,
    )
    result = watch(site, args.status_every)
    for name, summary in result.summaries.items():
        print(f"camera {name}:")
        for text in summary.lines():
            print(f"  {text}")
    totals = result.as_dict()
    print(
        f"site: {len(result.summaries)} cameras, {totals['frames_processed']} frames processed in "
        f"{totals['seconds']:.1f} s ({totals['fps']:.2f} frames/s), {result.events} events"
    )
    outputs = [str(p) for p in (site.events, site.summary) if p is not None]
    outputs += [str(p) for c in site.cameras for p in (c.jsonl, c.out_video) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))
    for name, error in result.errors.items():
        print(f"error: camera {name}: {error}", file=sys.stderr)
    if site.summary is not None:
        try:
            site.summary.parent.mkdir(parents=True, exist_ok=True)
            site.summary.write_text(json.dumps(totals, indent=2))
        except OSError as exc:
            raise DataError(f"summary {site.summary}: cannot write it ({exc.strerror})") from None
    return 1 if result.errors else 0

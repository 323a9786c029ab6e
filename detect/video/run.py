"""The `detect video` run: frames from `detect.video.source`, detections from a local backend or
the server (`detect.video.remote`), then tracks, zone and line counts (`detect.zones`), the
annotated MP4, JSONL and the summary. SIGTERM/SIGINT end the run after the frame in hand: the MP4
is finalised (playable) and every JSONL line is complete (each is flushed when written).

`VideoRun` is one camera's run; `detect watch` runs one per camera, in threads, sharing a local
backend or each with its own stream to the server.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from detect.appearance import colour_histograms
from detect.errors import DataError, DetectError
from detect.progress import StartProgress, silent
from detect.settings import check
from detect.structures import Detections, DetectOptions
from detect.track import Tracker, TrackerConfig
from detect.video.annotate import annotate_frame, detection_records
from detect.video.budget import Budget
from detect.video.clips import EventClips
from detect.video.config import VideoConfig
from detect.video.health import HealthMonitor
from detect.video.motion import HELD, URGENT, MotionGate
from detect.video.proof import Proof, event_proof
from detect.video.source import FrameSource, SourceCounts, is_live
from detect.video.stages import StageTimes
from detect.video.summary import VideoSummary
from detect.video.writer import VideoWriter
from detect.zones import Counting

if TYPE_CHECKING:  # the gRPC side loads only for --server
    from detect.client import DetectorClient
    from detect.runtime.backend import Backend
    from detect.video.remote import Gated


class StreamLostError(DetectError):
    """The server went away in the middle of a run's stream (after its ``retry`` attempts, if
    any). ``summary``: the run up to then (`VideoRun.run` sets it; the outputs hold those
    frames)."""

    summary: VideoSummary | None = None


EventSink = Callable[[dict[str, Any], Proof | None], None]
"""Receives each zone or line event of a run as it is confirmed (`detect.zones`)."""


@dataclass
class LocalModel:
    """An open backend that several runs share; one frame at a time goes through it."""

    backend: Backend
    lock: threading.Lock = field(default_factory=threading.Lock)

    def detect(
        self,
        frame: np.ndarray,
        options: DetectOptions,
        stages: StageTimes,
        queued_since: float | None = None,
        done: Callable[[], None] = lambda: None,
    ) -> Detections:
        """Detections of one ``(H, W, 3)`` uint8 BGR frame. To ``stages``: the time it waited
        for the model (since ``queued_since``, `time.perf_counter`'s, when it waited for a
        budget slot before), the model's run and post-processing's. ``done`` is called once, as
        soon as the model has run or failed (a budget slot given back), so that
        post-processing, outside the lock, runs beside the next camera's model run. Not
        `detect_batch`: that times the three together."""
        backend = self.backend
        start = time.perf_counter() if queued_since is None else queued_since
        try:
            with self.lock:
                taken = time.perf_counter()
                (raw,) = backend.infer_batch([backend.prepare(frame, "BGR")], options)
        finally:
            done()
        ran = time.perf_counter()
        detections = Detections.from_list(backend.postprocess(raw, options))
        stages.add("queue", taken - start)
        stages.add("model", ran - taken)
        stages.add("postprocess", time.perf_counter() - ran)
        return detections

    @classmethod
    @contextlib.contextmanager
    def open(cls, config: VideoConfig) -> Iterator[LocalModel]:
        """The backend of ``config.model``, or of its int8 model by ``config.engine.precision``
        (`detect.runtime.precision`)."""
        from detect.runtime.backend import open_backend
        from detect.runtime.precision import file_to_run

        assert config.model is not None
        backend = open_backend(
            model=file_to_run(config.model, config.engine),
            device=config.engine.device,
            engine=config.engine.backend,
            threads=config.engine.threads,
        )
        try:
            yield cls(backend)
        finally:
            backend.close()


def _results(
    config: VideoConfig,
    frames: FrameSource,
    local: LocalModel | None,
    client: DetectorClient | None = None,
    on_move: Callable[[], None] = lambda: None,
    gate: MotionGate | None = None,
    budget: Budget | None = None,
    stages: StageTimes | None = None,
) -> Iterator[Gated]:
    """Each frame with its detections and the motion gate's reason (``""`` without ``gate``;
    ``still``: not sent to the model, ``budget``: refused a slot of the site's ``budget``;
    detections None for both): through the server (`detect.video.remote.gated_stream`, on
    ``client``, else a client opened here) or a local backend (``local``, else opened here), one
    frame at a time. The time of each stage goes to ``stages`` (`detect.video.stages`)."""
    stages = stages or StageTimes()
    wait = None  # a real-time camera's frame waits for a slot one frame interval at most
    if config.realtime and budget is not None:
        wait = 1 / (frames.sampling_fps() or 10.0)
    if config.server is not None:
        from detect.client import DetectorClient
        from detect.video.remote import gated_stream

        with contextlib.ExitStack() as stack:
            if client is None:
                kwargs = config.connection.client_kwargs()
                client = stack.enter_context(DetectorClient(config.server, **kwargs, timeout=None))
                client.wait_spread()  # several servers: round_robin picks among them all
            how = (config.options, config.in_flight, config.retry, config.frame_deadline_ms)
            yield from gated_stream(client, frames, gate, *how, on_move, budget, wait, stages)
        return
    with contextlib.ExitStack() as stack:
        if local is None:
            local = stack.enter_context(LocalModel.open(config))
        for index, timestamp, frame in timed_read(frames, stages):
            why = ""
            if gate is not None:
                with stages.timed("motion"):
                    why = gate.decide(frame, timestamp)
            queued, release = None, lambda: None
            if why != "still" and budget is not None:
                queued = time.perf_counter()
                why = admit(budget, why, wait, frames.stopped.is_set, gate)
                if why == "budget":
                    stages.add("queue", time.perf_counter() - queued)
                else:
                    release = budget.release
            if why in HELD:
                yield index, timestamp, frame, None, why
                continue
            detections = local.detect(frame, config.options, stages, queued, release)
            yield index, timestamp, frame, detections, why


def timed_read(
    frames: Iterable[tuple[int, float, np.ndarray]], stages: StageTimes
) -> Iterator[tuple[int, float, np.ndarray]]:
    """``frames``, the time each took to come to ``stages`` (``read``)."""
    source = iter(frames)
    while True:
        start = time.perf_counter()
        item = next(source, None)
        if item is None:
            return
        stages.add("read", time.perf_counter() - start)
        yield item


def admit(
    budget: Budget,
    why: str,
    wait: float | None,
    halted: Callable[[], bool],
    gate: MotionGate | None,
) -> str:
    """A slot of the site's ``budget`` for a frame the gate sends to the model for ``why``
    (`URGENT` reasons go ahead), waiting ``wait`` seconds at most (None: until one is free, or
    ``halted()``). ``why`` when the frame has its slot (`Budget.release` it), else ``budget``
    (the gate keeps its old reference: `MotionGate.refused`)."""
    if budget.acquire(why in URGENT, wait, halted):
        return why
    if gate is not None:
        gate.refused()
    return "budget"


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
    ``client``: a client of ``config.server`` shared with other runs (else one is opened for
    this run): their streams share its channel, so that gRPC's round_robin spreads them over
    several servers;
    ``on_event``: receives each zone and line event as it is confirmed; ``track_ids``: the first
    track id and the step between ids (`Tracker`); ``counts``: where the source side counts
    (`SourceCounts`; a new one when None); ``cancel``: ends the retries of a live source that
    does not open (`FrameSource`). ``interrupted``: the SIGTERM/SIGINT that ended `run` early,
    if one did (the source was not read to its end). ``resume_after``: the JSONL is appended to
    instead of written afresh, and the source's frames up to this index are skipped (-1: none; a
    camera restarted on Ray, `detect.watch`). ``budget``: the site's model runs under way at once
    (`detect.video.budget`), shared with its other cameras.
    """

    def __init__(
        self,
        config: VideoConfig,
        local: LocalModel | None = None,
        on_event: EventSink | None = None,
        track_ids: tuple[int, int] = (1, 1),
        counts: SourceCounts | None = None,
        cancel: threading.Event | None = None,
        client: DetectorClient | None = None,
        resume_after: int | None = None,
        budget: Budget | None = None,
    ) -> None:
        check(config)
        self.budget = budget
        self.config = config
        self.local = local
        self.client = client
        self.on_event = on_event
        self.counting = config.counting.counter()
        wanted = config.track or bool(self.counting)
        tracker = TrackerConfig.of(config.tracker, confirm=config.track_confirm)
        self.tracker = Tracker(tracker, *track_ids) if wanted else None
        self.frames = FrameSource(config, counts, cancel)
        # each processed frame, its tracked detections and the counts so far (the site's web
        # page, `detect.watch.ui`): it keeps a reference, copies nothing, never waits
        self.on_picture: Callable[[np.ndarray, Detections, Counting], None] | None = None
        self.clips = None
        if config.event_clips.wanted and on_event is not None:
            rate = self.frames.sampling_fps() or 10.0
            name = config.name or "camera"
            self.clips = EventClips(config.event_clips, name, rate, is_live(config.source))
        self.health = None
        if config.camera_health.health and on_event is not None:
            self.health = HealthMonitor(config.camera_health)
            # the rate a live camera must keep (`HealthMonitor`'s fps); a file keeps none
            self._rate = self.frames.sampling_fps() if is_live(config.source) else None
            self.frames.on_health = lambda event: on_event(event, None)
            self.frames.stall_s = config.camera_health.health_stalled_s
        self._append = resume_after is not None
        if resume_after is not None:
            self.frames.skip_through = resume_after
        self.summary = VideoSummary(self.frames.counts)
        self.gate = MotionGate(config.motion) if config.motion else None
        self._last = Detections.of([], [])  # the last inferred frame's, tracked: a still frame's
        self._jsonl: TextIO | None = None
        self.interrupted: str | None = None

    def stop(self, reason: str) -> None:
        self.frames.stop(reason)

    def _moved(self) -> None:
        self.summary.server_moves += 1

    def _interrupt(self, reason: str) -> None:
        self.interrupted = reason
        self.stop(reason)

    def run(self, progress: Callable[[], None] = lambda: None) -> VideoSummary:
        """Process the source; ``progress`` is called after each frame. The summary."""
        config, summary = self.config, self.summary
        writer = None
        started = time.perf_counter()
        try:
            if config.jsonl is not None:
                try:
                    config.jsonl.parent.mkdir(parents=True, exist_ok=True)
                    mode = "a" if self._append else "w"
                    self._jsonl = config.jsonl.open(mode, encoding="utf-8")
                except OSError as exc:
                    raise DataError(
                        f"--jsonl {config.jsonl}: cannot write it ({exc.strerror}); "
                        "give a writable path"
                    ) from None
            with stop_on_signals(self._interrupt):
                for index, timestamp, frame, detections, why in _results(
                    config,
                    self.frames,
                    self.local,
                    self.client,
                    self._moved,
                    self.gate,
                    self.budget,
                    summary.stages,
                ):
                    if detections is None and why not in HELD:  # the server dropped it
                        if self.gate is not None:
                            self.gate.forget()  # its change was never seen by the model
                        summary.frames_dropped_by_server += 1
                        progress()
                        continue
                    if writer is None and config.out_video is not None:
                        writer = self._open_writer(frame)
                    self._process(index, timestamp, frame, detections, why, writer)
                    progress()
        except StreamLostError as exc:
            self.stop("server lost mid-stream")
            exc.summary = summary
            raise
        finally:
            summary.seconds = time.perf_counter() - started
            if self.counting:
                summary.counting = self.counting.summary()
            self.frames.close()
            if writer is not None:
                writer.close()
            if self.clips is not None:
                self.clips.close()
            if self._jsonl is not None:
                self._jsonl.close()
        return summary

    def _open_writer(self, frame: np.ndarray) -> VideoWriter:
        config = self.config
        assert config.out_video is not None
        try:
            config.out_video.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"--out-video {config.out_video}: {exc.strerror}") from None
        rate = config.target_fps or (self.frames.fps or 25.0) / config.every
        try:
            return VideoWriter(config.out_video, rate, frame.shape[1], frame.shape[0])
        except OSError:
            raise DataError(f"--out-video {config.out_video}: cannot write an MP4 there") from None

    def _process(
        self,
        index: int,
        timestamp: float,
        frame: np.ndarray,
        detections: Detections | None,
        why: str = "",
        writer: VideoWriter | None = None,
    ) -> None:
        """Track and count one frame's detections (``frame``: its ``(H, W, 3)`` BGR pixels),
        give its events, write its JSONL line and its annotated frame to ``writer`` (when
        asked); each stage's time once per frame. A ``still``
        frame (the motion gate's; ``detections`` None) keeps the last inferred frame's tracked
        detections: nothing moved since, so its tracks are held where they are (not advanced,
        not aged); so does a frame the site's ``budget`` refused (the next is on its way)."""
        summary, tracker = self.summary, self.tracker
        timed = summary.stages.timed
        if detections is None:
            detections = self._last
        else:
            if tracker is not None:
                with timed("tracking"):
                    appearance = tracker.config.appearance
                    looks = colour_histograms(frame, detections) if appearance else None
                    detections = tracker.update(detections, looks)
            self._last = detections
            summary.frames_inferred += 1
            summary.inferred_ms = timestamp
        summary.frames_processed += 1
        summary.last_ms = timestamp
        for label, track_id in zip(detections.labels, detections.track_ids.tolist(), strict=True):
            summary.detections[label] += 1
            if track_id >= 0:
                summary.tracks.setdefault(label, set()).add(track_id)
        record: dict[str, Any] = {
            "frame": index,
            "timestamp_ms": round(timestamp, 3),
            "detections": detection_records(detections),
        }
        if why:
            record["inferred"] = why not in HELD
            record["motion"] = why
        events: list[dict[str, Any]] = []
        with timed("counting"):
            if self.counting:
                live = tracker.live_ids() if tracker is not None else None
                counts, events = self.counting.update(detections, index, timestamp, live)
                if self.counting.zones:
                    record["zones"] = counts
                record["events"] = events
            if self.health is not None and self.on_event is not None:
                found, now = len(detections), time.monotonic()
                events = events + self.health.update(
                    frame, index, timestamp, found, now, self._rate
                )
        if writer is not None:
            with timed("drawing"):
                picture = self._frame(frame, index, detections)
        with timed("writing"):
            if self.on_event is not None:
                for event in events:
                    self._tell(event, frame, timestamp, detections)
            if self.clips is not None:
                self.clips.add(frame, timestamp)
            if self.on_picture is not None:
                self.on_picture(frame, detections, self.counting)
            self._write(record)
            if writer is not None:
                writer.write(picture)

    def _tell(
        self, event: dict[str, Any], frame: np.ndarray, timestamp: float, detections: Detections
    ) -> None:
        """Give ``event`` to ``on_event`` with its proof (``snapshots``), its clip started
        (``clip``: the MP4's path, in the event)."""
        assert self.on_event is not None
        if self.clips is not None:
            event["clip"] = str(self.clips.start(event, frame, timestamp).resolve())
        proof = event_proof(frame, detections, event) if self.config.snapshots else None
        self.on_event(event, proof)

    def _write(self, record: dict[str, Any]) -> None:
        if self._jsonl is None:
            return
        try:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        except OSError as exc:
            raise DataError(
                f"--jsonl {self.config.jsonl}: cannot write it ({exc.strerror})"
            ) from None

    def _frame(self, frame: np.ndarray, index: int, detections: Detections) -> np.ndarray:
        title = f"frame {index}  {len(detections)} objects"
        return annotate_frame(frame, detections, self.counting, title)


def run_video(config: VideoConfig, progress: StartProgress = silent) -> VideoSummary:
    """Process the source (see the module docstring), the frames done to ``progress``; the
    summary."""
    video = VideoRun(config)
    with progress("video", video.frames.planned(), "frames") as bar:
        return video.run(bar.update)

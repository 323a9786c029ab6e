"""`watch_on_ray`: a site's cameras as Ray actors (``detect watch --ray [ADDRESS]``).

The driver connects to Ray (`detect.cluster.connect`: a Ray started on this machine for
``--ray`` alone, else the cluster at the address) and creates one `CameraActor` per camera,
placed by Ray on any node with `CPUS_PER_CAMERA` free. Each actor runs its camera in a thread of
its own (`detect.watch.camera.CameraWorker`: its source, its own backend for a local ``model``
or its own client of the ``server``, its tracker, zones, lines, JSONL and MP4, written by the
actor: on a cluster the site's paths, made absolute here, must be on storage every node shares).
The driver polls every actor about once a second (`POLL_S`) for the events confirmed since the
last poll, its counts and its state; it writes the site's event log, the status lines and the
summary, as without Ray.

Restarts: an actor whose process (or node) dies is started again by Ray (``max_restarts=-1``)
and its camera resumes. A file source resumes after the last frame its JSONL holds (a line cut
short is removed, `detect.watch.resume`): the JSONL ends with each frame once, in order. Without
a JSONL it starts again from its first frame. A live source reopens, its JSONL appended to (its
frame numbers start again at 0). The tracker and the zones start afresh: a track that was live
gets a new id, after the camera's highest id so far (ids still name one object on the site), and
the restarted camera's summary counts what it did since its restart. Its MP4 cannot be appended
to: it is written afresh from the frame it resumes at. Events are numbered per camera (those
its JSONL holds come first after a restart), and the driver writes each number once. A restart
is a warning and counts in the camera's status line (``restarted 1x``); a live camera's event ids
carry the time of its restart (`detect.watch.events.EventLog.restarted`).

SIGTERM/SIGINT on the driver stop every camera after its frame in hand, as without Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from detect.errors import DetectError
from detect.runtime.model_card import ModelCard, card_path
from detect.video.config import VideoConfig
from detect.video.proof import Proof
from detect.video.run import stop_on_signals
from detect.video.source import is_live
from detect.video.summary import VideoSummary
from detect.watch.camera import CameraWorker, status_line
from detect.watch.events import EventLog, SiteEvents
from detect.watch.resume import resume_point
from detect.watch.site import Site
from detect.watch.status import StatusBoard
from detect.watch.ui.view import TICK_S

if TYPE_CHECKING:
    from detect.watch.run import WatchResult

log = logging.getLogger(__name__)

CPUS_PER_CAMERA = 0.25
"""Ray's CPU share of a camera actor: what places it (the engine itself uses the cores it
finds), so that several cameras fit on a small machine."""

POLL_S = 1.0
"""How often the driver asks each camera for its events and counts."""


class _Events:
    """A camera actor's events: its zone and line events numbered from 0 in the order they were
    confirmed (a restarted actor numbers them again from its JSONL, `resume_point`), and its
    health events (`detect.video.health`), which no JSONL holds: handed over once, in `since`."""

    def __init__(self, earlier: list[dict[str, Any]]) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[dict[str, Any], Proof | None]] = [(e, None) for e in earlier]
        self._health: list[tuple[dict[str, Any], Proof | None]] = []

    def write(self, camera: str, event: dict[str, Any], proof: Proof | None = None) -> None:
        with self._lock:
            (self._health if "health" in event else self._events).append((event, proof))

    def since(self, number: int) -> list[tuple[dict[str, Any], Proof | None]]:
        """The zone and line events from number ``number`` on, then the health events not yet
        handed over."""
        with self._lock:
            health, self._health = self._health, []
            return self._events[number:] + health


def _snapshot(summary: VideoSummary) -> VideoSummary:
    """A copy of a summary that the camera's thread goes on counting into."""
    return dataclasses.replace(
        summary,
        source=dataclasses.replace(summary.source),
        detections=summary.detections.copy(),
        tracks={label: set(ids) for label, ids in list(summary.tracks.items())},
        counting=dict(summary.counting),
    )


class CameraActor:
    """One camera on Ray (created by `watch_on_ray`): its `CameraWorker` started at once, from
    where its earlier process stopped when Ray restarted it. ``track_ids``: the camera's first
    track id and step (camera k of n: k, n)."""

    def __init__(self, config: VideoConfig, track_ids: tuple[int, int]) -> None:
        import ray

        self.resumed_after: int | None = None
        self._failure: str | None = None
        earlier: list[dict[str, Any]] = []
        if ray.get_runtime_context().was_current_actor_reconstructed:
            self.resumed_after = -1
            try:
                point = resume_point(config.jsonl) if config.jsonl is not None else None
            except DetectError as exc:
                self._failure = str(exc)
                point = None
            if point is not None:
                earlier = point.events
                if not is_live(config.source):
                    self.resumed_after = point.last_frame
                first, step = track_ids
                track_ids = (max(first, point.last_track_id + step), step)
        elif config.jsonl is not None:  # a restart must not resume from an earlier run's file
            with contextlib.suppress(OSError):  # the run says why it cannot write there
                config.jsonl.unlink(missing_ok=True)
        self.events = _Events(earlier)
        self.worker = CameraWorker(
            config, None, self.events, track_ids, resume_after=self.resumed_after
        )
        if self._failure is None:
            self.worker.start()

    def poll(self, written: int) -> dict[str, Any]:
        """The camera now: its process id, whether it was restarted (and after which frame),
        whether its thread still runs, its state and error, a copy of its summary, and its
        events from number ``written`` on."""
        worker = self.worker
        if self._failure is not None:
            running, state, error = False, "failed", self._failure
        else:
            running = not worker.join(timeout=0)
            state, error = worker.shown_state, worker.error
        return {
            "pid": os.getpid(),
            "resumed_after": self.resumed_after,
            "running": running,
            "state": state,
            "error": error,
            "summary": _snapshot(worker.summary),
            "events": self.events.since(written),
        }

    def stop(self, reason: str) -> None:
        """End the camera after the frame in hand."""
        self.worker.stop(reason)


@dataclasses.dataclass
class _Camera:
    """The driver's view of one camera actor, from its last poll."""

    name: str
    actor: Any
    summary: VideoSummary = dataclasses.field(default_factory=VideoSummary)
    state: str = "starting"
    error: str | None = None
    running: bool = True
    written: int = 0  # its zone and line events in the site's log
    pid: int | None = None
    restarts: int = 0
    asked: Any = None  # the poll on its way
    asked_at: float = -float("inf")

    @property
    def shown_state(self) -> str:
        """Its state as its actor last said it (reconnecting included)."""
        return self.state

    def status(self, fps: float) -> str:
        return status_line(self.name, self.state, self.summary, fps, self.restarts)

    def take(self, answer: dict[str, Any], events: EventLog) -> None:
        """A poll's answer: its events into the site's log, its counts and state kept."""
        if self.pid is not None:
            restarted = answer["pid"] != self.pid
        else:  # its first answer: restarted before it
            restarted = answer["resumed_after"] is not None
        if restarted:
            self.restarts += 1
            events.restarted(self.name)
            after = answer["resumed_after"]
            log.warning(
                "camera %s restarted by Ray (its process died)%s",
                self.name,
                f"; it resumes after frame {after}" if after is not None and after >= 0 else "",
            )
        self.pid = answer["pid"]
        for event, proof in answer["events"]:
            events.write(self.name, event, proof)
        self.written += sum("health" not in event for event, _ in answer["events"])
        self.summary, self.state, self.error = answer["summary"], answer["state"], answer["error"]
        self.running = answer["running"]


def _chosen_model(config: VideoConfig) -> VideoConfig:
    """``config`` running the file its ``precision`` picks of its local ``model``, chosen here
    (and said once) rather than by each camera's actor (`detect.runtime.precision`)."""
    if config.model is None:
        return config
    from detect.runtime.precision import file_to_run

    chosen = file_to_run(config.model, config.engine)
    exact = dataclasses.replace(config.engine, precision="fp32")  # fp32: the file given
    return dataclasses.replace(config, model=chosen, engine=exact)


def watch_on_ray(site: Site, status_every: float, stream: TextIO = sys.stderr) -> WatchResult:
    """`detect.watch.run.watch` with each camera a Ray actor (see the module docstring); the
    summaries (`WatchResult`)."""
    import ray

    from detect.cluster import connect
    from detect.watch.run import FINISH_S, WatchResult, model_info, site_client

    started = time.perf_counter()
    configs = [_chosen_model(config) for config in site.cameras]
    first = configs[0]
    model: dict[str, str] = {}  # what the site's page says of it (``--ui``)
    if first.server is not None:  # a wrong address: one error now, not retries
        with site_client(first) as client:
            if site.settings.ui is not None:
                model = model_info(None, client)
    elif first.model is not None and site.settings.ui is not None:
        card = ModelCard.read(card_path(first.model))
        model = {"name": card.name, "version": card.sha256[:12], "engine": "on the Ray workers"}
    events = SiteEvents(site)
    ui = None
    try:
        if site.settings.ui is not None:
            from detect.watch.ui.server import start_ui

            ui = start_ui(site, events.log, model, stream)
        connect(site.settings.cluster)
        remote = ray.remote(num_cpus=CPUS_PER_CAMERA, max_restarts=-1, max_task_retries=-1)(
            CameraActor
        )
        n = len(site.cameras)
        cameras = [
            _Camera(config.name, remote.remote(config.absolute(), (k + 1, n)))
            for k, config in enumerate(configs)
        ]
        board = StatusBoard(cameras, status_every, stream)
        asked: list[str] = []  # SIGTERM/SIGINT: the handler only records it, the loop acts

        def on_signal(reason: str) -> None:
            if asked:
                log.error("%s again: exiting without finishing", reason)
                os._exit(130)
            asked.append(reason)

        def stop_all(reason: str) -> None:
            for camera in cameras:
                if camera.running:
                    camera.actor.stop.remote(reason)

        with stop_on_signals(on_signal):
            due, ui_due = time.monotonic() + board.every, time.monotonic()
            stopping = False
            try:
                while any(c.running for c in cameras):
                    if asked and not stopping:
                        stop_all(asked[0])
                        stopping = True
                    _poll(cameras, events.log)
                    if time.monotonic() >= due:
                        board.tick()
                        events.tick(cameras, board)
                        due += board.every
                    if ui is not None and time.monotonic() >= ui_due:
                        ui.view.tick(cameras)
                        ui_due = time.monotonic() + TICK_S
                board.tick()
                events.tick(cameras, board)
                if ui is not None:
                    ui.view.tick(cameras)
            finally:
                if any(c.running for c in cameras):
                    stop_all(asked[0] if asked else "watch ended")
                    deadline = time.monotonic() + FINISH_S
                    while any(c.running for c in cameras) and time.monotonic() < deadline:
                        _poll(cameras, events.log)
                    for camera in cameras:
                        if camera.running:
                            log.warning(
                                "camera %s did not finish within %g s of being stopped; leaving it",
                                camera.name,
                                FINISH_S,
                            )
    finally:
        ray.shutdown()
        if ui is not None:
            ui.close()
        events.close()
    return WatchResult(
        {c.name: c.summary for c in cameras},
        {c.name: c.error for c in cameras if c.error is not None},
        time.perf_counter() - started,
        events.log.count,
        sinks=events.report,
    )


def _poll(cameras: list[_Camera], events: EventLog) -> None:
    """Ask each running camera that was not asked within `POLL_S` again, then take the answers
    that come within a moment. A poll of an actor that Ray is restarting waits for the new
    one (``max_task_retries``); an actor gone for good fails its camera."""
    import ray
    import ray.exceptions

    now = time.monotonic()
    for camera in cameras:
        if camera.running and camera.asked is None and now - camera.asked_at >= POLL_S:
            camera.asked, camera.asked_at = camera.actor.poll.remote(camera.written), now
    waiting = [c.asked for c in cameras if c.asked is not None]
    if not waiting:
        time.sleep(0.1)
        return
    ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0.2)
    for camera in cameras:
        if camera.asked is None or camera.asked not in ready:
            continue
        answer, camera.asked = camera.asked, None
        try:
            camera.take(ray.get(answer), events)
        except ray.exceptions.ActorDiedError as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            camera.running, camera.state = False, "failed"
            camera.error = f"its Ray actor died: {line}"
        except ray.exceptions.RayError:  # unavailable for a moment: asked again next time
            pass

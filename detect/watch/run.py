"""`watch`: every camera of a site until each ends or SIGTERM/SIGINT (see `detect.watch`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from detect.errors import DataError
from detect.video.budget import Budget
from detect.video.config import VideoConfig
from detect.video.run import LocalModel, stop_on_signals
from detect.video.summary import VideoSummary
from detect.watch.camera import CameraWorker
from detect.watch.events import SiteEvents
from detect.watch.site import Site
from detect.watch.status import StatusBoard
from detect.watch.ui.view import TICK_S, SiteView

if TYPE_CHECKING:  # the gRPC side loads only for a server, the web page's only for --ui
    from detect.client import DetectorClient

log = logging.getLogger(__name__)


FINISH_S = 30.0  # how long stopped cameras get to finish their frame in hand


@dataclass
class WatchResult:
    """Each camera's summary and error (None: it ran to its end), the site's totals;
    ``counting_scores``: the counting figures of each camera whose ground truth the site names
    (``truth``; `detect.metrics.counting.score_counting`)."""

    summaries: dict[str, VideoSummary]
    errors: dict[str, str]
    seconds: float
    events: int
    counting_scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    sinks: dict[str, dict[str, int]] = field(default_factory=dict)

    def _camera(self, name: str) -> dict[str, Any]:
        """A camera's summary, error and (with ground truth) ``ground_truth.counting``."""
        camera = {**self.summaries[name].as_dict(), "error": self.errors.get(name)}
        if name in self.counting_scores:
            camera["ground_truth"] = {"counting": self.counting_scores[name]}
        return camera

    def as_dict(self) -> dict[str, Any]:
        processed = sum(s.frames_processed for s in self.summaries.values())
        return {
            "cameras": {name: self._camera(name) for name in self.summaries},
            "seconds": round(self.seconds, 3),
            "frames_processed": processed,
            "fps": round(processed / self.seconds, 3) if self.seconds else 0.0,
            "events": self.events,
        } | ({"sinks": self.sinks} if self.sinks else {})


@contextlib.contextmanager
def site_client(config: VideoConfig) -> Iterator[DetectorClient]:
    """A client of the site's servers (``config.server``), once every one has answered: a wrong
    address is one error now, not retries."""
    from detect.client import DetectorClient

    assert config.server is not None
    kwargs = config.connection.client_kwargs()
    with DetectorClient(config.server, **kwargs, timeout=None) as client:
        client.wait_ready(timeout=10)
        client.health("", timeout=10)
        client.wait_spread()
        yield client


def watch(site: Site, status_every: float = 10.0, stream: TextIO = sys.stderr) -> WatchResult:
    """Run every camera of the site until each ends or SIGTERM/SIGINT (see the module
    docstring); the summaries. With ``--ray`` each camera is a Ray actor
    (`detect.watch.actors`)."""
    if site.settings.cluster.ray is not None:
        from detect.watch.actors import watch_on_ray

        return _score_counts(site, watch_on_ray(site, status_every, stream))
    first = site.cameras[0]
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        events = SiteEvents(site)
        stack.callback(events.close)
        local = client = None
        if first.model is not None:
            local = stack.enter_context(LocalModel.open(first))
        else:  # one channel for every camera's stream: round_robin spreads them over servers
            client = stack.enter_context(site_client(first))
        ui = None
        if site.settings.ui is not None:
            ui = stack.enter_context(_ui(site, events, model_info(local, client), stream))
        n, budget = len(site.cameras), site_budget(site)
        workers = [
            CameraWorker(config, local, events.log, (k + 1, n), client, view=ui, budget=budget)
            for k, config in enumerate(site.cameras)
        ]
        board = StatusBoard(workers, status_every, stream)

        def stop_all(reason: str) -> None:
            for worker in workers:
                worker.stop(reason)

        asked: list[str] = []  # SIGTERM/SIGINT: the handler only records it, the loop acts

        def on_signal(reason: str) -> None:
            if asked:  # a second signal: the user does not want to wait
                log.error("%s again: exiting without finishing", reason)
                os._exit(130)
            asked.append(reason)

        with stop_on_signals(on_signal):
            for worker in workers:
                worker.start()
            try:
                due, ui_due = time.monotonic() + board.every, time.monotonic()
                while not all(w.join(timeout=0.1) for w in workers):
                    if asked:
                        stop_all(asked[0])
                    if time.monotonic() >= due:
                        board.tick()
                        events.tick(workers, board)
                        due += board.every
                    if ui is not None and time.monotonic() >= ui_due:
                        ui.tick(workers)
                        ui_due = time.monotonic() + TICK_S
                board.tick()
                events.tick(workers, board)
                if ui is not None:
                    ui.tick(workers)
            finally:  # whatever ended the loop, the cameras finish before the model closes
                stop_all(asked[0] if asked else "watch ended")
                deadline = time.monotonic() + FINISH_S
                for worker in workers:
                    if not worker.join(max(0.0, deadline - time.monotonic())):
                        log.warning(
                            "camera %s did not finish within %g s of being stopped; leaving it",
                            worker.name,
                            FINISH_S,
                        )
    seconds = time.perf_counter() - started
    result = WatchResult(
        {w.name: w.summary for w in workers},
        {w.name: w.error for w in workers if w.error is not None},
        seconds,
        events.log.count,
        sinks=events.report,
    )
    return _score_counts(site, result)


def site_budget(site: Site) -> Budget | None:
    """The site's `Budget` (`detect.video.budget`): ``budget`` slots, by default 1 for a local
    model and 2 per server; None for 0."""
    first = site.cameras[0]
    slots = site.settings.budget
    if slots is None:
        slots = 1 if first.server is None else 2 * len(first.server.split(","))
    return Budget(slots) if slots else None


def model_info(local: LocalModel | None, client: DetectorClient | None) -> dict[str, str]:
    """What the site's page says of the model: its name, version and engine (a local model's
    engine and provider; a server's provider)."""
    if local is not None:
        backend: Any = local.backend
        info = backend.info
        engine = getattr(backend, "engine", None)
        where = f"{engine.name} ({backend.provider})" if engine is not None else ""
        return {"name": info.name, "version": info.version, "engine": where}
    if client is not None:
        served = client.model_info()
        return {"name": served.name, "version": served.version, "engine": served.provider}
    return {}


@contextlib.contextmanager
def _ui(
    site: Site, events: SiteEvents, model: dict[str, str], stream: TextIO
) -> Iterator[SiteView]:
    """The site's web page (``--ui``) while the block runs; its view."""
    from detect.watch.ui.server import start_ui

    server = start_ui(site, events.log, model, stream)
    try:
        yield server.view
    finally:
        server.close()


def _score_counts(site: Site, result: WatchResult) -> WatchResult:
    """``result`` with the counting figures of each camera that has ground truth (``truth``),
    zones or lines, and ran without error; a warning for one whose JSONL or truth cannot be
    scored."""
    for config in site.cameras:
        if config.truth is None or config.jsonl is None or config.name in result.errors:
            continue
        if not config.counting.counter():
            continue
        from detect.metrics.clip import ClipRun
        from detect.metrics.counting import score_counting  # pycocotools: the eval extra

        try:
            run = ClipRun.read(config.truth, config.jsonl)
            result.counting_scores[config.name] = score_counting(run, config.counting)
        except DataError as exc:
            log.warning("camera %s: its counts are not scored: %s", config.name, exc)
    return result

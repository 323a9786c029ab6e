"""`CameraWorker`: one camera of a site on its own thread: opens its source (retrying a live
one: `detect.video.source.open_source`), runs it, keeps its state for the status line."""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from detect.errors import DetectError
from detect.video.config import VideoConfig
from detect.video.run import LocalModel, VideoRun
from detect.video.source import SourceCounts, is_live
from detect.video.summary import VideoSummary
from detect.watch.events import EventWriter

if TYPE_CHECKING:  # the gRPC side loads only for a server, the web page's only for --ui
    from detect.client import DetectorClient
    from detect.video.budget import Budget
    from detect.watch.ui.view import SiteView

log = logging.getLogger(__name__)


@dataclass
class CameraWorker:
    """One camera's thread: opens its source (retrying a live one), runs it, keeps its state."""

    config: VideoConfig
    local: LocalModel | None
    log: EventWriter
    track_ids: tuple[int, int]
    client: DetectorClient | None = None  # the site's, shared by its cameras' streams
    resume_after: int | None = None  # `VideoRun`'s: a camera restarted on Ray
    view: SiteView | None = None  # the site's web page (`detect.watch.ui`), given its frames
    budget: Budget | None = None  # the site's model runs at once (`detect.video.budget`)
    counts: SourceCounts = field(default_factory=SourceCounts)  # its source's, from the start
    state: str = "starting"
    error: str | None = None
    _video: VideoRun | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def summary(self) -> VideoSummary:
        """The run's summary; before the source opens, its counts alone."""
        video = self._video
        return video.summary if video is not None else VideoSummary(self.counts)

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
                self.counts.stopped = reason

    def _main(self) -> None:
        config = self.config
        try:
            if is_live(config.source):
                self.state = "connecting"  # retried as its reconnections are (`FrameSource`)
            video = VideoRun(
                config,
                self.local,
                lambda event, proof: self.log.write(config.name, event, proof),
                self.track_ids,
                self.counts,
                self._stopped,
                self.client,
                self.resume_after,
                self.budget,
            )
            if self.view is not None:
                view = self.view
                video.on_picture = lambda *picture: view.offer(config.name, *picture)
            with self._lock:
                if self._stopped.is_set():
                    self.state = "stopped"
                    video.frames.close()
                    return
                self._video = video
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
        log.warning("camera %s stopped: %s", self.name, error)

    @property
    def shown_state(self) -> str:
        """``state``, or ``reconnecting`` while its source or stream is being reopened."""
        video = self._video
        return "reconnecting" if video is not None and video.frames.reconnecting else self.state

    def status(self, fps: float) -> str:
        return status_line(self.name, self.shown_state, self.summary, fps)


def status_line(name: str, state: str, summary: VideoSummary, fps: float, restarts: int = 0) -> str:
    """A camera's status line: its state, ``fps`` processed frames per second, its counts, its
    coverage (the share of its frames the model ran on, the motion gate's, and the video seconds
    since the last) and how often it was restarted (a camera on Ray whose process died)."""
    s = summary
    dropped = s.frames_dropped + s.frames_dropped_by_server
    return (
        f"{name}: {state}, {fps:.1f} frames/s, {s.frames_processed} processed, "
        f"{dropped} dropped, {s.reconnects} reconnects, "
        f"model on {s.coverage:.0%}, last {s.inferred_age_s:.1f} s ago"
        + (f", moved to another server {s.server_moves}x" if s.server_moves else "")
        + (f", restarted {restarts}x" if restarts else "")
    )

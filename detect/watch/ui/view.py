"""`SiteView`: what the site's web page shows, kept by the watch as it runs.

Four feeds, none of which waits on the page:
* each camera's thread `offer`\\ s its processed frames; one is kept (a reference, its detections
  and a copy of its counts) only while a page has asked for the camera's picture within
  `WANTED_S` seconds, and at most `PICTURE_FPS` a second. The page's request draws it
  (`detect.video.annotate.annotate_frame`) and encodes it once for every viewer (`picture`);
* the event log (`detect.watch.events.EventLog`) gives it every event (`event`): the last
  `RECENT` are kept, each camera's counts by zone or line, kind and class are tallied, its health
  problems (`detect.video.health`) followed;
* the watch loop's tick, every `TICK_S` (`tick`): each camera's state, processed frames/s,
  dropped frames and reconnects; every `SAMPLE_S` a sample of its counts for the plot (the last
  `HISTORY` samples: an hour);
* the end of the run (`finish`).

Pages follow it through `subscribe`: a bounded queue per page, filled from any thread; a page
that lags loses its oldest messages, never the cameras' time. Memory is bounded by the number of
cameras: one frame each, `RECENT` events, `HISTORY` samples, `QUEUE` messages per page.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import cv2
import numpy as np

from detect.structures import Detections
from detect.video.annotate import annotate_frame
from detect.zones import Counting

PICTURE_FPS = 5.0
WANTED_S = 3.0
RECENT = 200
TICK_S = 1.0
SAMPLE_S = 5.0
HISTORY = 720
QUEUE = 256
JPEG_QUALITY = 80


class Camera(Protocol):
    """A camera as the status tick sees it (`detect.watch.camera.CameraWorker`, or on Ray the
    driver's view of a camera actor)."""

    name: str

    @property
    def summary(self) -> Any: ...

    @property
    def shown_state(self) -> str: ...


@dataclass
class _Picture:
    """A camera's latest frame kept for the page, and its JPEG once drawn."""

    wanted_until: float = 0.0
    taken_at: float = 0.0
    frame: tuple[np.ndarray, Detections, Counting] | None = None
    number: int = 0  # of the frame kept
    jpeg: bytes | None = None
    jpeg_number: int = -1
    drawing: threading.Lock = field(default_factory=threading.Lock)  # one page draws a frame


@dataclass
class _CameraView:
    """What the page shows of one camera."""

    name: str
    state: dict[str, Any] = field(default_factory=dict)
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    problems: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    picture: _Picture = field(default_factory=_Picture)
    processed: tuple[float, int] = (0.0, 0)  # at the last tick: when, frames processed


def count_key(event: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(zone or line, kind, class)`` of a counting event, as the summary's ``counts`` name
    them (`detect.zones.Counting.counts`): a zone's ``enter`` or ``exit``, a line's direction
    (``forward``, ``backward``); None for a health event."""
    place = event.get("zone", event.get("line"))
    if place is None:
        return None
    kind = str(event.get("direction", event.get("event", "")))
    return str(place), kind, str(event.get("label", ""))


class SiteView:
    """The page's view of a site: ``info`` (its name, model and servers, said once) and its
    cameras by name, fed as the module docstring says."""

    def __init__(
        self, info: dict[str, Any], cameras: list[str], media: dict[str, Path] | None = None
    ) -> None:
        self.info = info
        self.media = media or {}
        self._lock = threading.Lock()
        self._cameras = {name: _CameraView(name) for name in cameras}
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._pages: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.ended = False

    @property
    def cameras(self) -> list[str]:
        return list(self._cameras)

    # --- the cameras' threads

    def offer(
        self, camera: str, frame: np.ndarray, detections: Detections, counting: Counting
    ) -> None:
        """A processed ``(H, W, 3) uint8`` BGR frame of ``camera``: kept when a page wants it
        and the last one kept is `PICTURE_FPS` old (the frame is not copied: a camera's frames
        are not written to after they are processed)."""
        picture = self._cameras[camera].picture
        now = time.monotonic()
        if now > picture.wanted_until or now - picture.taken_at < 1.0 / PICTURE_FPS:
            return
        counts = copy.copy(counting)
        counts.totals = Counter(counting.totals)
        with self._lock:
            picture.frame = (frame, detections, counts)
            picture.number += 1
            picture.taken_at = now

    # --- the event log

    def event(self, record: dict[str, Any]) -> None:
        """An event as the log wrote it (`detect.watch.events`): kept, counted, sent to pages."""
        with self._lock:
            view = self._cameras.get(str(record.get("camera")))
            if view is None:
                return
            record = record | {"urls": self._urls(record)}
            self._recent.append(record)
            key = count_key(record)
            if key is not None:
                view.counts[key] += 1
            elif "health" in record:
                if record.get("event") == "problem":
                    view.problems[str(record["health"])] = record
                else:
                    view.problems.pop(str(record["health"]), None)
            message = ("detect", record)
            self._send(message)
            self._send(("camera", self._camera_locked(view)))

    def _urls(self, record: dict[str, Any]) -> dict[str, str]:
        """The page's URLs (relative: ``media/KEY/PATH``) of the event's ``snapshot``, ``crop``
        and ``clip`` files that lie in one of the ``media`` folders."""
        urls = {}
        for what in ("snapshot", "crop", "clip"):
            if what not in record:
                continue
            path = Path(record[what])
            for key, root in self.media.items():
                if path.is_relative_to(root):
                    where = quote(f"{key}/{path.relative_to(root).as_posix()}")
                    urls[what] = f"media/{where}"
                    break
        return urls

    # --- the watch loop

    def tick(self, cameras: list[Camera]) -> None:
        """Each camera's state (its status word), processed frames/s since the last tick,
        dropped frames, reconnects; a sample of its counts when one is due."""
        now, wall = time.monotonic(), time.time()
        with self._lock:
            for camera in cameras:
                view = self._cameras[camera.name]
                s = camera.summary
                then, before = view.processed
                done = s.frames_processed - before  # < 0: a Ray camera restarted, counting anew
                rate = done / (now - then) if then and done >= 0 else 0.0
                view.processed = (now, s.frames_processed)
                view.state = {
                    "state": camera.shown_state,
                    "fps": round(rate, 2),
                    "processed": s.frames_processed,
                    "dropped": s.frames_dropped + s.frames_dropped_by_server,
                    "reconnects": s.reconnects,
                }
                if not view.history or wall - view.history[-1]["time"] >= SAMPLE_S:
                    totals: Counter[str] = Counter()
                    for (place, kind, _), n in view.counts.items():
                        totals[f"{place}:{kind}"] += n
                    view.history.append({"time": round(wall, 3), "totals": dict(totals)})
            self._send(("site", self._site_locked()))

    def finish(self) -> None:
        """The run ended: pages are told, and their streams end."""
        with self._lock:
            self.ended = True
            self._send(("site", self._site_locked()))
            self._send(("end", {}))

    # --- the pages

    def want(self, camera: str) -> bool:
        """A page asks for ``camera``'s picture: it is kept for `WANTED_S` seconds from now;
        False for no such camera."""
        view = self._cameras.get(camera)
        if view is None:
            return False
        view.picture.wanted_until = time.monotonic() + WANTED_S
        return True

    def picture(self, camera: str) -> bytes | None:
        """``camera``'s latest kept frame, drawn and as a JPEG (drawn once per frame for every
        page); None before any."""
        picture = self._cameras[camera].picture
        with picture.drawing:  # the others wait for its JPEG instead of drawing it again
            with self._lock:
                kept, number = picture.frame, picture.number
                if kept is None or picture.jpeg_number == number:
                    return picture.jpeg
            frame, detections, counts = kept
            drawn = annotate_frame(frame, detections, counts, camera)
            ok, data = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            with self._lock:
                if ok:
                    picture.jpeg, picture.jpeg_number = data.tobytes(), number
                return picture.jpeg

    def site(self) -> dict[str, Any]:
        """Everything a page that opens needs: ``info``, each camera with its counts' history,
        and the recent events."""
        with self._lock:
            site = self._site_locked(history=True)
            return {**site, "recent": list(self._recent)}

    def _site_locked(self, history: bool = False) -> dict[str, Any]:
        """The site now; each camera's counts history (``history``) or its latest sample."""
        cameras = []
        for view in self._cameras.values():
            camera = self._camera_locked(view)
            samples = list(view.history) if history else list(view.history)[-1:]
            cameras.append(camera | {"history": samples})
        return {"info": self.info, "ended": self.ended, "cameras": cameras}

    @staticmethod
    def _camera_locked(view: _CameraView) -> dict[str, Any]:
        return {
            "name": view.name,
            **view.state,
            "counts": [
                {"place": p, "kind": k, "label": label, "count": n}
                for (p, k, label), n in sorted(view.counts.items())
            ],
            "problems": sorted(view.problems),
        }

    def subscribe(self) -> asyncio.Queue:
        """A queue of ``(kind, data)`` messages for the page on the running event loop: ``site``
        (each tick; each camera's latest counts sample as its ``history``), ``camera`` (a
        camera's counts and problems after its event), ``detect`` (an event) and ``end``; the
        oldest are dropped when it holds `QUEUE`."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE)
        with self._lock:
            self._pages.append((asyncio.get_running_loop(), queue))
            if self.ended:
                queue.put_nowait(("end", {}))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._pages = [(loop, q) for loop, q in self._pages if q is not queue]

    def _send(self, message: tuple[str, dict[str, Any]]) -> None:
        for loop, queue in self._pages:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_put_newest, queue, message)


def _put_newest(queue: asyncio.Queue, message: Any) -> None:
    """Put ``message``, dropping the oldest when ``queue`` is full (a page that lags)."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(message)

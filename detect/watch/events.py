"""A site's events: their one schema, their ids, the event log (`EventLog`) and, with sinks,
the outbox and delivery beside it (`SiteEvents`).

Every event, in the log, on MQTT and to a webhook, is one JSON object::

    {"id": "gate:7:door:enter:120", "site": "shop", "camera": "gate",
     "time": "2026-12-06T21:30:00.123Z", "zone": "door", "event": "enter", "track_id": 7,
     "label": "person", "frame": 120, "timestamp_ms": 12000.0}

``time`` is the wall clock (UTC) when the event was confirmed; ``frame`` and ``timestamp_ms``
place it in the camera's stream; a line's events carry ``line`` and ``direction`` instead of
``zone``, an ``exit`` its ``dwell_s`` (`detect.zones`). ``id`` is stable: camera, track, zone or
line, kind (and direction), frame (`event_id`), so a consumer can drop the repeats that
at-least-once delivery may bring. A live camera's ids also carry the time its run started
(``gate@1765056600000:7:...``, ms since 1970): its frames are numbered from 0 again when `detect
watch` restarts, or when Ray restarts the camera (`EventLog.restarted`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from detect.errors import ConfigError, DataError
from detect.video.proof import Proof
from detect.video.source import is_live

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0

if TYPE_CHECKING:
    from detect.watch.delivery import Delivery
    from detect.watch.metrics import WatchMetrics
    from detect.watch.outbox import Outbox
    from detect.watch.site import Site
    from detect.watch.status import StatusBoard


class EventWriter(Protocol):
    """Where a camera's thread sends each event it confirms (`EventLog`, or on Ray the camera
    actor's buffer that the driver polls)."""

    def write(self, camera: str, event: dict[str, Any], proof: Proof | None = None) -> None: ...


def event_kind(event: dict[str, Any]) -> str:
    """``place:kind`` of an event: ``door:enter``, ``entry:cross-forward``, ``dark:problem``."""
    kind = str(event.get("event", ""))
    if "direction" in event:
        kind += f"-{event['direction']}"
    return f"{event.get('zone', event.get('line', event.get('health', '')))}:{kind}"


def run_start() -> str:
    """The ``run`` of a live camera starting now (`event_id`): milliseconds since 1970."""
    return str(int(time.time() * 1000))


def event_id(camera: str, event: dict[str, Any], run: str = "") -> str:
    """``camera[@run]:track:place:kind:frame`` (a line's kind with its direction:
    ``cross-forward``; a health event's place is its problem and its track ``-``:
    ``gate:-:frozen:problem:120``); ``run``: a live camera's start (`SiteEvents`)."""
    head = f"{camera}@{run}" if run else camera
    return f"{head}:{event.get('track_id', '-')}:{event_kind(event)}:{event.get('frame')}"


class EventLog:
    """The site's event log: one JSON line per event (the schema above), written and flushed as
    events come, from any camera's thread; with an ``outbox``, each event is put there first."""

    def __init__(
        self,
        path: Path | None,
        site: str = "",
        outbox: Outbox | None = None,
        runs: dict[str, str] | None = None,
        snapshots: Path | None = None,
        metrics: WatchMetrics | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self.site = site
        self.snapshots = snapshots
        self.metrics = metrics
        self.outbox = outbox
        self.runs = runs or {}
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = path.open("w", encoding="utf-8")
            except OSError as exc:
                raise DataError(
                    f"events log {path}: cannot write it ({exc.strerror}); give a writable path"
                ) from None
        self.count = 0
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)  # per camera, per event
        # told each event as written, in the log's order (the site's web page, `detect.watch.ui`)
        self.watchers: list[Callable[[dict[str, Any]], None]] = []

    def write(self, camera: str, event: dict[str, Any], proof: Proof | None = None) -> None:
        """Log ``event`` of ``camera``; with its ``proof`` and a ``snapshots`` folder, its
        pictures are written there first and named in the event (``snapshot``, ``crop``)."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record = {
            "id": event_id(camera, event, self.runs.get(camera, "")),
            "site": self.site,
            "camera": camera,
            "time": stamp,
            **event,
        }
        if proof is not None and self.snapshots is not None:
            record |= self._pictures(camera, record["id"], proof)
        with self._lock:
            self.count += 1
            kind = event_kind(event)
            self.counts[camera][kind] += 1
            if self.metrics is not None:
                self.metrics.observe(record, kind)
            if self.outbox is not None:
                self.outbox.put(record)
            if self._file is not None:
                try:
                    self._file.write(json.dumps(record) + "\n")
                    self._file.flush()
                except OSError as exc:
                    raise DataError(
                        f"events log {self._file.name}: cannot write it ({exc.strerror})"
                    ) from None
            for watcher in self.watchers:
                try:
                    watcher(record)
                except Exception:  # the web page's trouble never stops a camera
                    log.exception("the site page could not take event %s", record["id"])

    def restarted(self, camera: str) -> None:
        """``camera`` started again (on Ray, its process died): a live camera numbers its frames
        from 0 again, so its ids from now on carry the new start (`run_start`)."""
        with self._lock:
            if camera in self.runs:
                self.runs[camera] = run_start()

    def _pictures(self, camera: str, event: str, proof: Proof) -> dict[str, str]:
        """Write ``proof`` as ``<snapshots>/<camera>/<event id>.jpg`` (and ``-crop.jpg``); their
        absolute paths by key. A folder that cannot be written: a warning, and no pictures."""
        assert self.snapshots is not None
        folder = self.snapshots / camera
        name = event.replace(":", "_").replace("@", "_")
        files = {"snapshot": (folder / f"{name}.jpg", proof.frame)}
        if proof.crop is not None:
            files["crop"] = (folder / f"{name}-crop.jpg", proof.crop)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for path, data in files.values():
                path.write_bytes(data)
        except OSError as exc:
            log.warning("snapshots %s: cannot write them (%s)", folder, exc.strerror)
            return {}
        return {key: str(path.resolve()) for key, (path, _) in files.items()}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class SiteEvents:
    """A site's event log and, when it has ``sinks``, its outbox and sinks (connected here:
    a sink that cannot be used is a `ConfigError` before any camera starts)."""

    def __init__(self, site: Site) -> None:
        self.delivery: Delivery | None = None
        settings = site.settings
        if settings.sinks:
            from detect.watch.delivery import Delivery

            self.delivery = Delivery.open(
                list(settings.sinks),
                site.name,
                site.outbox,
                settings.outbox_max_events,
                settings.outbox_max_age_h * 3600,
            )
        self.metrics: WatchMetrics | None = None
        try:  # a port or a log that cannot be had: the sinks connected above are let go
            if settings.metrics_port is not None:
                from detect.watch.metrics import WatchMetrics

                self.metrics = WatchMetrics()
                port = self.metrics.serve(settings.metrics_port)
                print(f"metrics on port {port}: http://127.0.0.1:{port}/metrics", file=sys.stderr)
            started = run_start()
            runs = {c.name: started for c in site.cameras if is_live(c.source)}
            outbox = self.delivery.outbox if self.delivery is not None else None
            self.log = EventLog(site.events, site.name, outbox, runs, site.snapshots, self.metrics)
        except (ConfigError, DataError):
            if self.delivery is not None:
                self.delivery.close(0)
            raise
        self.drain_s = settings.drain_s
        self.snapshots, self.snapshots_max_age_s = (
            site.snapshots,
            settings.snapshots_max_age_h * 3600,
        )
        self._pruned = 0.0
        self._prune_snapshots()
        self.report: dict[str, dict[str, int]] = {}
        if self.delivery is not None:
            self.delivery.start()

    def _prune_snapshots(self) -> None:
        """Delete the pictures older than ``snapshots_max_age_h`` (at most once an hour)."""
        now = time.time()
        if self.snapshots is None or now - self._pruned < PRUNE_EVERY_S:
            return
        self._pruned = now
        for path in self.snapshots.glob("*/*"):
            with contextlib.suppress(OSError):
                old = now - path.stat().st_mtime > self.snapshots_max_age_s
                if path.suffix in (".jpg", ".mp4") and old:
                    path.unlink()

    def tick(self, cameras: list[Any], board: StatusBoard) -> None:
        """At each status line: each camera's state to the sinks that keep one (MQTT's retained
        ``state``: online, its state, processed frames/s over the last interval, frames
        processed, its events so far by place and kind, ``door:enter``), and the metrics."""
        self._prune_snapshots()
        fps = {c.name: f for c, f in zip(cameras, board.fps, strict=True)}
        if self.metrics is not None:
            self.metrics.refresh(fps, {c.name: c.summary for c in cameras}, self.delivery)
        if self.delivery is None:
            return
        for camera in cameras:
            self.delivery.state(
                camera.name,
                {
                    "online": camera.state not in ("ended", "failed", "stopped"),
                    "state": camera.state,
                    "fps": round(fps[camera.name], 2),
                    "frames_processed": camera.summary.frames_processed,
                    "frames_inferred": camera.summary.frames_inferred,
                    "counts": dict(self.log.counts.get(camera.name, {})),
                },
            )

    def close(self) -> None:
        """Close the log; give the sinks ``drain_s`` to send what is left (`report`: per sink,
        delivered, refused and left for the next run)."""
        self.log.close()
        if self.delivery is None:
            return
        delivery = self.delivery
        left = delivery.close(self.drain_s)
        self.report = {
            name: {"delivered": s.delivered, "refused": s.refused, "left": left[name]}
            for name, s in delivery.stats.items()
        }

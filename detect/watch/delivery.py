"""Delivery of a site's events (`Delivery`): the outbox and one thread per sink.

Each sink's thread takes the events after its cursor, oldest first, and sends each one that
passes its filters (`SinkSettings.wants`); the cursor moves only past an event delivered,
filtered out or refused for good (`RefusedError`). A sink that is down (`SinkDownError`) is
tried again with the same event after a pause that doubles from 0.5 s up to its
``max_backoff_s``: its events arrive at least once and in order. A sink failing never stops
the cameras.

At the end of a run `Delivery.close` gives the sinks up to ``drain_s`` seconds to send what is
left, then says, per sink, what stays in the outbox for the next run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detect.watch.outbox import Outbox
from detect.watch.sinks import RefusedError, Sink, SinkDownError, SinkSettings, open_sink

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
IDLE_S = 0.1  # how often an idle sink looks for new events


@dataclass
class SinkStats:
    """What one sink did in this run."""

    delivered: int = 0
    refused: int = 0
    retries: int = 0
    last_error: str = ""


@dataclass
class Delivery:
    """The outbox and the connected sinks; `start` runs their threads."""

    outbox: Outbox
    sinks: list[Sink]
    stats: dict[str, SinkStats] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        settings: list[SinkSettings],
        site: str,
        path: Path,
        max_events: int,
        max_age_s: float,
    ) -> Delivery:
        """Connect every sink (`ConfigError` for the first that cannot be used, the others
        closed) and open the outbox at ``path``."""
        sinks: list[Sink] = []
        try:
            for entry in settings:
                sinks.append(open_sink(entry, site))
            outbox = Outbox(path, [s.name for s in sinks], max_events, max_age_s)
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        return cls(outbox, sinks, {s.name: SinkStats() for s in sinks})

    def start(self) -> None:
        for sink in self.sinks:
            thread = threading.Thread(
                target=self._run, args=(sink,), name=f"sink {sink.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def state(self, camera: str, state: dict[str, Any]) -> None:
        """Give ``camera``'s current state to the sinks that publish states (MQTT)."""
        for sink in self.sinks:
            publish = getattr(sink, "state", None)
            cameras = sink.settings.cameras
            if publish is not None and (not cameras or camera in cameras):
                try:
                    publish(camera, state)
                except Exception as exc:  # a state is replaced by the next one
                    log.warning("sink %s: cannot publish %s's state (%s)", sink.name, camera, exc)

    def _run(self, sink: Sink) -> None:
        """The sink's thread: never ends before `close`, whatever a sink or the outbox raises
        (an unexpected error is logged once and the same event tried again, backing off)."""
        stats = self.stats[sink.name]
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                batch = self.outbox.pending(sink.name)
                if not batch:
                    self._stop.wait(IDLE_S)
                    continue
                delivered = True
                for seq, event in batch:
                    delivered = self._deliver(sink, seq, event, stats)
                    if not delivered or self._stop.is_set():
                        break
            except Exception as exc:  # a bug or a broken outbox: keep the thread, say it once
                delivered = False
                text = f"{type(exc).__name__}: {exc}"
                if text != stats.last_error:
                    log.error("sink %s: %s; trying again", sink.name, text)
                stats.last_error = text
            if delivered:
                backoff = FIRST_BACKOFF_S
                continue
            stats.retries += 1
            self._stop.wait(backoff)
            backoff = min(2 * backoff, sink.settings.max_backoff_s)

    def _deliver(self, sink: Sink, seq: int, event: dict[str, Any], stats: SinkStats) -> bool:
        """Deal with one event: False when the sink asks to retry it later."""
        if sink.settings.wants(event):
            try:
                sink.send(event)
            except SinkDownError as exc:
                if str(exc) != stats.last_error:
                    log.warning("sink %s: %s; its events wait in the outbox", sink.name, exc)
                stats.last_error = str(exc)
                return False
            except RefusedError as exc:
                stats.refused += 1
                log.warning(
                    "sink %s refused event %s for good (%s); kept in the outbox's failures",
                    sink.name,
                    event.get("id"),
                    exc,
                )
                self.outbox.failed(sink.name, seq, event, str(exc))
                return True
            stats.delivered += 1
            stats.last_error = ""
        self.outbox.done(sink.name, seq)
        return True

    def left(self) -> dict[str, int]:
        """Events each sink has still to deal with."""
        return {s.name: self.outbox.left(s.name) for s in self.sinks}

    def close(self, drain_s: float) -> dict[str, int]:
        """Wait up to ``drain_s`` for the sinks to empty the outbox, stop them and close; what
        each sink has left for the next run."""
        deadline = time.monotonic() + drain_s
        while any(self.left().values()) and time.monotonic() < deadline:
            if not any(t.is_alive() for t in self._threads):
                break
            time.sleep(IDLE_S)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(s.settings.timeout_s for s in self.sinks) + 1)
        left = self.left()
        for sink in self.sinks:
            sink.close()
        self.outbox.close()
        return left

"""The site's durable outbox (`Outbox`): every event is written to it before any sink sends it.

One SQLite file in WAL mode. Table ``events`` holds each event's JSON in arrival order (``seq``);
table ``cursors`` holds, per sink, the ``seq`` of the last event it has dealt with (delivered,
filtered out, or failed for good); table ``failures`` keeps the events a sink refused for good
(a webhook's 4xx) with the reason, for inspection. An event every sink has dealt with is deleted.

A transaction committed here survives the process being killed (WAL), so a restarted
`detect watch` on the same file delivers what the last run left. The outbox is bounded: beyond
``max_events`` events, or for events older than ``max_age_s``, the oldest are deleted and counted
as dropped (`Outbox.dropped`, and a warning) instead of growing without end; ``failures`` keeps
at most as many, for as long.

A sink seen for the first time starts at the newest event: it receives what happens from then
on, not the backlog of the sinks configured before it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detect.errors import DataError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    body TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    sink TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    """Events on disk until every sink in ``sinks`` (their names) has dealt with them; safe to
    use from several threads (the cameras put, each sink's thread takes)."""

    def __init__(
        self, path: Path, sinks: list[str], max_events: int = 100_000, max_age_s: float = 7 * 86400
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise DataError(
                f"outbox {self.path}: cannot open it ({exc}); give a writable path, or delete "
                "a file that is not a detect outbox"
            ) from None
        newest = self._newest()
        for sink in sinks:
            self._db.execute("INSERT OR IGNORE INTO cursors VALUES (?, ?)", (sink, newest))
        self.sinks = list(sinks)
        self._prune()

    def _newest(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def put(self, event: dict[str, Any]) -> None:
        """Append ``event`` (a JSON-able mapping with its ``camera``), durably."""
        body = json.dumps(event)
        with self._lock:
            try:
                seq = self._db.execute(
                    "INSERT INTO events (camera, body, created) VALUES (?, ?, ?)",
                    (str(event.get("camera", "")), body, time.time()),
                ).lastrowid
            except sqlite3.Error as exc:
                raise DataError(f"outbox {self.path}: cannot write it ({exc})") from None
            if seq is not None and seq % 64 == 0:  # the bounds hold to within 64 events
                try:
                    self._prune_locked()
                except sqlite3.Error as exc:  # the event is in; pruning waits for the next time
                    log.warning("outbox %s: cannot prune it now (%s)", self.path, exc)

    def pending(self, sink: str, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` ``(seq, event)`` after ``sink``'s cursor, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body FROM events WHERE seq > (SELECT seq FROM cursors WHERE sink = ?)"
                " ORDER BY seq LIMIT ?",
                (sink, limit),
            ).fetchall()
        return [(int(seq), json.loads(body)) for seq, body in rows]

    def done(self, sink: str, seq: int) -> None:
        """``sink`` has dealt with every event up to ``seq``."""
        with self._lock:
            self._db.execute(
                "UPDATE cursors SET seq = ? WHERE sink = ? AND seq < ?", (seq, sink, seq)
            )

    def failed(self, sink: str, seq: int, event: dict[str, Any], reason: str) -> None:
        """``sink`` refused the event ``seq`` for good: kept in ``failures``, and passed."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO failures VALUES (?, ?, ?, ?, ?)",
                (sink, seq, json.dumps(event), reason, time.time()),
            )
            self._db.execute(
                "UPDATE cursors SET seq = ? WHERE sink = ? AND seq < ?", (seq, sink, seq)
            )

    def left(self, sink: str) -> int:
        """Events ``sink`` has still to deal with."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM events WHERE seq > (SELECT seq FROM cursors WHERE sink = ?)",
                (sink,),
            ).fetchone()
        return int(row[0])

    def failures(self, sink: str | None = None) -> list[dict[str, Any]]:
        """The events refused for good (by ``sink``, or by any), each with ``sink`` and
        ``reason``."""
        query = "SELECT sink, body, reason FROM failures"
        rows = self._db.execute(
            query + (" WHERE sink = ?" if sink else ""), (sink,) if sink else ()
        )
        return [{"sink": s, "reason": r, "event": json.loads(b)} for s, b, r in rows.fetchall()]

    @property
    def dropped(self) -> int:
        """Events deleted by the bounds before every sink had them (in this file's life)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(row[0]) if row else 0

    def _prune(self) -> None:
        with self._lock:
            self._prune_locked()

    def _prune_locked(self) -> None:
        """Delete what every sink has dealt with, then what is beyond the bounds (counted)."""
        with self._transaction():
            over = self._prune_in_transaction()
        if over:
            log.warning(
                "outbox %s: dropped the %d oldest undelivered events (bounds: %d events, %g h)",
                self.path,
                over,
                self.max_events,
                self.max_age_s / 3600,
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction: committed, or rolled back when the block raises (the connection is
        never left inside a transaction)."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _prune_in_transaction(self) -> int:
        """Delete what every sink has dealt with, then the events and failures beyond the
        bounds; how many of those events (counted as dropped)."""
        db = self._db
        db.execute(
            "DELETE FROM events WHERE seq <= (SELECT COALESCE(MIN(seq), 0) FROM cursors "
            f"WHERE sink IN ({','.join('?' * len(self.sinks))}))",
            self.sinks,
        )
        oldest = time.time() - self.max_age_s
        over = db.execute(
            "DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ? OR created < ?",
            (self.max_events, oldest),
        ).rowcount
        db.execute(
            "DELETE FROM failures WHERE rowid <= (SELECT MAX(rowid) FROM failures) - ? OR at < ?",
            (self.max_events, oldest),
        )
        if over:
            db.execute(
                "INSERT INTO counters VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (over,),
            )
        return int(over)

    def close(self) -> None:
        try:
            self._prune()
        except sqlite3.Error as exc:  # what is in stays in: pruning waits for the next run
            log.warning("outbox %s: cannot prune it (%s)", self.path, exc)
        with self._lock:
            self._db.close()

"""The site's event log (`EventLog`): one JSON line per zone or line event of any camera."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

from detect.errors import DataError


class EventWriter(Protocol):
    """Where a camera's thread sends each event it confirms (`EventLog`, or on Ray the camera
    actor's buffer that the driver polls)."""

    def write(self, camera: str, event: dict[str, Any]) -> None: ...


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

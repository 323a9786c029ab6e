"""`resume_point`: where a camera restarted on Ray (`detect.watch.actors`) takes up its run, read
from the JSONL its earlier process wrote."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detect.errors import DataError


@dataclass
class ResumePoint:
    """What a camera's JSONL says of its run so far: the index of its last frame written (-1:
    none), its highest track id (0: none) and its zone and line events, in order."""

    last_frame: int = -1
    last_track_id: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def resume_point(jsonl: Path) -> ResumePoint:
    """The resume point of a camera whose process died while writing ``jsonl`` (one JSON line
    per frame, `detect.video.run.VideoRun`): a last line cut short (no newline) is removed from
    the file first, so that the run appends after its last complete line. A missing file: a run
    with nothing written."""
    point = ResumePoint()
    try:
        with jsonl.open("rb+") as file:
            data = file.read()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) < len(data):
                file.truncate(len(complete))
                file.flush()
                os.fsync(file.fileno())
    except FileNotFoundError:
        return point
    except OSError as exc:
        raise DataError(f"jsonl {jsonl}: cannot resume from it ({exc.strerror})") from None
    for number, line in enumerate(complete.decode("utf-8", "replace").splitlines(), 1):
        try:
            record = json.loads(line)
            point.last_frame = int(record["frame"])
            ids = [int(d["track_id"]) for d in record["detections"]]
            events = list(record.get("events", []))
        except (ValueError, KeyError, TypeError):
            raise DataError(
                f"jsonl {jsonl}: line {number} is not a frame's record; cannot resume after it "
                "(move the file away to start the camera afresh)"
            ) from None
        point.last_track_id = max([point.last_track_id, *ids])
        point.events.extend(events)
    return point

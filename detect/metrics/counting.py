"""Counting accuracy: how far a run's zone and line events are from the true ones.

**True events**: the clip's ground-truth tracks (`detect.metrics.clip`) fed through the same
`detect.zones.Counting` as the run (the same zones, lines, anchor and ``min_frames``), over the
frames the run processed (its JSONL's), at each frame's ground-truth ``timestamp_ms``: each
annotation's TLWH ``bbox`` a detection (as xyxy) with track id = the object's identity. An object
is followed from its first annotated frame to its last (through frames where it is hidden); after
its last it has ended, as a track the tracker drops (a zone it is in then exits, ``lost``).

**Counted events**: the run's, the ``events`` of its JSONL's records (`run_events`), or those of
one camera in a `detect watch` event log (`read_event_log`); those of zones and lines not scored
are left out.

**Which object a run track is**: in each frame where the track has a box, the ground-truth object
of the same class that the box overlaps most, at IoU >= 0.5 (`MATCH_IOU`), if any; the track is
the object that is so in most of its frames (more than half of them), else no object, and its
events match none.

**Matching**: a counted event matches a true one of the same zone or line, the same event
(``enter``, ``exit``, or a crossing's direction ``forward`` / ``backward``), class and object,
at most ``window`` frames away (clip frame indices). One to one, by the Hungarian algorithm
(scipy's ``linear_sum_assignment``): as many matches as possible, then the least total frame
distance. The default window, 10 frames (`WINDOW`, 1 s of the synthetic clips' 10 fps), covers
the tracker's delay in showing a new track (an object first seen inside a zone enters late by
it) and the frame or two that box jitter moves a crossing, while one object seldom makes the
same event twice in it.

Of the counted events left unmatched, a crossing is a **wrong direction** when its object has an
unmatched true crossing of that line in the other direction within the window (paired one to
one, nearest first); any other is a **double count** when a counted event of the same object,
zone or line and event (direction included) matched; the rest did not happen (or belong to no
object). Each counts in the row of the counted event.

The figures (`score_counting`), per zone or line, event and class and pooled over all of them
(``all``): ``true``, ``counted``, ``error`` (counted - true), ``matched``, ``precision``
(matched / counted), ``recall`` (matched / true), ``f1`` (2 matched / (true + counted)); None
where a denominator is 0; ``double_counts``, ``wrong_directions``; for exits the dwell-time error
of matched exits, |counted ``dwell_s`` - true ``dwell_s``|: ``dwell_error_mean_s`` and
``dwell_error_max_s`` (None without a matched exit).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from detect.errors import DataError, UsageError
from detect.metrics.clip import ClipRun, read_json_lines, record_detections, truth_frames
from detect.ops.boxes import box_iou
from detect.structures import Detections

if TYPE_CHECKING:
    from detect.zones import CountingSettings

WINDOW = 10
"""Frames a counted event may be from its true one and match (see the module docstring)."""

MATCH_IOU = 0.5
"""The IoU at which a run's box is a ground-truth object's."""


@dataclass(frozen=True)
class _Event:
    """One zone or line event as scored: zone or line ``name``, ``what`` (``enter``, ``exit``,
    ``forward``, ``backward``), class, frame, the ground-truth object (None: none) and, for an
    exit, its dwell in seconds."""

    name: str
    what: str
    label: str
    frame: int
    obj: int | None
    dwell_s: float | None

    @property
    def row(self) -> tuple[str, str, str]:
        return self.name, self.what, self.label


def _event(event: dict[str, Any], obj: int | None) -> _Event:
    """An event dict of `detect.zones.Counting` as scored."""
    what = event["direction"] if event["event"] == "cross" else event["event"]
    name = event["zone"] if "zone" in event else event["line"]
    return _Event(name, what, event["label"], int(event["frame"]), obj, event.get("dwell_s"))


def true_events(
    data: dict[str, Any], frames: list[int], settings: CountingSettings
) -> list[dict[str, Any]]:
    """The events of the clip's ground truth ``data`` over ``frames`` (frame indices, in order),
    counted with ``settings`` (see the module docstring), as `detect.zones.Counting` dicts."""
    counting = settings.counter()
    time_of = {
        int(img["frame_index"]): float(img.get("timestamp_ms", 0.0)) for img in data["images"]
    }
    truth_of = truth_frames(data)
    last: dict[int, int] = {}
    for frame in sorted(truth_of):
        for track_id in truth_of[frame].track_ids.tolist():
            last[track_id] = frame
    nothing = Detections.of([], [])
    events: list[dict[str, Any]] = []
    for frame in frames:
        live = {track_id for track_id, end in last.items() if end >= frame}
        found = truth_of.get(frame, nothing)
        events += counting.update(found, frame, time_of.get(frame, 0.0), live)[1]
    return events


def track_objects(records: list[dict[str, Any]], data: dict[str, Any]) -> dict[int, int | None]:
    """Which ground-truth object each track of the run's ``records`` is (None: none; see the
    module docstring), by track id."""
    truth_of = truth_frames(data)
    nothing = Detections.of([], [])
    votes: dict[int, Counter] = {}
    seen: Counter = Counter()
    for record in records:
        truth = truth_of.get(record["frame"], nothing)
        found = record_detections(record["detections"])
        tracked = np.flatnonzero(found.track_ids >= 0)
        if not len(tracked):
            continue
        iou = box_iou(found.xyxy[tracked], truth.xyxy)
        for k, i in enumerate(tracked):
            track_id = int(found.track_ids[i])
            seen[track_id] += 1
            same = np.flatnonzero(truth.labels == found.labels[i])
            best = max(same, key=lambda j: iou[k, j], default=None)
            if best is not None and iou[k, best] >= MATCH_IOU:
                votes.setdefault(track_id, Counter())[int(truth.track_ids[best])] += 1
    objects: dict[int, int | None] = {}
    for track_id, frames in seen.items():
        top = votes.get(track_id, Counter()).most_common(1)
        objects[track_id] = top[0][0] if top and 2 * top[0][1] > frames else None
    return objects


EVENT_KEYS = "zone or line, event (enter, exit, cross with a direction), label, frame"
"""What an event needs to be scored, for messages."""


def _is_event(event: Any) -> bool:
    """Whether ``event`` is a `detect.zones.Counting` event dict that can be scored."""
    if not isinstance(event, dict) or not isinstance(event.get("zone", event.get("line")), str):
        return False
    kind, direction = event.get("event"), event.get("direction")
    return (
        (kind in ("enter", "exit") or (kind == "cross" and direction in ("forward", "backward")))
        and isinstance(event.get("label"), str)
        and isinstance(event.get("frame"), int)
        and isinstance(event.get("track_id", -1), int)
        and isinstance(event.get("dwell_s", 0.0), int | float)
    )


def run_events(records: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """The events in the run's JSONL ``records`` (read from ``path``); DataError when none of
    them has ``events`` (the run counted nothing) or for an event that is not one."""
    if not any("events" in r for r in records):
        raise DataError(
            f"{path}: its records have no 'events' (the run had no zones or lines); score a run "
            "that counted, or give its event log with --events"
        )
    events = []
    for record in records:
        found = record.get("events", [])
        if not isinstance(found, list) or not all(map(_is_event, found)):
            raise DataError(
                f"{path} frame {record['frame']}: an event without {EVENT_KEYS}; score the "
                "JSONL of `detect video` or `detect watch`"
            )
        events += found
    return events


def read_event_log(
    path: Path, camera: str | None, site: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The events of ``camera`` in a `detect watch` event log (one JSON object a line, each with
    ``camera``); ``camera`` None: the log's only camera. DataError for a bad line, UsageError
    for a log of several cameras without ``camera``, or for a camera the log has no event of
    unless it is one of the ``site``'s cameras (which may have had none)."""
    events = read_json_lines(
        path,
        f"--events {path}",
        lambda event: _is_event(event) and "camera" in event,
        f"an event of a `detect watch` event log (camera, {EVENT_KEYS})",
    )
    cameras = sorted({str(e["camera"]) for e in events})
    if camera is None:
        if len(cameras) > 1:
            raise UsageError(
                f"--events {path} holds the events of cameras {', '.join(cameras)}: name one "
                "with --camera"
            )
        return events
    if events and camera not in cameras and camera not in site:
        raise UsageError(
            f"--camera {camera}: --events {path} has no event of that camera (it has "
            f"{', '.join(cameras)}); check the name, or give the site file with --site"
        )
    return [e for e in events if e["camera"] == camera]


def _match(truth: list[_Event], counted: list[_Event], window: int) -> list[tuple[int, int]]:
    """One-to-one ``(truth index, counted index)`` pairs of the same zone or line, event, class
    and object at most ``window`` frames apart: the most pairs, then the least total distance."""
    if not truth or not counted:
        return []
    distance = np.array([[abs(t.frame - c.frame) for c in counted] for t in truth], np.float64)
    same = np.array(
        [[t.row == c.row and t.obj == c.obj and c.obj is not None for c in counted] for t in truth]
    )
    allowed = same & (distance <= window)
    # a pair not allowed costs more than every allowed pair together: the most pairs come first
    cost = np.where(allowed, distance, (window + 1) * (len(truth) + len(counted)))
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


def _wrong_directions(
    truth: list[_Event], counted: list[_Event], missed: set[int], extra: set[int], window: int
) -> set[int]:
    """The unmatched counted crossings (indices of ``extra``) paired, nearest first, with an
    unmatched true crossing (of ``missed``) of the same line and object in the other direction
    within ``window`` frames."""
    other = {"forward": "backward", "backward": "forward"}
    pairs = sorted(
        (abs(truth[t].frame - counted[c].frame), t, c)
        for c in extra
        for t in missed
        if counted[c].what in other
        and counted[c].obj is not None
        and (truth[t].name, truth[t].what, truth[t].obj)
        == (counted[c].name, other[counted[c].what], counted[c].obj)
        and abs(truth[t].frame - counted[c].frame) <= window
    )
    used_truth: set[int] = set()
    wrong: set[int] = set()
    for _, t, c in pairs:
        if t not in used_truth and c not in wrong:
            used_truth.add(t)
            wrong.add(c)
    return wrong


def _figures(
    true: int, counted: int, matched: int, double: int, wrong: int, dwell: list[float]
) -> dict[str, Any]:
    return {
        "true": true,
        "counted": counted,
        "error": counted - true,
        "matched": matched,
        "precision": round(matched / counted, 4) if counted else None,
        "recall": round(matched / true, 4) if true else None,
        "f1": round(2 * matched / (true + counted), 4) if true + counted else None,
        "double_counts": double,
        "wrong_directions": wrong,
        "dwell_error_mean_s": round(float(np.mean(dwell)), 3) if dwell else None,
        "dwell_error_max_s": round(max(dwell), 3) if dwell else None,
    }


def counting_figures(truth: list[_Event], counted: list[_Event], window: int) -> dict[str, Any]:
    """The figures of the module docstring: ``rows`` (one per zone or line, event and class:
    ``name``, ``event``, ``label`` and the figures) and ``all``."""
    pairs = _match(truth, counted, window)
    matched_truth = {t for t, _ in pairs}
    matched_counted = {c for _, c in pairs}
    missed = set(range(len(truth))) - matched_truth
    extra = set(range(len(counted))) - matched_counted
    wrong = _wrong_directions(truth, counted, missed, extra, window)
    done = {(counted[c].obj, counted[c].name, counted[c].what) for c in matched_counted}
    double = {
        c for c in extra - wrong if (counted[c].obj, counted[c].name, counted[c].what) in done
    }
    dwell = {
        c: abs(counted[c].dwell_s - truth[t].dwell_s)
        for t, c in pairs
        if counted[c].dwell_s is not None and truth[t].dwell_s is not None
    }
    keys = sorted({e.row for e in truth} | {e.row for e in counted})
    rows = []
    for key in keys:
        mine = [c for c, e in enumerate(counted) if e.row == key]
        rows.append(
            {
                "name": key[0],
                "event": key[1],
                "label": key[2],
                **_figures(
                    sum(e.row == key for e in truth),
                    len(mine),
                    sum(c in matched_counted for c in mine),
                    sum(c in double for c in mine),
                    sum(c in wrong for c in mine),
                    [dwell[c] for c in mine if c in dwell],
                ),
            }
        )
    pooled = _figures(
        len(truth), len(counted), len(pairs), len(double), len(wrong), list(dwell.values())
    )
    return {"window_frames": window, "rows": rows, "all": pooled}


def score_counting(
    run: ClipRun,
    settings: CountingSettings,
    window: int = WINDOW,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The counting figures (`counting_figures`) of ``run`` (`ClipRun.read`) on its clip,
    counted with ``settings``; the run's ``events`` (`read_event_log`'s; None: its JSONL's,
    `run_events`)."""
    data, records = run.data, run.records
    frames = sorted({int(r["frame"]) for r in records})
    truth = [_event(e, e["track_id"]) for e in true_events(data, frames, settings)]
    objects = track_objects(records, data)
    if events is None:
        events = run_events(records, run.jsonl_path)
    counted = [_event(event, objects.get(event.get("track_id", -1))) for event in events]
    scored = {zone.name for zone in settings.zones} | {line.name for line in settings.lines}
    return counting_figures(truth, [e for e in counted if e.name in scored], window)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _dwell(figures: dict[str, Any]) -> str:
    mean, top = figures["dwell_error_mean_s"], figures["dwell_error_max_s"]
    return "-" if mean is None else f"{mean:.2f} / {top:.2f}"


def counting_table(scores: dict[str, Any]) -> str:
    """The figures of `score_counting` as a text table: a row per zone or line, event and
    class, then ``all``."""
    head = (
        "zone/line",
        "event",
        "class",
        "true",
        "counted",
        "error",
        "P",
        "R",
        "F1",
        "double",
        "wrong dir",
        "dwell err s (mean / max)",
    )
    rows = [(r["name"], r["event"], r["label"], r) for r in scores["rows"]]
    rows.append(("all", "", "", scores["all"]))
    table = [head]
    for name, what, label, f in rows:
        table.append(
            (
                name,
                what,
                label,
                str(f["true"]),
                str(f["counted"]),
                f"{f['error']:+d}",
                _ratio(f["precision"]),
                _ratio(f["recall"]),
                _ratio(f["f1"]),
                str(f["double_counts"]),
                str(f["wrong_directions"]),
                _dwell(f),
            )
        )
    widths = [max(len(row[k]) for row in table) for k in range(len(head))]
    title = f"counting (events matched within {scores['window_frames']} frames)"
    lines = [title] + [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    return "\n".join(lines)

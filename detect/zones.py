"""Zone occupancy, zone visits and line crossings of tracked objects (surveillance counting).

Where an object is: its **anchor** points, from its xyxy box in pixels:

- ``bottom_center`` (default): ``((x1 + x2) / 2, y2)``, where it stands on the ground;
- ``center``: the box centre;
- ``box``: the four corners; the object is in a zone when the whole box is, and on a side of a
  line when all four corners are (a box across the line is on neither side yet).

Zones are named polygons (shapely ``covers``: the edge counts as inside); lines are named
segments. `Counting` follows each tracked object and reports, as event dicts:

- ``enter`` / ``exit`` of a zone: the object's anchor changed sides of the zone's edge and stayed
  there for ``min_frames`` processed frames in which the object was seen. The event carries the
  frame and time (``timestamp_ms``, video time) of the **first** of those frames, so waiting for
  confirmation delays the event but does not bias it. An exit carries ``dwell_s``, the seconds
  since the matching enter. A track that the tracker drops while inside exits at the last frame
  it was seen, with ``"lost": true`` (or, if it was already seen leaving, where it left). A new
  object first seen inside enters. Visits still open when the run ends have no exit: the summary
  counts them under ``inside``, and its dwell figures cover finished visits only.
- ``cross`` of a line: the anchor moved from one side of the line to the other *through the
  segment* (not beside it) and stayed on the new side for ``min_frames`` seen frames.
  ``direction`` is ``forward`` from the line's left to its right as seen on screen looking from
  (x1, y1) towards (x2, y2) — for a line drawn left to right, from above it to below it — or
  ``backward``. A box that flickers over the line for fewer than ``min_frames`` frames is not
  counted; one that stays counts once.

Untracked detections (track id -1) count in the per-frame occupancy but make no events.

`CountingSettings` declares what a camera counts (zones, lines, anchor, ``min_frames``) once, for
`detect video`, a site's cameras and `detect eval --video`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from detect.errors import ConfigError
from detect.settings import FLAGS, Spelling, at_least, setting
from detect.structures import Detections

ANCHORS = ("bottom_center", "center", "box")


@dataclass(frozen=True)
class _Object:
    """One row of a frame's `Detections` as counting sees it: track id (-1: untracked), class
    name, xyxy box."""

    track_id: int
    label: str
    box: tuple[float, float, float, float]


def anchor_points(box: tuple[float, float, float, float], anchor: str) -> np.ndarray:
    """The ``(K, 2)`` points ``(x, y)`` that place an xyxy box (see the module docstring)."""
    x1, y1, x2, y2 = box
    if anchor == "bottom_center":
        return np.array([[(x1 + x2) / 2, y2]])
    if anchor == "center":
        return np.array([[(x1 + x2) / 2, (y1 + y2) / 2]])
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])


@dataclass(frozen=True)
class Zone:
    """A named polygon (pixels)."""

    name: str
    polygon: shapely.Polygon

    def holds(self, points: np.ndarray) -> bool:
        """Whether every anchor point ``(K, 2)`` is inside or on the edge."""
        return bool(self.polygon.covers(shapely.points(points)).all())


@dataclass(frozen=True)
class Line:
    """A named segment from ``(x1, y1)`` to ``(x2, y2)`` (pixels)."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float

    @classmethod
    def parse(cls, text: str, default_name: str = "line", what: str = "--line") -> Line:
        """``[NAME=]x1,y1,x2,y2`` (the ``--line`` flag; ``what``: the setting as the user
        spelled it, for messages)."""
        name, named, coords = text.rpartition("=")
        if named and not name:
            raise ConfigError(f"{what} {text!r}: give a name before '=', or leave '=' out")
        try:
            x1, y1, x2, y2 = (float(v) for v in coords.split(","))
        except ValueError:
            raise ConfigError(f"{what} {text!r}: use [NAME=]x1,y1,x2,y2 in pixels") from None
        return cls.of(name or default_name, [[x1, y1], [x2, y2]], f"{what} {text!r}")

    @classmethod
    def of(cls, name: Any, points: Any, where: str) -> Line:
        """A line from a name and ``[[x1, y1], [x2, y2]]``; `ConfigError` naming ``where``."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: a line needs a non-empty 'name'")
        try:
            (x1, y1), (x2, y2) = ((float(x), float(y)) for x, y in points)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: line {name!r} needs 'points': [[x1, y1], [x2, y2]] in pixels"
            ) from None
        if (x1, y1) == (x2, y2):
            raise ConfigError(f"{where}: line {name!r}: the two points must differ")
        return cls(name, x1, y1, x2, y2)

    def side(self, points: np.ndarray) -> int:
        """+1 when every point ``(K, 2)`` is right of the line (looking from the first point to
        the second, on screen), -1 when every one is left of it, 0 otherwise (on or across)."""
        cross = (self.x2 - self.x1) * (points[:, 1] - self.y1) - (self.y2 - self.y1) * (
            points[:, 0] - self.x1
        )
        if (cross > 0).all():
            return 1
        if (cross < 0).all():
            return -1
        return 0

    def passes(self, start: np.ndarray, end: np.ndarray) -> bool:
        """Whether the path from point ``start`` to ``end`` (each ``(2,)``) meets the segment."""
        segment = shapely.LineString([(self.x1, self.y1), (self.x2, self.y2)])
        return bool(segment.intersects(shapely.LineString([start, end])))


def zones_from_dict(data: Any, where: str = "zones") -> list[Zone]:
    """Zones of ``{"zones": [{"name": ..., "polygon": [[x, y], ...]}, ...]}`` (or of the list
    alone); `ConfigError` naming ``where`` and the zone otherwise."""
    items = data.get("zones") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigError(f'{where}: expected {{"zones": [{{"name": ..., "polygon": ...}}]}}')
    zones: list[Zone] = []
    for i, zone in enumerate(items):
        name = zone.get("name") if isinstance(zone, dict) else None
        points = zone.get("polygon") if isinstance(zone, dict) else None
        if not isinstance(name, str) or not name or name in {z.name for z in zones}:
            raise ConfigError(f"{where}: zone {i} needs a unique, non-empty 'name'")
        try:
            polygon = shapely.Polygon([(float(x), float(y)) for x, y in points])
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: zone {name!r} needs a 'polygon' of at least 3 [x, y] points"
            ) from None
        if not polygon.is_valid or polygon.area <= 0:
            raise ConfigError(
                f"{where}: zone {name!r} is not a simple polygon with an area (do its edges cross?)"
            )
        zones.append(Zone(name, polygon))
    return zones


def read_zones(path: Path, what: str = "--zones") -> list[Zone]:
    """Zones from a ``zones.json`` file (`zones_from_dict`); errors name ``what`` and the path."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} {path}: not a readable JSON file ({exc})") from None
    return zones_from_dict(data, str(path))


@dataclass
class _Debounce:
    """A confirmed state and the change waiting for ``min_frames`` agreeing frames.

    ``state``: zone: inside (bool); line: the side (-1/+1, 0 not known yet). ``since``: the
    frame and time the state was confirmed as of; ``point``: a line's last anchor on that side.
    """

    state: Any
    since: tuple[int, float] = (0, 0.0)
    point: np.ndarray | None = None
    waiting: int = 0
    first: tuple[int, float, np.ndarray] | None = None  # the first frame of the change

    def observe(self, value: Any, frame: int, time_ms: float, point: np.ndarray, need: int) -> bool:
        """Record one frame's observation; True when a change is confirmed (then ``first`` holds
        where it started and ``state`` is still the old one)."""
        if value == self.state:
            self.waiting, self.first = 0, None
            self.point = point
            return False
        if self.waiting == 0:
            self.first = (frame, time_ms, point)
        self.waiting += 1
        return self.waiting >= need

    def confirm(self, value: Any) -> None:
        assert self.first is not None
        frame, time_ms, point = self.first
        self.state, self.since, self.point = value, (frame, time_ms), point
        self.waiting, self.first = 0, None


@dataclass
class Counting:
    """Counts in ``zones`` and across ``lines`` for one camera (see the module docstring).

    ``totals[(name, event, label)]``: events per zone or line, kind (``enter``, ``exit``,
    ``forward``, ``backward``) and class. ``dwell[zone]``: seconds of each finished visit.
    """

    zones: list[Zone] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    anchor: str = "bottom_center"
    min_frames: int = 2
    totals: Counter = field(default_factory=Counter)
    dwell: dict[str, list[float]] = field(default_factory=dict)
    _zone: dict[tuple[int, str], _Debounce] = field(default_factory=dict)
    _line: dict[tuple[int, str], _Debounce] = field(default_factory=dict)
    _seen: dict[int, tuple[int, float, str]] = field(default_factory=dict)  # frame, ms, label

    def __post_init__(self) -> None:
        if self.anchor not in ANCHORS:
            raise ConfigError(f"anchor {self.anchor!r}: use one of {', '.join(ANCHORS)}")
        if self.min_frames < 1:
            raise ConfigError(f"min_frames {self.min_frames}: use 1 or more")
        names = [z.name for z in self.zones] + [x.name for x in self.lines]
        if len(set(names)) != len(names):
            raise ConfigError(f"zone and line names must differ from one another: {names}")

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)

    def update(
        self,
        detections: Detections,
        frame: int,
        time_ms: float,
        live: set[int] | None = None,
    ) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
        """``(counts, events)`` of one processed frame's (tracked) detections:
        ``counts[zone][label]`` of the objects
        whose anchor is inside now (tracked or not), and the events confirmed in this frame.
        ``live``: the track ids the tracker still follows; tracks missing from it have ended
        (None: none has)."""
        counts: dict[str, dict[str, int]] = {z.name: {} for z in self.zones}
        events: list[dict[str, Any]] = []
        rows = zip(
            detections.track_ids.tolist(), detections.labels, detections.xyxy.tolist(), strict=True
        )
        for track_id, label, box in rows:
            obj = _Object(track_id, str(label), tuple(box))
            points = anchor_points(obj.box, self.anchor)
            for zone in self.zones:
                inside = zone.holds(points)
                if inside:
                    counts[zone.name][obj.label] = counts[zone.name].get(obj.label, 0) + 1
                if obj.track_id >= 0:
                    events += self._visit(obj, zone, inside, frame, time_ms, points)
            if obj.track_id >= 0:
                for line in self.lines:
                    events += self._cross(obj, line, frame, time_ms, points)
                self._seen[obj.track_id] = (frame, time_ms, obj.label)
        if live is not None:
            events += self._end([t for t in self._seen if t not in live])
        return counts, events

    def _visit(
        self, obj: _Object, zone: Zone, inside: bool, frame: int, time_ms: float, points: np.ndarray
    ) -> list[dict[str, Any]]:
        state = self._zone.setdefault((obj.track_id, zone.name), _Debounce(False))
        if not state.observe(inside, frame, time_ms, points.mean(axis=0), self.min_frames):
            return []
        entered_ms = state.since[1]
        state.confirm(inside)
        if inside:
            return [self._event("zone", zone.name, "enter", obj.track_id, obj.label, state.since)]
        return [self._exit(zone.name, obj.track_id, obj.label, state.since, entered_ms)]

    def _cross(
        self, obj: _Object, line: Line, frame: int, time_ms: float, points: np.ndarray
    ) -> list[dict[str, Any]]:
        side = line.side(points)
        if side == 0:  # on the line (or across it): decided when it leaves
            return []
        centre = points.mean(axis=0)
        state = self._line.get((obj.track_id, line.name))
        if state is None:
            self._line[obj.track_id, line.name] = _Debounce(side, (frame, time_ms), centre)
            return []
        before = state.point
        if not state.observe(side, frame, time_ms, centre, self.min_frames):
            return []
        assert state.first is not None and before is not None
        through = line.passes(before, state.first[2])
        state.confirm(side)
        if not through:  # went round the segment's end
            return []
        direction = "forward" if side > 0 else "backward"
        event = self._event(
            "line", line.name, "cross", obj.track_id, obj.label, state.since, tally=direction
        )
        event["direction"] = direction
        return [event]

    def _event(
        self,
        kind: str,
        name: str,
        what: str,
        track_id: int,
        label: str,
        at: tuple[int, float],
        tally: str | None = None,
    ) -> dict[str, Any]:
        """The event dict, counted in ``totals`` under ``tally`` (default: ``what``)."""
        frame, time_ms = at
        self.totals[name, tally or what, label] += 1
        return {
            kind: name,
            "event": what,
            "track_id": track_id,
            "label": label,
            "frame": frame,
            "timestamp_ms": round(time_ms, 3),
        }

    def _exit(
        self, zone: str, track_id: int, label: str, at: tuple[int, float], entered_ms: float
    ) -> dict[str, Any]:
        """An exit event at ``at`` with its dwell, which also goes to ``dwell[zone]``."""
        event = self._event("zone", zone, "exit", track_id, label, at)
        event["dwell_s"] = round((at[1] - entered_ms) / 1000, 3)
        self.dwell.setdefault(zone, []).append(event["dwell_s"])
        return event

    def _end(self, ended: list[int]) -> list[dict[str, Any]]:
        """Exits (``lost``) of ended tracks still inside a zone, at the frame last seen."""
        events = []
        for track_id in ended:
            frame, time_ms, label = self._seen.pop(track_id)
            for zone in self.zones:
                state = self._zone.pop((track_id, zone.name), None)
                if state is None or not state.state:
                    continue
                if state.first is not None:  # seen leaving, not yet for min_frames: it left then
                    at, lost = state.first[:2], False
                else:
                    at, lost = (frame, time_ms), True
                event = self._exit(zone.name, track_id, label, at, state.since[1])
                if lost:
                    event["lost"] = True
                events.append(event)
            for line in self.lines:
                self._line.pop((track_id, line.name), None)
        return events

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Totals as ``{NAME: {EVENT: {LABEL: n}}}`` (zone or line -> event kind -> class ->
        count; for example ``{"centre": {"enter": {"rectangle": 1}}}``), sorted."""
        nested: dict[str, dict[str, dict[str, int]]] = {}
        for (name, what, label), k in sorted(self.totals.items()):
            nested.setdefault(name, {}).setdefault(what, {})[label] = k
        return nested

    def summary(self) -> dict[str, Any]:
        """`counts`, dwell as ``{zone: {visits, mean_s, max_s}}`` and ``inside``: tracked
        objects inside each zone now."""
        inside = Counter(name for (_, name), s in self._zone.items() if s.state)
        return {
            "counts": self.counts(),
            "dwell": {
                zone: {
                    "visits": len(times),
                    "mean_s": round(float(np.mean(times)), 3),
                    "max_s": round(max(times), 3),
                }
                for zone, times in sorted(self.dwell.items())
            },
            "inside": {z.name: inside[z.name] for z in self.zones},
        }


def count_rows(counts: dict[str, dict[str, dict[str, int]]]) -> list[tuple[str, str, str, int]]:
    """`Counting.counts`' nested totals as ``(name, event, label, n)`` rows, in their order."""
    return [
        (name, what, label, n)
        for name, kinds in counts.items()
        for what, labels in kinds.items()
        for label, n in labels.items()
    ]


def _zones(value: Any, root: Path, what: str) -> list[Zone]:
    """A zones.json path, or the zones inline (a site file)."""
    if isinstance(value, str | Path):
        return read_zones(root / value, what)
    return zones_from_dict(value or [], what)


def _lines(value: Any, root: Path, what: str) -> list[Line]:
    """``[NAME=]x1,y1,x2,y2`` texts (the repeated flag) or ``{name, points}`` mappings."""
    if not isinstance(value, list):
        raise ConfigError(f"{what}: a list of {{name, points: [[x1, y1], [x2, y2]]}}")
    lines = []
    flag = what.startswith("-")  # `--line` numbers lines only when there are several
    for k, item in enumerate(value):
        default = f"line{k + 1}" if len(value) > 1 or not flag else "line"
        if isinstance(item, str):
            lines.append(Line.parse(item, default, what))
        elif isinstance(item, dict):
            lines.append(Line.of(item.get("name"), item.get("points"), what))
        else:
            raise ConfigError(f"{what}: line {k + 1} is neither {{name, points}} nor 'x1,y1,x2,y2'")
    return lines


@dataclass(frozen=True)
class CountingSettings:
    """What a camera counts (`detect.zones.Counting`): its zones and lines, the anchor and
    ``min_frames``; settings of `detect video` and a site's cameras, and of `detect eval --video`
    (which counts the ground truth the same way)."""

    zones: list[Zone] = setting(
        factory=list,
        help="named polygons to count in: a zones.json (or, in a site file, the list itself)",
        parse=_zones,
        metavar="zones.json",
    )
    lines: list[Line] = setting(
        factory=list,
        help="count crossings of this line by direction (repeatable)",
        parse=_lines,
        flag="--line",
        metavar="[NAME=]x1,y1,x2,y2",
        repeat=True,
    )
    anchor: str = setting(
        "bottom_center",
        "the point(s) of a box that place it in zones and on sides of lines",
        choices=ANCHORS,
    )
    min_frames: int = setting(
        2,
        "frames an object must stay in or out of a zone, or past a line, to count",
        check=at_least(1),
    )

    def counter(self) -> Counting:
        """A `Counting` of these zones and lines (none: it counts nothing)."""
        return Counting(self.zones, self.lines, self.anchor, self.min_frames)

    def validate(self, spell: Spelling | None = None) -> None:
        """Zone and line names apart; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(CountingSettings, FLAGS)
        try:
            self.counter()
        except ConfigError as exc:
            raise spell.problem(str(exc)) from None

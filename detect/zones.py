"""Zone occupancy and line crossings for tracked objects (surveillance counting).

An object's position is its **anchor**: the bottom-centre of its box (where it stands on the
ground), ``((x1 + x2) / 2, y2)`` of its xyxy box, in pixels.

- `Zones`: named polygons from ``zones.json`` (``{"zones": [{"name": "door", "polygon":
  [[x, y], ...]}, ...]}``). Each frame: the count per zone and class of objects whose anchor is
  inside (shapely ``covers``: the edge counts as inside), and ``enter``/``exit`` events of tracked
  objects whose inside/outside state changed since the frame they were last seen.
- `LineCounter`: a line ``x1,y1,x2,y2``; a tracked object whose anchor moves from one side to the
  other through the segment counts once per crossing, ``forward`` from the line's left to its
  right as seen on screen looking from (x1, y1) towards (x2, y2) — for a line drawn left to
  right, from above it to below it — or ``backward``. An anchor exactly on the line has not
  crossed yet.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely

from detect.errors import ConfigError


@dataclass(frozen=True)
class Tracked:
    """What counting needs of one detection: track id (-1: untracked), class, xyxy box."""

    track_id: int
    label: str
    box: tuple[float, float, float, float]

    @property
    def anchor(self) -> tuple[float, float]:
        """The bottom centre of the box, ``(x, y)``."""
        x1, _, x2, y2 = self.box
        return ((x1 + x2) / 2, y2)


@dataclass
class Zones:
    """Named polygons and the inside/outside state of every tracked object."""

    names: list[str]
    polygons: list[shapely.Polygon]
    _inside: dict[int, set[str]] = field(default_factory=dict)
    totals: Counter = field(default_factory=Counter)  # (zone, "enter"/"exit") -> count

    @classmethod
    def read(cls, path: Path) -> Zones:
        """Zones from a ``zones.json`` file; `ConfigError` naming the problem otherwise."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"--zones {path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--zones {path}: not a readable JSON file ({exc})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "zones") -> Zones:
        if not isinstance(data, dict) or not isinstance(data.get("zones"), list):
            raise ConfigError(f'{where}: expected {{"zones": [{{"name": ..., "polygon": ...}}]}}')
        names, polygons = [], []
        for i, zone in enumerate(data["zones"]):
            name = zone.get("name") if isinstance(zone, dict) else None
            points = zone.get("polygon") if isinstance(zone, dict) else None
            if not isinstance(name, str) or not name or name in names:
                raise ConfigError(f"{where}: zone {i} needs a unique, non-empty 'name'")
            try:
                polygon = shapely.Polygon([(float(x), float(y)) for x, y in points])
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{where}: zone {name!r} needs a 'polygon' of at least 3 [x, y] points"
                ) from None
            if not polygon.is_valid or polygon.area <= 0:
                raise ConfigError(
                    f"{where}: zone {name!r} is not a simple polygon with an area "
                    "(do its edges cross?)"
                )
            names.append(name)
            polygons.append(polygon)
        return cls(names, polygons)

    def update(self, objects: list[Tracked]) -> tuple[dict[str, dict[str, int]], list[dict]]:
        """``(counts, events)`` for one frame: ``counts[zone][label]`` of objects inside, and
        ``{"zone", "event": "enter"|"exit", "track_id", "label"}`` for tracked objects that
        crossed a zone's edge since they were last seen (a new object inside enters)."""
        counts: dict[str, dict[str, int]] = {name: {} for name in self.names}
        events = []
        for obj in objects:
            point = shapely.Point(obj.anchor)
            inside = {n for n, p in zip(self.names, self.polygons, strict=True) if p.covers(point)}
            for name in inside:
                counts[name][obj.label] = counts[name].get(obj.label, 0) + 1
            if obj.track_id < 0:
                continue
            before = self._inside.get(obj.track_id, set())
            for name in self.names:
                if (name in inside) == (name in before):
                    continue
                change = "enter" if name in inside else "exit"
                events.append(
                    {"zone": name, "event": change, "track_id": obj.track_id, "label": obj.label}
                )
                self.totals[name, change] += 1
            self._inside[obj.track_id] = inside
        return counts, events


@dataclass
class LineCounter:
    """Crossings of a line segment by tracked objects' anchors, per direction and class."""

    x1: float
    y1: float
    x2: float
    y2: float
    _last: dict[int, tuple[float, float]] = field(default_factory=dict)
    totals: Counter = field(default_factory=Counter)  # ("forward"/"backward", label) -> count

    @classmethod
    def parse(cls, text: str) -> LineCounter:
        try:
            x1, y1, x2, y2 = (float(v) for v in text.split(","))
        except ValueError:
            raise ConfigError(f"--line {text!r}: use x1,y1,x2,y2 in pixels") from None
        if (x1, y1) == (x2, y2):
            raise ConfigError(f"--line {text!r}: the two points must differ")
        return cls(x1, y1, x2, y2)

    def _side(self, x: float, y: float) -> float:
        return (self.x2 - self.x1) * (y - self.y1) - (self.y2 - self.y1) * (x - self.x1)

    def update(self, objects: list[Tracked]) -> list[dict]:
        """Crossing events of this frame: ``{"direction", "track_id", "label"}``."""
        events = []
        segment = shapely.LineString([(self.x1, self.y1), (self.x2, self.y2)])
        for obj in objects:
            if obj.track_id < 0:
                continue
            now = obj.anchor
            before = self._last.get(obj.track_id)
            self._last[obj.track_id] = now
            if before is None:
                continue
            s0, s1 = self._side(*before), self._side(*now)
            if s1 == 0:  # on the line: decided when it leaves it
                self._last[obj.track_id] = before
                continue
            if s0 * s1 > 0 or s0 == 0:
                continue
            if not segment.intersects(shapely.LineString([before, now])):
                continue  # passed beside the segment, not through it
            direction = "forward" if s0 < 0 < s1 else "backward"
            self.totals[direction, obj.label] += 1
            events.append({"direction": direction, "track_id": obj.track_id, "label": obj.label})
        return events

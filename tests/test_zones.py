"""Zone counts, enter/exit events and line crossings on scripted tracks with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detect.errors import ConfigError
from detect.zones import LineCounter, Tracked, Zones


def _at(track_id: int, x: float, y: float, label: str = "car") -> Tracked:
    """An object whose anchor (bottom-centre) is at (x, y): a 10 x 10 box above it."""
    return Tracked(track_id, label, (x - 5, y - 10, x + 5, y))


ZONES = {
    "zones": [
        {"name": "left", "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]]},
        {"name": "right", "polygon": [[100, 0], [200, 0], [200, 100], [100, 100]]},
    ]
}


def test_counts_and_enter_exit_events_follow_a_tracked_object_across_zones() -> None:
    zones = Zones.from_dict(ZONES)
    script = [20, 60, 120, 160, 260]  # x of object 1's anchor, y = 50
    seen = []
    for x in script:
        counts, events = zones.update([_at(1, x, 50), _at(-1, 30, 30, "person")])
        seen.append((counts, [(e["zone"], e["event"]) for e in events]))
    assert seen[0] == ({"left": {"car": 1, "person": 1}, "right": {}}, [("left", "enter")])
    assert seen[1] == ({"left": {"car": 1, "person": 1}, "right": {}}, [])
    assert seen[2] == (
        {"left": {"person": 1}, "right": {"car": 1}},
        [("left", "exit"), ("right", "enter")],
    )
    assert seen[3][1] == [] and seen[4] == (
        {"left": {"person": 1}, "right": {}},
        [("right", "exit")],
    )
    assert dict(zones.totals) == {
        ("left", "enter"): 1,
        ("left", "exit"): 1,
        ("right", "enter"): 1,
        ("right", "exit"): 1,
    }


def test_line_crossings_by_direction_only_through_the_segment() -> None:
    line = LineCounter.parse("0,30,300,30")  # drawn left to right: forward = downwards
    events = []
    for y in (10, 20, 40, 50, 20):  # down across, then back up across
        events += line.update([_at(1, 150, y)])
    for y in (10, 30, 30, 45):  # touches the line, stays, then leaves downwards: once
        events += line.update([_at(2, 100, y, "person")])
    for y in (10, 50):  # beside the segment (x = 400): no crossing
        events += line.update([_at(3, 400, y)])
    for y in (10, 50):  # untracked: not counted
        events += line.update([_at(-1, 150, y)])
    assert [(e["track_id"], e["direction"]) for e in events] == [
        (1, "forward"),
        (1, "backward"),
        (2, "forward"),
    ]
    assert dict(line.totals) == {
        ("forward", "car"): 1,
        ("backward", "car"): 1,
        ("forward", "person"): 1,
    }


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "expected"),
        ('{"zones": [{"name": "a", "polygon": [[0, 0], [1, 1]]}]}', "at least 3"),
        ('{"zones": [{"name": "a", "polygon": [[0, 0], [9, 9], [0, 9], [9, 0]]}]}', "cross"),
        ('{"zones": [{"polygon": [[0, 0], [9, 0], [9, 9]]}]}', "name"),
        ('{"zones": [{"name": "a", "polygon": "square"}]}', "polygon"),
        ("{not json", "JSON"),
    ],
)
def test_bad_zone_files_and_lines_are_config_errors(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "zones.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        Zones.read(path)


def test_bad_lines_and_missing_zone_file(tmp_path: Path) -> None:
    for text in ("1,2,3", "a,b,c,d", "5,5,5,5"):
        with pytest.raises(ConfigError, match="--line"):
            LineCounter.parse(text)
    with pytest.raises(ConfigError, match="no such file"):
        Zones.read(tmp_path / "none.json")
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(ZONES))
    assert Zones.read(ok).names == ["left", "right"]

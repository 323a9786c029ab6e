"""Zone counts, enter/exit events with dwell times, and line crossings on scripted tracks with
known answers: anchors, the minimum frames that keep a flickering box from counting twice, and
tracks that end inside a zone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detect.errors import ConfigError
from detect.structures import Detections
from detect.zones import Counting, Line, read_zones, zones_from_dict

Row = tuple[int, str, tuple[float, float, float, float]]  # track id (-1: untracked), class, xyxy


def _at(track_id: int, x: float, y: float, label: str = "car") -> Row:
    """An object whose bottom-centre is at (x, y): a 10 x 10 box above it."""
    return (track_id, label, (x - 5, y - 10, x + 5, y))


def _frame(rows: list[Row]) -> Detections:
    """One frame's tracked detections."""
    return Detections.of([r[2] for r in rows], [r[1] for r in rows], track_ids=[r[0] for r in rows])


ZONES = {
    "zones": [
        {"name": "left", "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]]},
        {"name": "right", "polygon": [[100, 0], [200, 0], [200, 100], [100, 100]]},
    ]
}


def _feed(counting: Counting, script: list[list[Row]], step_ms: float = 100.0) -> list[dict]:
    """Every frame of the script through ``counting``; all events, in order."""
    events = []
    for frame, objects in enumerate(script):
        events += counting.update(_frame(objects), frame, frame * step_ms)[1]
    return events


def test_counts_and_enter_exit_events_follow_a_tracked_object_across_zones() -> None:
    counting = Counting(zones_from_dict(ZONES), min_frames=1)
    seen = []
    for frame, x in enumerate([20, 60, 120, 160, 260]):  # object 1's anchor, y = 50
        counts, events = counting.update(
            _frame([_at(1, x, 50), _at(-1, 30, 30, "person")]), frame, 0.0
        )
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
    assert counting.summary()["counts"] == {
        "left": {"enter": {"car": 1}, "exit": {"car": 1}},
        "right": {"enter": {"car": 1}, "exit": {"car": 1}},
    }


def test_enter_and_exit_are_dated_at_their_first_frame_and_exits_carry_the_dwell() -> None:
    counting = Counting(zones_from_dict(ZONES), min_frames=3)
    # outside (y = 150) for frames 0-1, inside 2-8 with one flicker out at 5, out from 9 on
    ys = [150, 150, 50, 50, 50, 150, 50, 50, 50, 150, 150, 150, 150]
    events = _feed(counting, [[_at(4, 50, y, "person")] for y in ys])
    assert [(e["event"], e["frame"], e["timestamp_ms"]) for e in events] == [
        ("enter", 2, 200.0),
        ("exit", 9, 900.0),
    ]
    assert events[1]["dwell_s"] == pytest.approx(0.7) and "lost" not in events[1]
    summary = counting.summary()
    assert summary["dwell"] == {"left": {"visits": 1, "mean_s": 0.7, "max_s": 0.7}}
    assert summary["counts"] == {"left": {"enter": {"person": 1}, "exit": {"person": 1}}}


def test_a_track_that_ends_inside_exits_where_it_was_last_seen() -> None:
    counting = Counting(zones_from_dict(ZONES), min_frames=2)
    events = []
    for frame in range(6):
        objects = [_at(2, 50, 50)] if frame < 4 else []
        live = {2} if frame < 5 else set()  # the tracker forgets it at frame 5
        events += counting.update(_frame(objects), frame, 100.0 * frame, live)[1]
    assert [(e["event"], e["frame"]) for e in events] == [("enter", 0), ("exit", 3)]
    assert events[1]["lost"] is True and events[1]["dwell_s"] == pytest.approx(0.3)
    assert counting.summary()["inside"] == {"left": 0, "right": 0}


def test_a_track_lost_while_leaving_exits_where_it_left() -> None:
    counting = Counting(zones_from_dict(ZONES), min_frames=3)
    events = []
    for frame, y in enumerate([50, 50, 50, 50, 150, 150]):  # inside 0-3, seen outside at 4, 5
        events += counting.update(_frame([_at(3, 50, y)]), frame, 100.0 * frame, {3})[1]
    events += counting.update(_frame([]), 6, 600.0, set())[1]  # then the tracker drops it
    assert [(e["event"], e["frame"]) for e in events] == [("enter", 0), ("exit", 4)]
    assert events[1]["dwell_s"] == pytest.approx(0.4) and "lost" not in events[1]


def test_line_crossings_by_direction_only_through_the_segment() -> None:
    line = Line.parse("0,30,300,30")  # drawn left to right: forward = downwards
    counting = Counting(lines=[line], min_frames=1)
    script = [[_at(1, 150, y)] for y in (10, 20, 40, 50, 20)]  # down across, back up
    script += [[_at(2, 100, y, "person")] for y in (10, 30, 30, 45)]  # on the line, then down
    script += [[_at(3, 400, y)] for y in (10, 50)]  # beside the segment (x = 400)
    script += [[_at(-1, 150, y)] for y in (10, 50)]  # untracked
    events = _feed(counting, script)
    assert [(e["track_id"], e["direction"], e["frame"]) for e in events] == [
        (1, "forward", 2),
        (1, "backward", 4),
        (2, "forward", 8),
    ]
    assert counting.summary()["counts"] == {
        "line": {"backward": {"car": 1}, "forward": {"car": 1, "person": 1}},
    }


def test_a_box_flickering_over_a_line_counts_once() -> None:
    """A box whose bottom edge jitters around y = 30 as it creeps down: with min_frames 3 one
    forward crossing, dated at the first frame of the run of frames below the line; every flip
    counts with min_frames 1."""
    ys = [20, 25, 32, 28, 33, 29, 31, 27, 34, 36, 38, 40, 42]
    script = [[_at(7, 150, y)] for y in ys]
    steady = _feed(Counting(lines=[Line.parse("door=0,30,300,30")], min_frames=3), script)
    assert [(e["line"], e["direction"], e["frame"]) for e in steady] == [("door", "forward", 8)]
    jumpy = _feed(Counting(lines=[Line.parse("door=0,30,300,30")], min_frames=1), script)
    assert len(jumpy) == 7


def test_anchors_place_an_object_by_its_foot_its_centre_or_its_whole_box() -> None:
    square = [[0, 0], [100, 0], [100, 100], [0, 100]]
    zone = zones_from_dict([{"name": "z", "polygon": square}])
    box = (1, "car", (70.0, 40.0, 110.0, 90.0))  # foot and centre inside, right part out
    for anchor, inside in (("bottom_center", True), ("center", True), ("box", False)):
        counts, _ = Counting(zone, anchor=anchor).update(_frame([box]), 0, 0.0)
        assert counts == {"z": {"car": 1} if inside else {}}, anchor
    line = Line.parse("50,0,50,200")  # vertical; its right (forward) side is x < 50
    left = (2, "car", (10.0, 40.0, 30.0, 90.0))
    across = (2, "car", (42.0, 40.0, 62.0, 90.0))  # centre just past the line
    beyond = (2, "car", (70.0, 40.0, 90.0, 90.0))
    for anchor, frames in (("center", [1]), ("bottom_center", [1]), ("box", [2])):
        counting = Counting(lines=[line], anchor=anchor, min_frames=1)
        events = _feed(counting, [[left], [across], [beyond]])
        # the centre crosses when the box is across; the whole box only once it is beyond
        assert [(e["direction"], e["frame"]) for e in events] == [
            ("backward", f) for f in frames
        ], anchor


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "name"),
        ('{"zones": [{"name": "a", "polygon": [[0, 0], [1, 1]]}]}', "at least 3"),
        ('{"zones": [{"name": "a", "polygon": [[0, 0], [9, 9], [0, 9], [9, 0]]}]}', "cross"),
        ('{"zones": [{"polygon": [[0, 0], [9, 0], [9, 9]]}]}', "name"),
        ('{"zones": [{"name": "a", "polygon": "square"}]}', "polygon"),
        ('{"zones": 3}', "expected"),
        ("{not json", "JSON"),
    ],
)
def test_bad_zone_files_are_config_errors(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "zones.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        read_zones(path)


def test_bad_lines_anchors_and_missing_zone_file(tmp_path: Path) -> None:
    for text in ("1,2,3", "a,b,c,d", "5,5,5,5", "=1,2,3,4"):
        with pytest.raises(ConfigError, match="--line|name"):
            Line.parse(text)
    with pytest.raises(ConfigError, match="no such file"):
        read_zones(tmp_path / "none.json")
    with pytest.raises(ConfigError, match="anchor"):
        Counting(anchor="feet")
    with pytest.raises(ConfigError, match="min_frames"):
        Counting(min_frames=0)
    with pytest.raises(ConfigError, match="differ"):
        Counting(zones_from_dict(ZONES), [Line.parse("left=0,0,5,5")])
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(ZONES))
    assert [z.name for z in read_zones(ok)] == ["left", "right"]

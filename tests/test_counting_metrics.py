"""Counting accuracy (`detect.metrics.counting`, `detect eval --video` with zones or lines): a
run's zone and line events against those of the clip's ground truth counted the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from helpers import run_detect

from detect.data.synth_video import write_site
from detect.metrics.clip import ClipRun, read_clip_truth
from detect.metrics.counting import counting_table, score_counting, track_objects, true_events
from detect.watch import read_site
from detect.zones import CountingSettings, Line, zones_from_dict

# A 100x100 clip at 10 fps, frames 0..15, zone "door" (x 40..60, full height) and line "gate"
# (x = 50, drawn bottom to top: forward is left to right). Boxes are 10x10 around (cx, cy):
#   object 1, circle, cy 20, cx = 20 + 5f: enters door f4 (cx 40), crosses gate forward f7
#     (cx 55; at f6 it is on the line), exits door f9 (cx 65): dwell 0.5 s;
#   object 2, circle, cy 60, cx = 95 - 5f: enters door f7 (cx 60), crosses gate backward f10
#     (cx 45), exits door f12 (cx 35): dwell 0.5 s;
#   object 3, square, cy 85, cx = 10 + 5f: enters door f6, crosses gate forward f9, exits f11.
ZONES = {"zones": [{"name": "door", "polygon": [[40, 0], [60, 0], [60, 100], [40, 100]]}]}
GATE = "gate=50,100,50,0"
OBJECTS = {1: ("circle", 20, lambda f: 20 + 5 * f), 2: ("circle", 60, lambda f: 95 - 5 * f)}
OBJECTS[3] = ("square", 85, lambda f: 10 + 5 * f)
FRAMES = range(16)
TRACK_OF = {1: 11, 2: 12, 3: 13}  # the run's track of each object (its boxes are the object's)


def _clip() -> dict:
    categories = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    ids = {c["name"]: c["id"] for c in categories}
    images = [{"id": f + 1, "frame_index": f, "timestamp_ms": 100.0 * f} for f in FRAMES]
    annotations = [
        {
            "id": len(FRAMES) * k + f + 1,
            "image_id": f + 1,
            "category_id": ids[label],
            "track_id": k,
            "bbox": [x(f) - 5, cy - 5, 10, 10],
        }
        for k, (label, cy, x) in OBJECTS.items()
        for f in FRAMES
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _event(track: int, label: str, frame: int, what: str, **more: object) -> dict:
    """A `Counting` event dict of the run: ``what`` is enter/exit (zone door) or
    forward/backward (line gate)."""
    place = {"zone": "door"} if what in ("enter", "exit") else {"line": "gate"}
    kind = {"event": what} if what in ("enter", "exit") else {"event": "cross", "direction": what}
    return place | kind | {"track_id": track, "label": label, "frame": frame} | more


# The run, by hand: one event late by a frame, a dwell 0.3 s too long, a crossing counted twice
# (a double count), a crossing counted the wrong way, a crossing missed, and an enter of a track
# that is no object (a false detection).
RUN_EVENTS = [
    _event(11, "circle", 5, "enter"),  # true at f4: in the window
    _event(11, "circle", 9, "exit", dwell_s=0.8),  # true dwell 0.5: error 0.3
    _event(11, "circle", 7, "forward"),
    _event(11, "circle", 12, "forward"),  # again: a double count
    _event(12, "circle", 7, "enter"),
    _event(12, "circle", 12, "exit", dwell_s=0.5),
    _event(12, "circle", 10, "forward"),  # truly backward: a wrong direction
    _event(13, "square", 6, "enter"),
    _event(13, "square", 11, "exit", dwell_s=0.4),  # true 0.5: error 0.1; its crossing missed
    _event(14, "circle", 3, "enter"),  # track 14 is no object
]


def _records(events: list[dict]) -> list[dict]:
    records = []
    for f in FRAMES:
        detections = [
            {"top": cy - 5, "left": x(f) - 5, "width": 10, "height": 10, "label": label}
            | {"score": 0.9, "track_id": TRACK_OF[k]}
            for k, (label, cy, x) in OBJECTS.items()
        ]
        if f <= 3:  # a false detection, far from every object
            detections.append(
                {"top": 40, "left": 0, "width": 10, "height": 10, "label": "circle"}
                | {"score": 0.6, "track_id": 14}
            )
        records.append(
            {"frame": f, "timestamp_ms": 100.0 * f, "detections": detections}
            | {"events": [e for e in events if e["frame"] == f]}
        )
    return records


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def clip(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The hand-made clip's ground truth, the run's JSONL and zones.json."""
    gt = tmp_path / "clip.json"
    gt.write_text(json.dumps(_clip()))
    run = _write(tmp_path / "run.jsonl", _records(RUN_EVENTS))
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(ZONES))
    return gt, run, zones


SETTINGS = CountingSettings(zones_from_dict(ZONES), [Line.parse(GATE)])


def _figures(f: dict) -> tuple:
    return (
        f["true"],
        f["counted"],
        f["error"],
        f["matched"],
        f["precision"],
        f["recall"],
        f["f1"],
        f["double_counts"],
        f["wrong_directions"],
        f["dwell_error_mean_s"],
        f["dwell_error_max_s"],
    )


def test_the_truth_is_counted_by_the_same_counting(clip: tuple[Path, Path, Path]) -> None:
    gt, _, _ = clip
    events = true_events(read_clip_truth(gt), list(FRAMES), SETTINGS)
    shown = sorted(
        (e.get("zone") or e["line"], e.get("direction") or e["event"], e["track_id"], e["frame"])
        + ((e["dwell_s"],) if "dwell_s" in e else ())
        for e in events
    )
    assert shown == [
        ("door", "enter", 1, 4),
        ("door", "enter", 2, 7),
        ("door", "enter", 3, 6),
        ("door", "exit", 1, 9, 0.5),
        ("door", "exit", 2, 12, 0.5),
        ("door", "exit", 3, 11, 0.5),
        ("gate", "backward", 2, 10),
        ("gate", "forward", 1, 7),
        ("gate", "forward", 3, 9),
    ]


# true, counted, error, matched, precision, recall, F1, double counts, wrong directions, dwell
# error mean and max (s), worked by hand from the clip and RUN_EVENTS above
HAND_WORKED = {
    ("door", "enter", "circle"): (2, 3, +1, 2, 0.6667, 1.0, 0.8, 0, 0, None, None),
    ("door", "enter", "square"): (1, 1, 0, 1, 1.0, 1.0, 1.0, 0, 0, None, None),
    ("door", "exit", "circle"): (2, 2, 0, 2, 1.0, 1.0, 1.0, 0, 0, 0.15, 0.3),
    ("door", "exit", "square"): (1, 1, 0, 1, 1.0, 1.0, 1.0, 0, 0, 0.1, 0.1),
    ("gate", "backward", "circle"): (1, 0, -1, 0, None, 0.0, 0.0, 0, 0, None, None),
    ("gate", "forward", "circle"): (1, 3, +2, 1, 0.3333, 1.0, 0.5, 1, 1, None, None),
    ("gate", "forward", "square"): (1, 0, -1, 0, None, 0.0, 0.0, 0, 0, None, None),
}
HAND_WORKED_ALL = (9, 10, +1, 7, 0.7, 0.7778, 0.7368, 1, 1, 0.133, 0.3)


def test_hand_worked_run_scores_every_figure(clip: tuple[Path, Path, Path]) -> None:
    gt, run, _ = clip
    figures = score_counting(ClipRun.read(gt, run), SETTINGS)
    assert figures["window_frames"] == 10
    rows = {(r["name"], r["event"], r["label"]): _figures(r) for r in figures["rows"]}
    assert rows == HAND_WORKED
    assert _figures(figures["all"]) == HAND_WORKED_ALL


def test_a_track_is_the_object_it_overlaps_in_more_than_half_of_its_frames() -> None:
    def box(k: int, f: int, label: str | None = None, track: int = 0) -> dict:
        own, cy, x = OBJECTS[k]
        place = {"top": cy - 5, "left": x(f) - 5, "width": 10, "height": 10}
        return place | {"label": label or own, "score": 1.0, "track_id": track}

    records = [
        {
            "frame": f,
            "detections": [
                box(1 if f < 4 else 2, f, track=21),  # object 1 in 4 of 8 frames: not most
                box(1 if f < 5 else 2, f, track=22),  # object 1 in 5 of 8 frames
                box(3, f, "circle", track=23),  # object 3's box, but not its class
            ],
        }
        for f in range(8)
    ]
    assert track_objects(records, _clip()) == {21: None, 22: 1, 23: None}


DOOR_CIRCLE = ("door", "enter", "circle")


def test_a_window_too_narrow_for_a_late_event_misses_it(clip: tuple[Path, Path, Path]) -> None:
    gt, run, _ = clip
    figures = score_counting(ClipRun.read(gt, run), SETTINGS, window=0)
    (row,) = [r for r in figures["rows"] if (r["name"], r["event"], r["label"]) == DOOR_CIRCLE]
    assert _figures(row)[:4] == (2, 3, 1, 1)  # the enter at f5 is not the true one at f4


def test_the_ground_truth_fed_back_as_a_run_scores_perfectly(tmp_path: Path) -> None:
    site = read_site(write_site(tmp_path, 1, frames=40, seed=3, width=160, height=120))
    (camera,) = site.cameras
    assert camera.truth == tmp_path / "cam1.json"
    data = read_clip_truth(camera.truth)
    frames = [image["frame_index"] for image in data["images"]]
    events = true_events(data, frames, camera.counting)
    assert {e["event"] for e in events} >= {"enter", "cross"}  # there is something to count
    names = {c["id"]: c["name"] for c in data["categories"]}
    records = []
    for image in data["images"]:
        detections = [
            {"top": a["bbox"][1], "left": a["bbox"][0], "width": a["bbox"][2]}
            | {"height": a["bbox"][3], "label": names[a["category_id"]], "score": 1.0}
            | {"track_id": a["track_id"]}
            for a in data["annotations"]
            if a["image_id"] == image["id"]
        ]
        mine = [e for e in events if e["frame"] == image["frame_index"]]
        records.append({"frame": image["frame_index"], "detections": detections, "events": mine})
    run = _write(tmp_path / "truth.jsonl", records)
    figures = score_counting(ClipRun.read(camera.truth, run), camera.counting)
    for f in [*figures["rows"], figures["all"]]:
        assert (f["error"], f["double_counts"], f["wrong_directions"]) == (0, 0, 0), f
        assert f["precision"] == f["recall"] == f["f1"] == 1.0, f
        assert f["dwell_error_max_s"] in (None, 0.0), f
    assert figures["all"]["true"] == len(events)


def test_eval_prints_and_saves_the_counting_figures(clip: tuple[Path, Path, Path]) -> None:
    gt, run, zones = clip
    out = gt.parent / "eval"
    shown = run_detect(
        *("eval", "--video", str(gt), "--jsonl", str(run), "--zones", str(zones)),
        *("--line", GATE, "--out", str(out)),
    )
    assert shown.returncode == 0, shown.stderr
    saved = json.loads((out / "video_metrics.json").read_text())
    assert saved["counting"] == score_counting(ClipRun.read(gt, run), SETTINGS)
    assert counting_table(saved["counting"]) in shown.stdout
    assert shown.stdout.index("IDF1") < shown.stdout.index("counting (events matched")
    lines = shown.stdout.splitlines()
    total = ["all", "9", "10", "+1", "0.700", "0.778", "0.737", "1", "1", "0.13", "/", "0.30"]
    assert lines[-2].split() == total
    plain = run_detect("eval", "--video", str(gt), "--jsonl", str(run), "--out", str(out))
    assert plain.returncode == 0 and "counting" not in plain.stdout  # without zones: as before
    assert "counting" not in json.loads((out / "video_metrics.json").read_text())


def test_eval_takes_the_zones_of_a_site_camera_and_its_events_from_the_event_log(
    clip: tuple[Path, Path, Path],
) -> None:
    gt, run, _ = clip
    root = gt.parent
    (root / "gate.mp4").write_bytes(b"")  # a camera's source must exist; it is not read
    cameras = [
        {"name": name, "source": "gate.mp4", "jsonl": f"{name}.jsonl"}
        | {"zones": ZONES["zones"], "lines": [{"name": "gate", "points": [[50, 100], [50, 0]]}]}
        for name in ("front", "back")
    ]
    site = root / "site.yaml"
    site.write_text(json.dumps({"server": "127.0.0.1:50051", "cameras": cameras}))
    log = [{"camera": "front", "time": "t"} | e for e in RUN_EVENTS]
    log += [{"camera": "back", "time": "t"} | _event(12, "circle", 10, "backward")]
    events = _write(root / "events.jsonl", log)
    bare = _write(root / "bare.jsonl", [r | {"events": []} for r in _records([])])
    out = root / "eval"
    shown = run_detect(
        *("eval", "--video", str(gt), "--jsonl", str(bare), "--out", str(out)),
        *("--site", str(site), "--camera", "front", "--events", str(events)),
    )
    assert shown.returncode == 0, shown.stderr
    saved = json.loads((out / "video_metrics.json").read_text())
    assert saved["counting"] == score_counting(ClipRun.read(gt, run), SETTINGS)
    front_only = _write(root / "front.jsonl", log[:-1])  # the site's camera back counted nothing
    quiet = run_detect(
        *("eval", "--video", str(gt), "--jsonl", str(bare), "--out", str(out)),
        *("--site", str(site), "--camera", "back", "--events", str(front_only)),
    )
    assert quiet.returncode == 0, quiet.stderr
    nothing = json.loads((out / "video_metrics.json").read_text())["counting"]["all"]
    assert (nothing["true"], nothing["counted"], nothing["recall"]) == (9, 0, 0.0)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--site", "{site}"], 2, "--site {site} has cameras front, back: name one with --camera"),
        (
            ["--site", "{site}", "--camera", "side"],
            2,
            "--camera side: {site} has no such camera (it has front, back)",
        ),
        (
            ["--line", GATE, "--events", "{events}", "--camera", "side"],
            2,
            "--camera side: --events {events} has no event of that camera (it has back, front); "
            "check the name, or give the site file with --site",
        ),
        (
            ["--line", GATE, "--events", "{events}"],
            2,
            "--events {events} holds the events of cameras back, front: name one with --camera",
        ),
        (
            ["--events", "{events}", "--camera", "front"],
            2,
            "--events scores zone and line counts: give --site with --camera, or --zones / --line",
        ),
        (
            ["--site", "{site}", "--camera", "front", "--line", GATE],
            2,
            "--line with --site: the site's camera gives the zones, lines, anchor and "
            "min_frames; leave out --line",
        ),
        (
            ["--camera", "front"],
            2,
            "--camera names a camera of --site or --events; give one of them",
        ),
        (["--line", GATE, "--count-window", "-1"], 2, "--count-window -1: use 0 or more"),
        (
            ["--min-frames", "3"],
            2,
            "--min-frames scores zone and line counts: give --site with --camera, or "
            "--zones / --line",
        ),
        (
            ["--line", GATE, "--events", "{bad}", "--camera", "front"],
            1,
            "--events {bad} line 2 is not valid JSON (Expecting property name enclosed in "
            "double quotes)",
        ),
    ],
)
def test_counting_mistakes_are_one_line(
    clip: tuple[Path, Path, Path], args: list[str], code: int, message: str
) -> None:
    gt, run, _ = clip
    root = gt.parent
    (root / "gate.mp4").write_bytes(b"")
    cameras = [{"name": name, "source": "gate.mp4", "lines": [GATE]} for name in ("front", "back")]
    site = root / "site.yaml"
    site.write_text(json.dumps({"server": "127.0.0.1:50051", "cameras": cameras}))
    events = _write(
        root / "events.jsonl", [{"camera": c} | RUN_EVENTS[0] for c in ("front", "back")]
    )
    bad = root / "bad.jsonl"
    bad.write_text(json.dumps({"camera": "front"} | RUN_EVENTS[0]) + "\n{oops\n")
    paths = {"site": site, "events": events, "bad": bad}
    args = [a.format(**paths) for a in args]
    result = run_detect("eval", "--video", str(gt), "--jsonl", str(run), *args)
    assert result.returncode == code, result.stderr
    assert result.stderr.strip() == f"error: {message.format(**paths)}", result.stderr


def test_a_run_that_did_not_count_or_whose_event_is_not_one_is_refused(
    clip: tuple[Path, Path, Path],
) -> None:
    gt, _, _ = clip
    records = [{k: v for k, v in r.items() if k != "events"} for r in _records([])]
    run = _write(gt.parent / "plain.jsonl", records)
    result = run_detect("eval", "--video", str(gt), "--jsonl", str(run), "--line", GATE)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"error: {run}: its records have no 'events' (the run had no zones or lines); score a "
        "run that counted, or give its event log with --events"
    )
    records[2]["events"] = [{"line": "gate", "event": "cross", "frame": 2, "label": "circle"}]
    _write(run, records)  # a crossing without its direction
    result = run_detect("eval", "--video", str(gt), "--jsonl", str(run), "--line", GATE)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"error: {run} frame 2: an event without zone or line, event (enter, exit, cross with a "
        "direction), label, frame; score the JSONL of `detect video` or `detect watch`"
    )


def test_a_site_cameras_truth_must_exist_and_go_with_its_jsonl_and_counts(tmp_path: Path) -> None:
    (tmp_path / "gate.mp4").write_bytes(b"")
    (tmp_path / "gate.json").write_text("{}")
    line = {"lines": [{"name": "door", "points": [[0, 0], [10, 10]]}]}
    for truth, more, message in (
        (
            "missing.json",
            {"jsonl": "gate.jsonl"} | line,
            "camera 'gate': truth: 'missing.json': no such file",
        ),
        (
            "gate.json",
            line,
            "camera 'gate': truth needs jsonl: the run's boxes tell which object each track is",
        ),
        (
            "gate.json",
            {"jsonl": "gate.jsonl"},
            "camera 'gate': truth scores zone and line counts: give the camera zones or lines, "
            "or leave truth out",
        ),
    ):
        camera = {"name": "gate", "source": "gate.mp4", "truth": truth} | more
        site = tmp_path / "site.yaml"
        site.write_text(json.dumps({"server": "127.0.0.1:50051", "cameras": [camera]}))
        result = run_detect("watch", str(site))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {message}"


@pytest.mark.parametrize("flag", [["--line", "gate=0,0,10,10"], ["--count-window", "3"]])
def test_counting_flags_on_an_image_eval_are_refused(tmp_path: Path, flag: list[str]) -> None:
    gt = REPO / "samples" / "annotations.json"
    model = REPO / "models" / "demo.onnx"
    args = ["--gt", str(gt), "--model", str(model), "--out", str(tmp_path / "eval"), *flag]
    result = run_detect("eval", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {flag[0]} scores counts: it goes with --video"

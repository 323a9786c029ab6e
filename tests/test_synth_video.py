"""`detect synth --video`: a playable clip with per-frame ground truth and identities, and the
tracker following its objects from (noisy, gappy) ground-truth detections, and the scoring of a
`detect video` JSONL against the clip's ground truth."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_detect

from detect.data.clip_conditions import HARD, ClipConditions
from detect.data.coco import decode_segmentation
from detect.data.synth_video import STOP_AT, site_layout, write_clip, write_site
from detect.errors import DataError, UsageError
from detect.metrics.clip import ClipRun, read_clip_truth
from detect.metrics.counting import true_events
from detect.metrics.tracking import TrackedFrame, tracking_metrics
from detect.metrics.video import score_video
from detect.structures import Detections
from detect.track import Tracker
from detect.watch import read_site


def _clip(tmp_path: Path, *args: str) -> tuple[Path, dict]:
    video = tmp_path / "clip.mp4"
    result = run_detect("synth", "--video", str(video), *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return video, json.loads(video.with_suffix(".json").read_text())


def test_clip_has_every_frame_and_ground_truth_with_stable_identities(tmp_path: Path) -> None:
    video, gt = _clip(tmp_path, "--frames", "40", "--seed", "3", "--objects", "5", "--fps", "8")
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames += 1
        assert frame.shape == (240, 320, 3)
    assert frames == 40 == len(gt["images"])
    assert capture.get(cv2.CAP_PROP_FPS) == 8
    assert [i["timestamp_ms"] for i in gt["images"][:3]] == [0, 125, 250]
    by_track = defaultdict(list)
    for ann in gt["annotations"]:
        by_track[ann["track_id"]].append(ann)
    assert set(by_track) <= {1, 2, 3, 4, 5} and len(by_track) >= 4
    for anns in by_track.values():
        assert len({a["category_id"] for a in anns}) == 1  # an object keeps its class
        assert len({a["image_id"] for a in anns}) == len(anns)  # once per frame
        x = [a["bbox"][0] for a in anns]
        assert max(abs(np.diff(x))) < 20  # moves smoothly
    assert any(a["occlusion"] > 0.05 for a in gt["annotations"])  # objects hide one another
    again = tmp_path / "again"
    again.mkdir()
    _, same = _clip(again, "--frames", "40", "--seed", "3", "--objects", "5", "--fps", "8")
    assert same["annotations"] == gt["annotations"]


def test_tracker_follows_the_clips_objects_through_noise_and_missed_frames(tmp_path: Path) -> None:
    _, gt = _clip(tmp_path, "--frames", "80", "--seed", "5", "--objects", "6")
    rng = np.random.default_rng(0)
    per_frame = defaultdict(list)
    for ann in gt["annotations"]:
        per_frame[ann["image_id"]].append(ann)
    tracker = Tracker()
    frames = []
    for image in gt["images"]:
        anns = [a for a in per_frame[image["id"]] if a["occlusion"] < 0.7]
        gt_ids = np.array([a["track_id"] for a in anns], int)
        gt_boxes = np.array(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], float
        ).reshape(-1, 4)
        seen = rng.random(len(anns)) > 0.1  # the detector misses 10 %
        boxes = gt_boxes[seen] + rng.normal(0, 1.0, (int(seen.sum()), 4))
        scores = rng.uniform(0.3, 1.0, len(boxes))
        labels = np.array([a["category_id"] for a in anns], int)[seen]
        ids = tracker.update(Detections.of(boxes, labels, scores)).track_ids
        gt_labels = np.array([a["category_id"] for a in anns], int)
        frames.append(TrackedFrame(gt_ids, gt_boxes, gt_labels, ids, boxes, labels))
    score = tracking_metrics(frames)
    objects = len({a["track_id"] for a in gt["annotations"]})
    assert score["matches"] > 0.7 * sum(len(f.gt_ids) for f in frames)
    assert score["id_switches"] <= objects  # at most about one switch per object in 80 frames
    assert score["tracks"] <= 2 * score["gt_objects"]


def test_bad_video_arguments_are_one_line(tmp_path: Path) -> None:
    for args, fragment in (
        (["--video", str(tmp_path / "x.avi")], ".mp4"),
        (["--video", str(tmp_path / "x.mp4"), "--frames", "0"], "frames"),
        (["--video", str(tmp_path / "x.mp4"), "--video-size", "big"], "WIDTHxHEIGHT"),
        (["--video", str(tmp_path / "x.mp4"), "--out", str(tmp_path)], "not allowed"),
        (["--video", str(tmp_path / "x.mp4"), "--cameras", "2"], "name a folder"),
        (["--out", str(tmp_path / "d"), "--cameras", "2"], "--cameras"),
        (["--video", str(tmp_path / "site"), "--cameras", "0"], "--cameras"),
    ):
        result = run_detect("synth", *args)
        assert result.returncode in (1, 2) and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def _records(data: dict, swap_from: int | None = None) -> list[dict]:
    """`detect video` JSONL records that repeat the ground truth; from frame ``swap_from`` on,
    the first two objects' track ids are exchanged."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    records = []
    for image in data["images"]:
        detections = []
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            track = ann["track_id"]
            if swap_from is not None and image["frame_index"] >= swap_from and track in (1, 2):
                track = 3 - track
            x, y, w, h = ann["bbox"]
            detections.append(
                {"top": y, "left": x, "width": w, "height": h, "score": 0.9, "track_id": track}
                | {"label": names[ann["category_id"]]}
            )
        records.append({"frame": image["frame_index"], "detections": detections})
    return records


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_score_video_of_the_truth_is_perfect_and_counts_exchanged_ids(tmp_path: Path) -> None:
    video, data = _clip(tmp_path, "--frames", "20", "--objects", "4", "--video-size", "160x120")
    gt = video.with_suffix(".json")
    perfect = score_video(ClipRun.read(gt, _write(tmp_path / "p.jsonl", _records(data))))
    assert perfect["frames"] == 20 and perfect["objects"] == 4
    assert perfect["AP50"] == pytest.approx(1.0) and perfect["AP"] == pytest.approx(1.0)
    assert (perfect["id_switches"], perfect["misses"], perfect["false_positives"]) == (0, 0, 0)
    for name in ("MOTA", "MOTP", "IDF1", "HOTA"):
        assert perfect[name] == pytest.approx(1.0), name
    swapped = score_video(
        ClipRun.read(gt, _write(tmp_path / "s.jsonl", _records(data, swap_from=10)))
    )
    assert swapped["id_switches"] >= 1 and swapped["IDF1"] < 1 and swapped["MOTP"] == 1.0
    assert swapped["AP50"] == pytest.approx(1.0)
    shown = run_detect(
        *("eval", "--video", str(gt), "--jsonl", str(tmp_path / "s.jsonl")),
        *("--out", str(tmp_path / "eval")),
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^IDF1\s+0\.\d{3}$", shown.stdout, re.M), shown.stdout
    assert json.loads((tmp_path / "eval" / "video_metrics.json").read_text()) == swapped
    half = score_video(ClipRun.read(gt, _write(tmp_path / "h.jsonl", _records(data)[::2])))
    assert half["frames"] == 10  # only the processed frames are scored
    bad = _write(tmp_path / "b.jsonl", [*_records(data)[:3]])
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(DataError, match="line 4"):
        score_video(ClipRun.read(gt, bad))
    other = _write(tmp_path / "o.jsonl", [{"frame": 500, "detections": []}])
    with pytest.raises(DataError, match="frame 500"):
        score_video(ClipRun.read(gt, other))
    images = _write(tmp_path / "images.json", [])
    images.write_text(json.dumps({**data, "images": [{"id": 1, "file_name": "a.jpg"}]}))
    for args, code, fragment in (
        (["--video", str(images), "--jsonl", str(tmp_path / "p.jsonl")], 1, "frame_index"),
        (["--video", str(gt), "--jsonl", str(_write(tmp_path / "e.jsonl", []))], 1, "no frames"),
        (["--video", str(gt)], 2, "both --video"),  # bad flags: usage
        (
            ["--video", str(gt), "--jsonl", str(tmp_path / "p.jsonl"), "--model", "m.onnx"],
            2,
            "--model",
        ),
    ):
        failed = run_detect("eval", *args)
        assert failed.returncode == code and fragment in failed.stderr, (args, failed.stderr)
        assert failed.stderr.count("error:") == 1 and "Traceback" not in failed.stderr


def test_a_clip_without_objects_has_undefined_ap_null_in_json_and_n_a_in_the_table(
    tmp_path: Path,
) -> None:
    video, data = _clip(tmp_path, "--frames", "6", "--objects", "1", "--video-size", "160x120")
    gt = video.with_suffix(".json")
    gt.write_text(json.dumps({**data, "annotations": []}))
    run = _write(tmp_path / "run.jsonl", [{"frame": i, "detections": []} for i in range(6)])
    shown = run_detect(
        *("eval", "--video", str(gt), "--jsonl", str(run), "--out", str(tmp_path / "eval"))
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^box AP / AP50\s+n/a / n/a$", shown.stdout, re.M), shown.stdout
    scores = json.loads((tmp_path / "eval" / "video_metrics.json").read_text())
    assert (scores["objects"], scores["AP"], scores["AP50"]) == (0, None, None)


# --- conditions that make a clip hard (`detect.data.clip_conditions`) ------------------------

SMALL = ("--video-size", "160x120")


def _frames(video: Path) -> list[np.ndarray]:
    """Every frame of ``video`` as ``HxWx3 uint8 BGR``."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def _by_frame_and_track(gt: dict) -> dict[tuple[int, int], dict]:
    return {(a["image_id"], a["track_id"]): a for a in gt["annotations"]}


def _mask(ann: dict) -> np.ndarray:
    return decode_segmentation(ann["segmentation"], 120, 160)


def test_perspective_makes_objects_lower_in_the_frame_larger(tmp_path: Path) -> None:
    args = ("--frames", "30", "--objects", "8", "--seed", "2", *SMALL)
    _, flat = _clip(tmp_path, *args)
    (tmp_path / "deep").mkdir()
    _, deep = _clip(tmp_path / "deep", *args, "--perspective", "0.6")
    assert deep["info"]["perspective"] == 0.6

    def whole(ann: dict) -> bool:
        """Neither hidden nor cut by the frame's edge."""
        _, y, _, h = ann["bbox"]
        return ann["occlusion"] == 0 and y > 0 and y + h < 120

    scales: dict[str, list[float]] = {"top": [], "bottom": []}
    deep_anns = _by_frame_and_track(deep)
    for key, ann in _by_frame_and_track(flat).items():
        scaled = deep_anns.get(key)
        if scaled is None or not whole(ann) or not whole(scaled):
            continue
        centre = ann["bbox"][1] + ann["bbox"][3] / 2
        if centre < 40 or centre > 80:
            scales["top" if centre < 40 else "bottom"].append(scaled["bbox"][3] / ann["bbox"][3])
    # 1 - 0.6 = 0.4x at the top edge, 0.8x at a third; 1.2x at two thirds, 1.6x at the bottom
    assert len(scales["top"]) >= 10 and len(scales["bottom"]) >= 10
    assert max(scales["top"]) < 0.9 and min(scales["bottom"]) > 1.1, scales


def test_occluders_hide_the_objects_behind_them_in_the_picture_and_the_ground_truth(
    tmp_path: Path,
) -> None:
    args = ("--frames", "12", "--objects", "8", "--seed", "4", *SMALL)
    _, open_view = _clip(tmp_path, *args)
    (tmp_path / "occluded").mkdir()
    video, gt = _clip(tmp_path / "occluded", *args, "--occluders", "3")
    pole = decode_segmentation(gt["info"]["occluder_mask"], 120, 160).astype(bool)
    assert 0.05 < pole.mean() < 0.5 and gt["info"]["occluders"] == 3
    seen, behind = _by_frame_and_track(gt), 0
    for key, ann in _by_frame_and_track(open_view).items():
        unhidden = _mask(ann).astype(bool)
        expected = unhidden & ~pole  # the same objects; the occluders painted over them
        if not expected.any():
            assert key not in seen  # hidden entirely: no annotation
            continue
        got = seen[key]
        assert np.array_equal(_mask(got).astype(bool), expected)
        assert got["area"] == expected.sum()
        if (unhidden & pole).any():
            behind += 1
            assert got["occlusion"] > ann["occlusion"]
    assert behind >= 5
    frames = np.stack(_frames(video)).astype(np.float32)
    inside = cv2.erode(pole.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert np.abs(frames - frames[0])[:, inside].mean() < 3  # static, over every object


def test_a_crowd_walks_both_ways_through_the_middle_and_crosses(tmp_path: Path) -> None:
    _, gt = _clip(tmp_path, "--frames", "30", "--objects", "2", "--crowd", "10", *SMALL)
    tracks = defaultdict(list)
    for ann in gt["annotations"]:
        tracks[ann["track_id"]].append(ann)
    assert set(tracks) == set(range(1, 13))
    directions = []
    for track in range(3, 13):
        anns = sorted(tracks[track], key=lambda a: a["image_id"])
        centres = [a["bbox"][1] + a["bbox"][3] / 2 for a in anns]
        assert min(centres) > 40 - 7 and max(centres) < 80 + 7  # the middle third
        steps = np.diff([a["bbox"][0] + a["bbox"][2] / 2 for a in anns[:4]])
        directions.append(np.sign(np.median(steps)))
    assert directions.count(1) >= 3 and directions.count(-1) >= 3
    centre_x = {
        (a["image_id"], a["track_id"]): a["bbox"][0] + a["bbox"][2] / 2 for a in gt["annotations"]
    }
    crossed = 0
    for one, other in itertools.combinations(range(3, 13), 2):
        sides = {
            np.sign(centre_x[frame, one] - centre_x[frame, other])
            for frame in range(1, 31)
            if (frame, one) in centre_x and (frame, other) in centre_x
        }
        crossed += {-1, 1} <= sides
    assert crossed >= 10
    hidden = [a for a in gt["annotations"] if a["track_id"] > 2 and a["occlusion"] > 0]
    assert len(hidden) > 0.15 * sum(len(tracks[t]) for t in range(3, 13))


def _translation(before: np.ndarray, after: np.ndarray, reach: int = 8) -> tuple[int, int]:
    """The whole-pixel ``(dx, dy)`` that best maps ``before`` onto ``after``:
    ``after[y + dy, x + dx] ~ before[y, x]``."""
    h, w = before.shape[:2]
    errors = {}
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = after[reach + dy : h - reach + dy, reach + dx : w - reach + dx]
            errors[dx, dy] = np.abs(moved - before[reach : h - reach, reach : w - reach]).mean()
    return min(errors, key=errors.get)


def test_camera_shake_moves_the_whole_picture_and_the_ground_truth_with_it(
    tmp_path: Path,
) -> None:
    args = ("--frames", "8", "--seed", "2", *SMALL, "--shake", "4")
    video, empty = _clip(tmp_path, *args, "--objects", "0")
    shifts = [image["shake"] for image in empty["images"]]
    assert all(-4 <= v <= 4 for shift in shifts for v in shift)
    assert len(set(map(tuple, shifts))) > 4
    frames = [f.astype(np.float32) for f in _frames(video)]
    for k in range(1, len(frames)):
        assert _translation(frames[k - 1], frames[k]) == tuple(
            np.subtract(shifts[k], shifts[k - 1])
        )
    (tmp_path / "steady").mkdir()
    _, steady = _clip(tmp_path / "steady", *args[:-2], "--objects", "4")
    (tmp_path / "shaky").mkdir()
    _, shaky = _clip(tmp_path / "shaky", *args, "--objects", "4")
    assert [image["shake"] for image in shaky["images"]] == shifts
    moved = _by_frame_and_track(shaky)
    compared = 0
    for (image_id, track), ann in _by_frame_and_track(steady).items():
        x, y, w, h = ann["bbox"]
        if x < 5 or y < 5 or x + w > 155 or y + h > 115:  # the shake may cut it at the edge
            continue
        dx, dy = shifts[image_id - 1]
        assert moved[image_id, track]["bbox"] == [x + dx, y + dy, w, h]
        assert moved[image_id, track]["occlusion"] == ann["occlusion"]
        compared += 1
    assert compared >= 8


def test_night_is_dark_and_noisy(tmp_path: Path) -> None:
    args = ("--frames", "4", "--objects", "0", "--seed", "5", *SMALL)
    day = _frames(_clip(tmp_path, *args)[0])
    (tmp_path / "night").mkdir()
    night = _frames(_clip(tmp_path / "night", *args, "--night")[0])

    def flicker(frames: list[np.ndarray]) -> float:
        """Mean change of a pixel of the static scene from one frame to the next."""
        return float(
            np.mean([np.abs(b.astype(int) - a).mean() for a, b in itertools.pairwise(frames)])
        )

    assert np.mean(night) < 0.5 * np.mean(day)
    assert flicker(night) > 3 + 3 * flicker(day)


def test_motion_blur_smears_the_objects_but_not_their_masks(tmp_path: Path) -> None:
    args = ("--frames", "6", "--objects", "4", "--seed", "6", *SMALL)
    sharp_video, sharp = _clip(tmp_path, *args)
    (tmp_path / "blurred").mkdir()
    blurred_video, blurred = _clip(tmp_path / "blurred", *args, "--motion-blur", "2")
    assert blurred["annotations"] == sharp["annotations"]

    def detail(video: Path) -> float:
        """Mean gradient magnitude inside the objects' boxes."""
        total = 0.0
        for frame, image in zip(_frames(video), sharp["images"], strict=True):
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
            gradient = np.hypot(cv2.Sobel(grey, -1, 1, 0), cv2.Sobel(grey, -1, 0, 1))
            for ann in sharp["annotations"]:
                if ann["image_id"] == image["id"]:
                    x, y, w, h = (int(v) for v in ann["bbox"])
                    total += gradient[y : y + h, x : x + w].mean()
        return total

    assert detail(blurred_video) < 0.85 * detail(sharp_video)


def test_hard_switches_every_condition_on_and_a_given_one_wins(tmp_path: Path) -> None:
    _, gt = _clip(tmp_path, "--frames", "3", *SMALL, "--hard", "--shake", "0")
    assert {k: gt["info"][k] for k in HARD} == HARD | {"shake": 0}
    assert gt["info"]["hard"] is True and "shake" not in gt["images"][0]
    assert {a["track_id"] for a in gt["annotations"]} <= set(range(1, 6 + 8 + 1))
    site = run_detect(
        *("synth", "--video", str(tmp_path / "site"), "--cameras", "2", "--frames", "2"),
        *(*SMALL, "--hard"),
    )
    assert site.returncode == 0, site.stderr
    camera = json.loads((tmp_path / "site" / "cam2.json").read_text())
    assert camera["info"]["hard"] is True and camera["info"]["crowd"] == HARD["crowd"]


def test_a_hard_clip_is_the_same_for_the_same_arguments(tmp_path: Path) -> None:
    args = ("--frames", "5", "--seed", "9", *SMALL, "--hard", "--degrade")
    video, gt = _clip(tmp_path, *args)
    (tmp_path / "again").mkdir()
    again, same = _clip(tmp_path / "again", *args)
    assert same == gt
    assert video.read_bytes() == again.read_bytes()
    (tmp_path / "other").mkdir()
    assert _clip(tmp_path / "other", *args[:3], "10", *args[4:])[1] != gt


def test_bad_condition_values_are_one_line_usage_errors(tmp_path: Path) -> None:
    clip = ("--video", str(tmp_path / "x.mp4"))
    for args, message in (
        ((*clip, "--perspective", "1"), "--perspective 1.0: use 0 or more and less than 1"),
        ((*clip, "--occluders", "11"), "--occluders 11: use 0 to 10"),
        ((*clip, "--crowd", "-1"), "--crowd -1: use 0 to 100"),
        ((*clip, "--shake", "17"), "--shake 17: use 0 to 16"),
        ((*clip, "--motion-blur", "-0.5"), "--motion-blur -0.5: use 0 to 5"),
        ((*clip, "--quiet", "1.5"), "--quiet 1.5: use 0 or more and less than 1"),
        ((*clip, "--quiet", "-0.1"), "--quiet -0.1: use 0 or more and less than 1"),
        (
            (*clip, "--quiet", "0.7", "--crowd", "3"),
            "--quiet 0.7 with --crowd 3: a crowd walks through every frame; give one of them",
        ),
        (
            ("--out", str(tmp_path / "d"), "--night"),
            "--night is a condition of a clip: give --video with it",
        ),
    ):
        result = run_detect("synth", *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {message}", result.stderr
    with pytest.raises(UsageError, match="--shake 99: use 0 to 16"):
        write_clip(tmp_path / "y.mp4", frames=1, seed=0, conditions=ClipConditions(shake=99))
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "y.mp4").exists()


# --- quiet footage: passers-by, drifting light, sensor noise -------------------------------


def _tracks(gt: dict) -> dict[int, list[dict]]:
    """Each object's annotations, by track id, in frame order."""
    tracks = defaultdict(list)
    for ann in sorted(gt["annotations"], key=lambda a: a["image_id"]):
        tracks[ann["track_id"]].append(ann)
    return tracks


def _side(ann: dict, width: int) -> str | None:
    """The side edge of the frame that ``ann``'s box touches: ``left``, ``right`` or None."""
    x, _, w, _ = ann["bbox"]
    return "left" if x == 0 else "right" if x + w == width else None


def test_a_quiet_clip_is_as_empty_as_asked_under_drifting_light_and_sensor_noise(
    tmp_path: Path,
) -> None:
    video = tmp_path / "clip.mp4"
    args = ("--frames", "200", "--objects", "3", "--seed", "4", "--quiet", "0.7", *SMALL)
    result = run_detect("synth", "--video", str(video), *args)
    assert result.returncode == 0, result.stderr
    shown = re.search(r"; (\d+) % of frames empty$", result.stdout.strip())
    assert shown and 67 <= int(shown[1]) <= 73, result.stdout
    gt = json.loads(video.with_suffix(".json").read_text())
    busy = {a["image_id"] - 1 for a in gt["annotations"]}
    assert gt["info"]["empty_share"] == round(1 - len(busy) / 200, 4)
    assert gt["info"]["empty_share"] == pytest.approx(0.7, abs=0.03)
    tracks = _tracks(gt)
    assert set(tracks) == {1, 2, 3}
    for anns in tracks.values():  # each passes once: in at one side, out at the other
        frames = [a["image_id"] for a in anns]
        assert frames == list(range(frames[0], frames[-1] + 1))
        assert {_side(anns[0], 160), _side(anns[-1], 160)} == {"left", "right"}
    # between them, the still scene: its brightness follows the drift, and noise moves its pixels
    empty = [k for k in range(200) if k not in busy]
    pictures = [frame.astype(np.float32) for frame in _frames(video)]
    drift = gt["info"]["light_drift"]
    gain = [
        1 + drift["amplitude"] * math.sin(2 * math.pi * k / 10 / drift["period_s"] + drift["phase"])
        for k in empty
    ]
    brightness = [pictures[k].mean() for k in empty]
    assert np.corrcoef(gain, brightness)[0, 1] > 0.95
    assert max(brightness) - min(brightness) > 5
    still = [
        np.abs(pictures[b] - pictures[a]).mean() for a, b in itertools.pairwise(empty) if b == a + 1
    ]
    assert len(still) > 100 and np.mean(still) > 1.5


def test_a_passer_by_that_stops_keeps_its_id_and_is_counted_once(tmp_path: Path) -> None:
    conditions = ClipConditions(quiet=0.6)
    site = read_site(write_site(tmp_path, 1, 160, 2, 160, 120, objects=3, conditions=conditions))
    (camera,) = site.cameras
    data = read_clip_truth(camera.truth)
    tracks = _tracks(data)
    assert set(tracks) == {1, 2, 3}
    stopper = tracks[3]  # every third stops
    frames = [a["image_id"] for a in stopper]
    assert frames == list(range(frames[0], frames[-1] + 1))  # one track, never lost
    boxes = [tuple(a["bbox"]) for a in stopper]
    standing = max(len(list(run)) for _, run in itertools.groupby(boxes))
    assert standing >= 5  # the same box, frame after frame
    x, _, w, _ = max(set(boxes), key=boxes.count)
    centre = x + w / 2
    (zone,) = site_layout(160, 120)["zones"]
    assert zone["polygon"][0][0] < centre < zone["polygon"][1][0]  # in the zone
    from_left = _side(stopper[0], 160) == "left"
    assert (centre < 80) == from_left  # before the line (x = 80), on the side it came from
    assert abs(centre - (STOP_AT * 160 if from_left else (1 - STOP_AT) * 160)) < 8
    events = true_events(data, sorted(i["frame_index"] for i in data["images"]), camera.counting)
    for track in (1, 2, 3):
        mine = sorted(
            (e.get("zone") or e["line"], e["event"]) for e in events if e["track_id"] == track
        )
        assert mine == [("centre", "enter"), ("centre", "exit"), ("middle", "cross")], track


def test_a_quiet_clip_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    args = ("--frames", "60", "--objects", "2", "--seed", "8", "--quiet", "0.5", *SMALL)
    video, gt = _clip(tmp_path, *args, "--hard")
    assert gt["info"]["crowd"] == 0 and gt["info"]["night"] is True  # --hard adds no crowd
    assert {a["track_id"] for a in gt["annotations"]} == {1, 2}
    (tmp_path / "again").mkdir()
    again, same = _clip(tmp_path / "again", *args, "--hard")
    assert same == gt and video.read_bytes() == again.read_bytes()
    (tmp_path / "other").mkdir()
    _, changed = _clip(tmp_path / "other", *args[:5], "9", *args[6:], "--hard")
    assert changed["annotations"] != gt["annotations"]
    assert changed["info"]["light_drift"] != gt["info"]["light_drift"]


def test_too_few_frames_for_the_passers_by_is_one_line(tmp_path: Path) -> None:
    result = run_detect(
        *("synth", "--video", str(tmp_path / "x.mp4"), "--frames", "20", "--quiet", "0.9")
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --quiet 0.9 with --objects 6: give at least 240 --frames (each passer-by in "
        "view 4 frames or more), or fewer --objects"
    )
    assert not (tmp_path / "x.mp4").exists()

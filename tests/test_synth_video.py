"""`detect synth --video`: a playable clip with per-frame ground truth and identities, and the
tracker following its objects from (noisy, gappy) ground-truth detections, and the scoring of a
`detect video` JSONL against the clip's ground truth."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_detect

from detect.errors import DataError
from detect.metrics.tracking import TrackedFrame, tracking_metrics
from detect.metrics.video import score_video
from detect.structures import Detections
from detect.track import Tracker


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
    perfect = score_video(gt, _write(tmp_path / "p.jsonl", _records(data)))
    assert perfect["frames"] == 20 and perfect["objects"] == 4
    assert perfect["AP50"] == pytest.approx(1.0) and perfect["AP"] == pytest.approx(1.0)
    assert (perfect["id_switches"], perfect["misses"], perfect["false_positives"]) == (0, 0, 0)
    for name in ("MOTA", "MOTP", "IDF1", "HOTA"):
        assert perfect[name] == pytest.approx(1.0), name
    swapped = score_video(gt, _write(tmp_path / "s.jsonl", _records(data, swap_from=10)))
    assert swapped["id_switches"] >= 1 and swapped["IDF1"] < 1 and swapped["MOTP"] == 1.0
    assert swapped["AP50"] == pytest.approx(1.0)
    shown = run_detect(
        *("eval", "--video", str(gt), "--jsonl", str(tmp_path / "s.jsonl")),
        *("--out", str(tmp_path / "eval")),
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^IDF1\s+0\.\d{3}$", shown.stdout, re.M), shown.stdout
    assert json.loads((tmp_path / "eval" / "video_metrics.json").read_text()) == swapped
    half = score_video(gt, _write(tmp_path / "h.jsonl", _records(data)[::2]))
    assert half["frames"] == 10  # only the processed frames are scored
    bad = _write(tmp_path / "b.jsonl", [*_records(data)[:3]])
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(DataError, match="line 4"):
        score_video(gt, bad)
    other = _write(tmp_path / "o.jsonl", [{"frame": 500, "detections": []}])
    with pytest.raises(DataError, match="frame 500"):
        score_video(gt, other)
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

"""`detect.metrics.tracking.tracking_metrics` against TrackEval run the way MOTChallenge runs it
(its own file reader, IoU and evaluator on MOT-format text files): ground truth fed back as the
tracker scores 1.0 everywhere, and a known corruption (an ID swap, missed boxes, jitter, false
alarms) gets exactly TrackEval's own numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detect.metrics.tracking import TrackedFrame, tracking_metrics

FRAMES = 40


def _truth() -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame ``(ids, xyxy boxes)`` of five objects moving in straight lines; object 5
    appears at frame 10."""
    out = []
    for t in range(FRAMES):
        ids, boxes = [], []
        for k in range(1, 6):
            if k == 5 and t < 10:
                continue
            x, y = 20 + 30 * k + (2 + k) * t * 0.7, 15 + 25 * k + (k % 3) * t * 0.5
            ids.append(k)
            boxes.append([x, y, x + 20 + 3 * k, y + 30 + 2 * k])
        out.append((np.array(ids), np.array(boxes, float)))
    return out


def _corrupt(truth: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Objects 1 and 2 swap ids from frame 20, 15 % of boxes missed, 2 px of jitter, a false
    alarm in every 4th frame, object 4 gets a new id after frame 30."""
    rng = np.random.default_rng(3)
    out = []
    for t, (ids, boxes) in enumerate(truth):
        ids = ids.copy()
        if t >= 20:
            ids = np.where(ids == 1, 2, np.where(ids == 2, 1, ids))
        ids = np.where((ids == 4) & (t > 30), 40, ids)
        keep = rng.random(len(ids)) > 0.15
        ids, boxes = ids[keep], boxes[keep] + rng.normal(0, 2.0, (int(keep.sum()), 4))
        if t % 4 == 0:
            ids = np.append(ids, 100 + t)
            boxes = np.vstack([boxes, [[300, 300, 330, 340]]])
        out.append((ids, boxes))
    return out


def _frames(truth, tracked) -> list[TrackedFrame]:
    return [
        TrackedFrame(g, gb, np.ones(len(g), int), t, tb, np.ones(len(t), int))
        for (g, gb), (t, tb) in zip(truth, tracked, strict=True)
    ]


def _mot_lines(frames: list[tuple[np.ndarray, np.ndarray]], gt: bool) -> str:
    """MOTChallenge text: ``frame,id,left,top,width,height,conf,class,visibility`` (1-based)."""
    rows = []
    for t, (ids, boxes) in enumerate(frames):
        for i, (x1, y1, x2, y2) in zip(ids, boxes, strict=True):
            tail = "1,1,1" if gt else "1,-1,-1,-1"
            rows.append(f"{t + 1},{i},{x1:.6f},{y1:.6f},{x2 - x1:.6f},{y2 - y1:.6f},{tail}")
    return "\n".join(rows) + "\n"


def _trackeval(tmp_path: Path, truth, tracked) -> dict:
    """TrackEval's MOTChallenge evaluation of one sequence from files; its combined figures."""
    import trackeval

    gt_file = tmp_path / "gt" / "clip" / "gt" / "gt.txt"
    gt_file.parent.mkdir(parents=True)
    gt_file.write_text(_mot_lines(truth, gt=True))
    tracker_file = tmp_path / "trackers" / "mine" / "data" / "clip.txt"
    tracker_file.parent.mkdir(parents=True)
    tracker_file.write_text(_mot_lines(tracked, gt=False))
    quiet = {"PRINT_CONFIG": False}
    dataset = trackeval.datasets.MotChallenge2DBox(
        {
            **quiet,
            "GT_FOLDER": str(tmp_path / "gt"),
            "TRACKERS_FOLDER": str(tmp_path / "trackers"),
            "TRACKERS_TO_EVAL": ["mine"],
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {"clip": FRAMES},
            "DO_PREPROC": False,
        }
    )
    evaluator = trackeval.Evaluator(
        {
            **quiet,
            "USE_PARALLEL": False,
            "PRINT_RESULTS": False,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
            "TIME_PROGRESS": False,
            "DISPLAY_LESS_PROGRESS": True,
        }
    )
    metrics = [
        trackeval.metrics.HOTA(),
        trackeval.metrics.CLEAR({**quiet, "THRESHOLD": 0.5}),
        trackeval.metrics.Identity({**quiet, "THRESHOLD": 0.5}),
    ]
    results, _ = evaluator.evaluate([dataset], metrics)
    found = results["MotChallenge2DBox"]["mine"]["clip"]["pedestrian"]
    return {
        "MOTA": found["CLEAR"]["MOTA"],
        "MOTP": found["CLEAR"]["MOTP"],
        "IDF1": found["Identity"]["IDF1"],
        "HOTA": float(np.mean(found["HOTA"]["HOTA"])),
        "DetA": float(np.mean(found["HOTA"]["DetA"])),
        "AssA": float(np.mean(found["HOTA"]["AssA"])),
        "id_switches": found["CLEAR"]["IDSW"],
        "matches": found["CLEAR"]["CLR_TP"],
        "misses": found["CLEAR"]["CLR_FN"],
        "false_positives": found["CLEAR"]["CLR_FP"],
    }


def test_ground_truth_fed_back_as_tracks_scores_one() -> None:
    truth = _truth()
    scores = tracking_metrics(_frames(truth, truth))
    for name in ("MOTA", "MOTP", "IDF1", "HOTA", "DetA", "AssA"):
        assert scores[name] == pytest.approx(1.0), name
    assert (scores["id_switches"], scores["misses"], scores["false_positives"]) == (0, 0, 0)
    assert scores["tracks"] == scores["gt_objects"] == 5


def test_a_known_corruption_gets_trackevals_own_numbers(tmp_path: Path) -> None:
    truth = _truth()
    tracked = _corrupt(truth)
    ours = tracking_metrics(_frames(truth, tracked))
    theirs = _trackeval(tmp_path, truth, tracked)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert ours["id_switches"] >= 3 and 0.3 < ours["HOTA"] < 0.95 and ours["IDF1"] < 0.9


def test_classes_are_matched_apart_and_pooled_by_detection() -> None:
    """Two classes: a track of the wrong class finds nothing; the pooled MOTA counts both."""
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    frames = [
        TrackedFrame(np.array([1]), box, np.array([1]), np.array([7]), box, np.array([2]))
        for _ in range(4)
    ]
    scores = tracking_metrics(frames)
    assert (scores["matches"], scores["misses"], scores["false_positives"]) == (0, 4, 4)
    assert scores["MOTA"] == pytest.approx(-1.0)

"""`detect.track.Tracker` on scripted scenes with known identities, scored by
`detect.metrics.tracking.tracking_metrics` (TrackEval; checked in test_tracking_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from detect.errors import ConfigError
from detect.metrics.tracking import TrackedFrame, tracking_metrics
from detect.structures import Detections
from detect.track import Tracker, TrackerConfig


def _box(x: float, y: float, size: float = 20.0) -> list[float]:
    return [x, y, x + size, y + size]


def _run(scene: list[list[tuple[int, list[float], float, int]]], tracker: Tracker | None = None):
    """Track a scene (per frame: (object id, box, score, label)); per-frame score inputs."""
    tracker = tracker or Tracker()
    frames = []
    for objects in scene:
        gt_ids = np.array([o[0] for o in objects], int)
        boxes = np.array([o[1] for o in objects], float).reshape(-1, 4)
        scores = np.array([o[2] for o in objects], float)
        labels = np.array([o[3] for o in objects], int)
        ids = tracker.update(Detections.of(boxes, labels, scores)).track_ids
        frames.append(TrackedFrame(gt_ids, boxes, labels, ids, boxes, labels))
    return frames


def score_tracking(frames: list[TrackedFrame]) -> dict:
    return tracking_metrics(frames)


def test_objects_moving_apart_keep_distinct_stable_ids() -> None:
    scene = [
        [(1, _box(50 - 3 * t, 50), 0.9, 1), (2, _box(80 + 3 * t, 50), 0.8, 1)] for t in range(30)
    ]
    frames = _run(scene)
    ids = np.array([f.track_ids for f in frames[1:]])
    assert (ids >= 1).all() and len(set(ids[:, 0])) == 1 and len(set(ids[:, 1])) == 1
    assert ids[0, 0] != ids[0, 1]
    assert score_tracking(frames)["id_switches"] == 0


def test_crossing_objects_of_one_class_keep_their_ids_by_their_motion() -> None:
    scene = [
        [(1, _box(10 + 4 * t, 50), 0.9, 1), (2, _box(170 - 4 * t, 54), 0.9, 1)] for t in range(40)
    ]
    score = score_tracking(_run(scene))
    assert score["id_switches"] == 0 and score["tracks"] == score["gt_objects"]


def test_an_occluded_object_gets_its_id_back_within_max_age() -> None:
    scene = []
    for t in range(40):
        objects = [(2, _box(150, 150), 0.9, 2)]
        if not 15 <= t < 25:  # hidden for 10 frames while it keeps moving
            objects.append((1, _box(10 + 3 * t, 40), 0.9, 1))
        scene.append(objects)
    frames = _run(scene, Tracker(TrackerConfig(max_age=15)))
    score = score_tracking(frames)
    assert score["id_switches"] == 0 and score["tracks"] == score["gt_objects"]
    frames = _run(scene, Tracker(TrackerConfig(max_age=5)))  # forgotten: a new id
    assert score_tracking(frames)["id_switches"] == 1


def test_low_scores_keep_a_track_alive_but_never_start_one() -> None:
    scene = []
    for t in range(30):
        score = 0.25 if 10 <= t < 20 else 0.9  # blurred frames
        scene.append([(1, _box(10 + 2 * t, 40), score, 1), (9, _box(200, 200), 0.2, 1)])
    frames = _run(scene)
    ids = [f.track_ids for f in frames]
    assert all(i[0] == ids[1][0] for i in ids[1:])  # one id, through the blur
    assert all(i[1] == -1 for i in ids)  # a low-score-only object gets none
    assert score_tracking(frames)["id_switches"] == 0


def test_another_class_does_not_take_a_track_and_one_frame_alarms_get_no_id() -> None:
    scene = [[(1, _box(40, 40), 0.9, 1)] for _ in range(10)]
    scene[5] = [(3, _box(40, 40), 0.95, 2)]  # same place, other class, one frame
    frames = _run(scene)
    assert frames[5].track_ids.tolist() == [-1]  # new track, not yet confirmed
    ids = [int(f.track_ids[0]) for i, f in enumerate(frames) if i not in (0, 5)]
    assert len(set(ids)) == 1 and ids[0] > 0


def test_bad_tracker_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Tracker(TrackerConfig(low=0.6, high=0.5))
    with pytest.raises(ConfigError):
        Tracker(TrackerConfig(iou_threshold=0))


def test_tracks_of_the_first_frame_are_shown_at_once_and_later_ones_from_their_second_match() -> (
    None
):
    tracker = Tracker(first_id=2, id_step=3)  # a site's camera 2 of 3: ids 2, 5, 8, ...
    boxes = np.array([_box(0, 0), _box(100, 0)], float)
    first = tracker.update(Detections.of(boxes, [1, 1], [0.9, 0.9])).track_ids
    assert first.tolist() == [2, 5] and tracker.live_ids() == {2, 5}
    later = Detections.of(np.vstack([boxes, [_box(200, 100)]]), [1, 1, 1], [0.9, 0.9, 0.9])
    second = tracker.update(later).track_ids
    assert second.tolist() == [2, 5, -1] and tracker.live_ids() == {2, 5}
    third = tracker.update(later).track_ids
    assert third.tolist() == [2, 5, 8] and tracker.live_ids() == {2, 5, 8}


def test_a_track_stays_live_while_it_coasts_and_ends_after_max_age() -> None:
    tracker = Tracker(TrackerConfig(max_age=2))
    tracker.update(Detections.of([_box(0, 0)], [1], [0.9]))
    for _ in range(2):  # unseen, coasting
        tracker.update(Detections.of(np.zeros((0, 4)), []))
        assert tracker.live_ids() == {1}
    tracker.update(Detections.of(np.zeros((0, 4)), []))
    assert tracker.live_ids() == set()

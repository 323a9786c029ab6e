"""`detect.track.Tracker` on scripted scenes with known identities, scored by
`detect.metrics.tracking.tracking_metrics` (TrackEval; checked in test_tracking_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from detect.appearance import FEATURE_SIZE, appearance_distance, colour_histograms
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


def _painted(objects: list[tuple[list[float], tuple[int, int, int]]]) -> np.ndarray:
    """A grey 200x300 BGR frame with each (xyxy box, colour) painted in order."""
    frame = np.full((200, 300, 3), 90, np.uint8)
    for (x1, y1, x2, y2), colour in objects:
        frame[int(y1) : int(y2), int(x1) : int(x2)] = colour
    return frame


def test_an_object_whose_visible_box_jumps_keeps_its_id_by_its_colours() -> None:
    """A red square walks right; for 4 frames it is hidden, then only its lowest rows show
    (its box jumps down and shrinks: no IoU with where it was heading). By IoU alone it gets a
    new id; with appearance (the colours inside its box) it keeps its own, while a blue square
    of the same class that appears beside it at the same time gets a new one."""
    red, blue = (0, 0, 220), (220, 0, 0)
    scene = []
    for t in range(20):
        objects = []
        if t < 8:
            objects.append((1, [20 + 4 * t, 40, 60 + 4 * t, 80], red))
        elif t >= 12:
            objects.append((1, [20 + 4 * t, 74, 60 + 4 * t, 80], red))  # its lowest rows
            objects.append((2, [20 + 4 * t, 100, 60 + 4 * t, 140], blue))
        scene.append(objects)
    for name, expected_tracks in (("iou", 3), ("appearance", 2)):
        tracker = Tracker(TrackerConfig.of(name))
        frames = []
        for objects in scene:
            boxes = np.array([o[1] for o in objects], float).reshape(-1, 4)
            found = Detections.of(boxes, ["square"] * len(objects), [0.9] * len(objects))
            looks = colour_histograms(_painted([(o[1], o[2]) for o in objects]), found)
            ids = tracker.update(found, looks).track_ids
            gt = np.array([o[0] for o in objects], int)
            frames.append(TrackedFrame(gt, boxes, np.ones(len(gt)), ids, boxes, np.ones(len(gt))))
        assert score_tracking(frames)["tracks"] == expected_tracks, name


def test_colour_histograms_count_the_pixels_inside_each_mask_or_box() -> None:
    frame = _painted([([0, 0, 10, 10], (0, 0, 250))])
    square = Detections.of([[0, 0, 10, 10], [0, 0, 20, 10]], ["a", "b"])
    looks = colour_histograms(frame, square)
    assert looks.shape == (2, FEATURE_SIZE) and np.allclose(looks.sum(axis=1), 1.0)
    assert looks[0].max() == pytest.approx(1.0)  # all red
    assert looks[1].max() == pytest.approx(0.5)  # half red, half grey
    assert appearance_distance(looks[:1], looks[:1])[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert appearance_distance(looks[:1], looks[1:])[0, 0] > 0.5


def test_an_appearance_tracker_needs_a_feature_per_detection() -> None:
    found = Detections.of([[0, 0, 10, 10]], ["a"])
    with pytest.raises(ValueError, match="one feature row per detection"):
        Tracker(TrackerConfig.of("appearance")).update(found)


def test_a_steady_middling_detection_of_the_background_never_takes_an_id() -> None:
    """demo cam2: the model sees a blob of the background as a circle at 0.72 in every frame,
    above the card's 0.7 but never at the tracker's ``confirm`` (0.8). It stays untracked (-1)
    from the first frame on; an object entering at 0.75 gets its id in the first frame it
    scores 0.8, and keeps it when its score falls back."""
    blob, entering = _box(180, 0), [0.75, 0.76, 0.85, 0.74, 0.9]
    tracker = Tracker()
    seen = []
    for t in range(12):
        boxes = [blob]
        scores = [0.72]
        if t >= 2:
            boxes.append(_box(20 + 3 * t, 100))
            scores.append(entering[t - 2] if t - 2 < len(entering) else 0.74)
        ids = tracker.update(Detections.of(np.array(boxes, float), [1] * len(boxes), scores))
        seen.append(ids.track_ids.tolist())
    assert all(frame[0] == -1 for frame in seen)
    assert [frame[1] for frame in seen[2:]] == [-1, -1] + [seen[4][1]] * 8
    assert seen[4][1] >= 1
    with pytest.raises(ConfigError, match="confirm"):
        Tracker(TrackerConfig(confirm=1.5))

"""Multi-object tracking by IoU association, in the manner of ByteTrack (Zhang et al., 2022).

Each frame: every track's box is moved by its velocity (constant-velocity prediction); the
detections scoring >= ``high`` are matched to the tracks by IoU (Hungarian assignment on IoU,
same class only, pairs under ``iou_threshold`` refused); then the detections scoring between
``low`` and ``high`` are matched to the tracks still unmatched (a blurred or half-occluded object
keeps its track, but such detections never start one); unmatched high-score detections start new
tracks; a track unmatched for more than ``max_age`` frames ends. A track gets its id shown once
it has been matched ``min_hits`` times and one of its detections scored at least ``confirm``, so
one-frame false alarms do not take ids, nor does a piece of background that the model sees as an
object at a steady, middling score (Frigate's per-object ``threshold`` plays this part, and
ByteTrack's new-track threshold is its detection threshold + 0.1); as in ByteTrack, tracks born
in the first frame scoring ``confirm`` are shown at once (nothing came before them to confirm
them against).

With ``appearance`` the detections come with colour histograms (`detect.appearance`), and after
both IoU stages the high-score detections still unmatched are matched to the tracks still
unmatched by appearance: the Bhattacharyya distance between the detection's histogram and the
track's running mean at most ``appearance_gate``, the same class, and the detection's centre
within reach of the track (its last box's diagonal plus twice its speed per frame since it was
seen). An object that comes out from behind another, or whose visible box jumped while half
hidden, keeps its id instead of starting a new track, as DeepSORT's and BoT-SORT's
re-identification do with learnt embeddings. The colours only add matches: IoU matches stand as
without them (a veto on colours made tracks flip on noisy frames, models/README.md).

Boxes are ``xyxy`` float pixels. Torch-free (NumPy and SciPy's assignment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from detect.appearance import appearance_distance
from detect.errors import ConfigError
from detect.ops.boxes import box_iou
from detect.structures import Detections


@dataclass
class Track:
    """One tracked object: its last box (xyxy), velocity (xyxy per frame), class and history."""

    track_id: int
    box: np.ndarray
    label: object  # the class name (any value its detections' labels compare equal to)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 1
    missed: int = 0  # frames since the last match
    shown: bool = False  # its id is reported (confirmed: see the module docstring)
    feature: np.ndarray | None = None  # running mean of its colour histograms (appearance)
    best: float = 0.0  # the highest score of its detections

    def predicted(self) -> np.ndarray:
        """Where the box should be in the next frame."""
        return self.box + self.velocity * (self.missed + 1)

    def update(self, box: np.ndarray, feature: np.ndarray | None = None) -> None:
        step = (box - self.box) / (self.missed + 1)
        self.velocity = step if self.hits == 1 else 0.5 * self.velocity + 0.5 * step
        self.box = box
        self.hits += 1
        self.missed = 0
        if feature is not None and feature.any():  # an empty mask (all zeros) tells nothing
            known = self.feature is not None
            self.feature = 0.9 * self.feature + 0.1 * feature if known else feature.copy()

    def reach(self) -> float:
        """How far (pixels) its centre may have gone since it was last seen."""
        x1, y1, x2, y2 = self.box
        speed = float(np.hypot(*(self.velocity[:2] + self.velocity[2:]) / 2))
        return float(np.hypot(x2 - x1, y2 - y1)) + 2 * speed * (self.missed + 1)


TRACKERS = ("appearance", "iou")
"""The trackers `detect video --tracker` and a camera's ``tracker:`` name: with appearance cues,
or by IoU alone (`TrackerConfig.of`)."""


@dataclass
class TrackerConfig:
    """Association settings (see the module docstring)."""

    high: float = 0.5
    low: float = 0.1
    iou_threshold: float = 0.2  # ByteTrack's match_thresh 0.8 (a distance, 1 - IoU)
    max_age: int = 30
    min_hits: int = 2
    confirm: float = 0.8  # the score one of a track's detections must reach for its id
    appearance: bool = False
    appearance_gate: float = 0.8

    @classmethod
    def of(cls, name: str, **settings: Any) -> TrackerConfig:
        """The settings of tracker ``name`` (one of `TRACKERS`), and any other ``settings``."""
        if name not in TRACKERS:
            raise ConfigError(f"tracker {name!r}: use one of {', '.join(TRACKERS)}")
        return cls(appearance=name == "appearance", **settings)

    def validate(self) -> None:
        if not 0 <= self.low <= self.high <= 1:
            raise ConfigError(
                f"tracker scores: need 0 <= low ({self.low}) <= high ({self.high}) <= 1"
            )
        if not 0 <= self.confirm <= 1:
            raise ConfigError(f"tracker confirm score {self.confirm}: use 0 to 1")
        if not 0 < self.iou_threshold <= 1:
            raise ConfigError(
                f"tracker IoU threshold {self.iou_threshold}: use more than 0, at most 1"
            )
        if not 0 < self.appearance_gate <= 1:
            raise ConfigError(
                f"tracker appearance gate {self.appearance_gate}: use more than 0, at most 1"
            )
        if self.max_age < 0 or self.min_hits < 1:
            raise ConfigError("tracker: max_age must be 0 or more and min_hits 1 or more")


class Tracker:
    """Frame-by-frame tracker; `update` returns the frame's detections with their track ids.

    New tracks are numbered ``first_id``, ``first_id + id_step``, ...: trackers of different
    cameras (`detect watch`) number theirs apart, so a track id names one object on the site.
    """

    def __init__(
        self, config: TrackerConfig | None = None, first_id: int = 1, id_step: int = 1
    ) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self.tracks: list[Track] = []
        self._next_id = first_id
        self._id_step = id_step
        self._frames = 0

    def update(self, detections: Detections, features: np.ndarray | None = None) -> Detections:
        """Advance one frame with its detections (their xyxy boxes, scores and labels) and, with
        ``appearance``, their ``features (N, B)`` (`detect.appearance.colour_histograms`); the
        same detections with their track ids: -1 for those without a shown track (below
        ``low``, unmatched low-score ones, and tracks not yet confirmed: matched fewer than
        ``min_hits`` times, or never scoring ``confirm``)."""
        boxes, scores, labels = detections.xyxy, detections.scores, detections.labels
        if not self.config.appearance:
            features = None
        elif features is None or len(features) != len(boxes):
            raise ValueError("an appearance tracker needs one feature row per detection")
        ids = np.full(len(boxes), -1, np.int64)
        owner: dict[int, Track] = {}
        unmatched = list(range(len(self.tracks)))
        high = np.flatnonzero(scores >= self.config.high)
        low = np.flatnonzero((scores >= self.config.low) & (scores < self.config.high))
        for stage, chosen in (("iou", high), ("iou", low), ("appearance", high)):
            if stage == "appearance" and features is None:
                break
            chosen = np.array([d for d in chosen if d not in owner], int)
            pairs = self._associate(boxes, labels, features, chosen, unmatched, stage)
            for det, t in pairs:
                self.tracks[t].update(boxes[det], None if features is None else features[det])
                owner[det] = self.tracks[t]
            taken = {t for _, t in pairs}
            unmatched = [t for t in unmatched if t not in taken]
        for t in unmatched:
            self.tracks[t].missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.config.max_age]
        for det in np.flatnonzero(scores >= self.config.high):
            if det not in owner:
                track = Track(self._next_id, boxes[det].copy(), labels[det])
                if features is not None and features[det].any():
                    track.feature = features[det].copy()
                track.shown = bool(self._frames == 0 and scores[det] >= self.config.confirm)
                self._next_id += self._id_step
                self.tracks.append(track)
                owner[det] = track
        self._frames += 1
        for det, track in owner.items():
            track.best = max(track.best, float(scores[det]))
            track.shown = track.shown or (
                track.hits >= self.config.min_hits and track.best >= self.config.confirm
            )
            if track.shown:
                ids[det] = track.track_id
        return detections.tracked(ids)

    def live_ids(self) -> set[int]:
        """Ids of the shown tracks still followed (matched lately or coasting up to
        ``max_age`` frames); a shown id missing from it has ended for good."""
        return {t.track_id for t in self.tracks if t.shown}

    def _associate(
        self,
        boxes: np.ndarray,
        labels: np.ndarray,
        features: np.ndarray | None,
        chosen: np.ndarray,
        tracks: list[int],
        stage: str,
    ) -> list[tuple[int, int]]:
        """Hungarian assignment of detections ``chosen`` to track indices ``tracks``: by IoU
        with the tracks' predicted boxes (``stage`` "iou"; pairs under the IoU threshold
        excluded), or by appearance distance (stage "appearance"; pairs over the appearance
        gate or out of the track's reach excluded). Other classes are never paired."""
        if not len(chosen) or not tracks:
            return []
        known = np.empty(len(tracks), object)
        known[:] = [self.tracks[t].label for t in tracks]
        allowed = labels[chosen][:, None] == known[None]
        predicted = np.stack([self.tracks[t].predicted() for t in tracks])
        if stage == "iou":
            gain = box_iou(boxes[chosen], predicted)
            allowed &= gain >= self.config.iou_threshold
        else:
            centres = (boxes[chosen][:, None, :2] + boxes[chosen][:, None, 2:]) / 2
            expected = (predicted[None, :, :2] + predicted[None, :, 2:]) / 2
            reach = np.array([self.tracks[t].reach() for t in tracks])
            seen = np.stack([_feature(self.tracks[t], features.shape[1]) for t in tracks])
            looks = appearance_distance(features[chosen], seen)
            allowed &= looks <= self.config.appearance_gate
            allowed &= np.linalg.norm(centres - expected, axis=2) <= reach[None]
            gain = 1.0 - looks
        gain = np.where(allowed, gain, -1.0)
        rows, cols = linear_sum_assignment(-gain)
        return [
            (int(chosen[r]), tracks[c]) for r, c in zip(rows, cols, strict=True) if allowed[r, c]
        ]


def _feature(track: Track, size: int) -> np.ndarray:
    """The track's appearance, or zeros (far from everything) when it has none yet."""
    return track.feature if track.feature is not None else np.zeros(size, np.float32)

"""Multi-object tracking figures by TrackEval (the MOTChallenge / HOTA reference code).

MOTA, MOTP and ID switches (CLEAR MOT), IDF1 (identity), and HOTA with its detection (DetA) and
association (AssA) parts, computed by ``trackeval.metrics`` on a clip's frames: per class (an
object is matched only to a track of its class, by box IoU), then pooled over the classes
(TrackEval's detection-averaged combination: every object-frame weighs the same). Matching
thresholds are TrackEval's: IoU 0.5 for CLEAR and identity, 0.05 ... 0.95 for HOTA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detect.ops.boxes import box_iou


@dataclass(frozen=True)
class TrackedFrame:
    """One frame: ground-truth objects and tracker output, xyxy float boxes.

    ``gt_ids (G,)``, ``gt_boxes (G, 4)``, ``gt_labels (G,)``; ``track_ids (T,)``,
    ``track_boxes (T, 4)``, ``track_labels (T,)``. Track id -1 (a detection without a track) is
    not tracker output and is left out.
    """

    gt_ids: np.ndarray
    gt_boxes: np.ndarray
    gt_labels: np.ndarray
    track_ids: np.ndarray
    track_boxes: np.ndarray
    track_labels: np.ndarray


def _sequence(frames: list[TrackedFrame], label: Any) -> dict[str, Any]:
    """TrackEval's per-sequence data for one class: ids renumbered 0.. and IoU per frame."""
    gt_index: dict[int, int] = {}
    track_index: dict[int, int] = {}
    gt_ids, track_ids, similarity = [], [], []
    for f in frames:
        g = np.asarray(f.gt_labels) == label
        t = (np.asarray(f.track_labels) == label) & (np.asarray(f.track_ids) >= 0)
        gt_ids.append(
            np.array([gt_index.setdefault(int(i), len(gt_index)) for i in f.gt_ids[g]], int)
        )
        track_ids.append(
            np.array(
                [track_index.setdefault(int(i), len(track_index)) for i in f.track_ids[t]], int
            )
        )
        boxes_gt = np.asarray(f.gt_boxes, np.float64).reshape(-1, 4)[g]
        boxes_track = np.asarray(f.track_boxes, np.float64).reshape(-1, 4)[t]
        similarity.append(box_iou(boxes_gt, boxes_track))
    return {
        "num_timesteps": len(frames),
        "num_gt_ids": len(gt_index),
        "num_tracker_ids": len(track_index),
        "num_gt_dets": sum(len(i) for i in gt_ids),
        "num_tracker_dets": sum(len(i) for i in track_ids),
        "gt_ids": gt_ids,
        "tracker_ids": track_ids,
        "similarity_scores": similarity,
    }


def tracking_metrics(frames: list[TrackedFrame]) -> dict[str, float | int]:
    """``MOTA``, ``MOTP``, ``IDF1``, ``HOTA``, ``DetA``, ``AssA`` (0..1), ``id_switches``,
    ``matches`` (object-frames found at IoU 0.5), ``misses``, ``false_positives``,
    ``gt_objects`` and ``tracks`` (distinct ids) over the frames (see the module docstring)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    metrics = {
        "clear": CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
        "identity": Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
        "hota": HOTA(),
    }
    labels = sorted(
        {int(x) for f in frames for x in f.gt_labels}
        | {
            int(x)
            for f in frames
            for x, i in zip(f.track_labels, f.track_ids, strict=True)
            if i >= 0
        }
    )
    per_class: dict[str, dict[Any, Any]] = {name: {} for name in metrics}
    objects = tracks = 0
    for label in labels:
        data = _sequence(frames, label)
        objects += data["num_gt_ids"]
        tracks += data["num_tracker_ids"]
        for name, metric in metrics.items():
            per_class[name][label] = metric.eval_sequence(data)
    if not labels:  # nothing to score: TrackEval's answer for an empty sequence
        empty = _sequence(frames, None)
        for name, metric in metrics.items():
            per_class[name][None] = metric.eval_sequence(empty)
    clear, identity, hota = (
        metrics[name].combine_classes_det_averaged(per_class[name]) for name in metrics
    )
    return {
        "MOTA": float(clear["MOTA"]),
        "MOTP": float(clear["MOTP"]),
        "IDF1": float(identity["IDF1"]),
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "id_switches": int(clear["IDSW"]),
        "matches": int(clear["CLR_TP"]),
        "misses": int(clear["CLR_FN"]),
        "false_positives": int(clear["CLR_FP"]),
        "gt_objects": objects,
        "tracks": tracks,
    }

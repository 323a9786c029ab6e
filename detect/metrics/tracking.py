"""Tracking figures against ground truth with identities: ID switches, as in CLEAR MOT.

Per frame, ground-truth objects and tracked boxes are matched one-to-one by IoU >= 0.5
(Hungarian on IoU). An ID switch is a ground-truth object matched to a different track id than
the last time it was matched. Also counted: matched pairs, misses, and the distinct track ids
given to each object (fragmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from detect.ops.boxes import box_iou


@dataclass(frozen=True)
class TrackingScore:
    """``id_switches``, ``matches`` (object-frames found), ``misses`` (object-frames not found),
    and ``ids_per_object`` (mean distinct track ids per object that was ever found)."""

    id_switches: int
    matches: int
    misses: int
    ids_per_object: float


def score_tracking(
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], iou: float = 0.5
) -> TrackingScore:
    """``frames`` holds per frame ``(gt_ids (G,), gt_boxes (G, 4), track_ids (T,),
    track_boxes (T, 4))`` with xyxy boxes; track id -1 (untracked) is not matched."""
    last: dict[int, int] = {}
    seen: dict[int, set[int]] = {}
    switches = matches = misses = 0
    for gt_ids, gt_boxes, track_ids, track_boxes in frames:
        keep = np.asarray(track_ids) >= 0
        track_ids = np.asarray(track_ids)[keep]
        track_boxes = np.asarray(track_boxes, np.float64).reshape(-1, 4)[keep]
        pairs: list[tuple[int, int]] = []
        if len(gt_ids) and len(track_ids):
            overlap = box_iou(np.asarray(gt_boxes, np.float64).reshape(-1, 4), track_boxes)
            rows, cols = linear_sum_assignment(-overlap)
            pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if overlap[r, c] >= iou]
        found = set()
        for r, c in pairs:
            obj, tid = int(gt_ids[r]), int(track_ids[c])
            found.add(r)
            matches += 1
            if obj in last and last[obj] != tid:
                switches += 1
            last[obj] = tid
            seen.setdefault(obj, set()).add(tid)
        misses += len(gt_ids) - len(found)
    per_object = float(np.mean([len(v) for v in seen.values()])) if seen else 0.0
    return TrackingScore(switches, matches, misses, per_object)

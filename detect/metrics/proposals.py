"""Proposal recall of the RPN: the share of ground-truth objects that some proposal among the
top K (by objectness) covers with IoU >= t, for K in 100/300/1000 and t in 0.5/0.7.

Class-agnostic; crowd regions are not objects. An image whose RPN keeps fewer than K proposals
uses all it has (``proposals_per_image`` says how many that was).
"""

from __future__ import annotations

import numpy as np
from pycocotools.coco import COCO

from detect.ops.boxes import box_iou, xywh_to_xyxy

TOP_K = (100, 300, 1000)
IOUS = (0.5, 0.7)


def proposal_recall(
    gt: COCO,
    proposals: dict[int, np.ndarray],
    top_k: tuple[int, ...] = TOP_K,
    ious: tuple[float, ...] = IOUS,
) -> dict[str, object]:
    """``{"iou_0.5": {"top_100": r, ...}, "iou_0.7": {...}, "objects": n,
    "proposals_per_image": mean}`` for ``proposals[image_id] = (P, 4)`` xyxy pixels of the
    original image, best first. Images without an entry count as having no proposals."""
    best = {k: [] for k in top_k}  # per object: its best IoU among the top k
    counts = []
    for image_id in gt.getImgIds():
        objects = [
            a for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd", 0)
        ]
        boxes = np.asarray(proposals.get(image_id, np.zeros((0, 4))), np.float64).reshape(-1, 4)
        counts.append(len(boxes))
        if not objects:
            continue
        targets = xywh_to_xyxy(np.array([a["bbox"] for a in objects], np.float64))
        iou = box_iou(boxes, targets) if len(boxes) else np.zeros((0, len(objects)))
        for k in top_k:
            top = iou[:k]
            best[k].append(top.max(axis=0) if len(top) else np.zeros(len(objects)))
    total = sum(len(v) for v in best[top_k[0]])
    out: dict[str, object] = {}
    for t in ious:
        out[f"iou_{t:g}"] = {
            f"top_{k}": float((np.concatenate(best[k]) >= t).mean()) if total else 0.0
            for k in top_k
        }
    out["objects"] = int(total)
    out["proposals_per_image"] = float(np.mean(counts)) if counts else 0.0
    return out

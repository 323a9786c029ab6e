"""Confusion matrix with a background row and column, at an operating score threshold.

Per image, detections scoring >= the threshold are taken in descending score order (whatever
their class); each takes the unmatched non-crowd object with the highest IoU >= 0.5 (any class),
counting in ``[object's class, detection's class]``. A detection that matches none but overlaps a
crowd region by >= 0.5 (intersection over the detection's area, as COCO) is ignored; any other
is a false alarm ``[background, detection's class]``. Objects left unmatched are misses
``[object's class, background]``. IoUs come from pycocotools (boxes or RLE masks).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

IOU = 0.5


def _geometry(item: dict[str, Any], iou_type: str, gt: COCO) -> Any:
    """A box ``[x, y, w, h]`` or the RLE of a ground-truth or result segmentation (polygons,
    uncompressed or compressed RLE: pycocotools' own conversion, sized by its image)."""
    return item["bbox"] if iou_type == "bbox" else gt.annToRLE(item)


def confusion_matrix(
    gt: COCO, results: list[dict[str, Any]], iou_type: str, threshold: float
) -> tuple[np.ndarray, list[int]]:
    """``(matrix (K+1, K+1) int, category ids)``: rows are true classes then background, columns
    predicted classes then background (see the module docstring)."""
    categories = sorted(gt.getCatIds())
    index = {c: i for i, c in enumerate(categories)}
    background = len(categories)
    matrix = np.zeros((background + 1, background + 1), np.int64)
    by_image: dict[int, list[dict]] = defaultdict(list)
    for r in results:
        if r["score"] >= threshold:
            by_image[r["image_id"]].append(r)
    for image_id in gt.getImgIds():
        objects = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        crowd = np.array([bool(o.get("iscrowd", 0)) for o in objects], bool)
        dets = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        taken = np.zeros(len(objects), bool)
        if dets and objects:
            dt_geo = [_geometry(d, iou_type, gt) for d in dets]
            gt_geo = [_geometry(o, iou_type, gt) for o in objects]
            ious = np.asarray(mask_utils.iou(dt_geo, gt_geo, crowd.astype(np.uint8).tolist()))
        for d, det in enumerate(dets):
            column = index[det["category_id"]]
            row = background
            if objects:
                candidates = np.where(~crowd & ~taken, ious[d], -1.0)
                best = int(np.argmax(candidates))
                if candidates[best] >= IOU:
                    taken[best] = True
                    row = index[objects[best]["category_id"]]
                elif crowd.any() and ious[d][crowd].max() >= IOU:
                    continue  # on a crowd region: ignored
            matrix[row, column] += 1
        for o, obj in enumerate(objects):
            if not crowd[o] and not taken[o]:
                matrix[index[obj["category_id"]], background] += 1
    return matrix, categories

"""COCO AP/AR through pycocotools' COCOeval (wrapped, never re-derived).

Results follow the COCO results format: `{"image_id", "category_id", "bbox": [x, y, w, h],
"score"}` plus `"segmentation"` (RLE or polygons) for `segm`.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.data.coco import read_json

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def load_gt(json_path: Path, image_ids: set[int] | None = None) -> COCO:
    """A pycocotools COCO object for a ground-truth file, with `area`/`iscrowd` defaulted.

    `image_ids` restricts it to those images (e.g. the ones that passed validation).
    """
    data = read_json(Path(json_path))
    if image_ids is not None:
        data["images"] = [i for i in data["images"] if i["id"] in image_ids]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in image_ids]
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_stats(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> dict[str, float]:
    """The 12 COCOeval summary numbers for `iou_type` ("bbox" or "segm"), on a 0-1 scale.

    No results at all scores 0 everywhere (pycocotools cannot load an empty result list).
    """
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(copy.deepcopy(results))
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(evaluator.stats), strict=True)}

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


def load_gt(
    json_path: Path, image_ids: set[int] | None = None, data: dict[str, Any] | None = None
) -> COCO:
    """A pycocotools COCO object for a ground-truth file, with `area`/`iscrowd` defaulted.

    `image_ids` restricts it to those images (e.g. the ones that passed validation); `data` is
    the file's content when already read (its annotations get the defaults too).
    """
    data = dict(data) if data is not None else read_json(Path(json_path))
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


def run_cocoeval(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> COCOeval:
    """COCOeval of ``results`` against ``gt`` for ``iou_type`` ("bbox" or "segm"), evaluated,
    accumulated and summarized (its own printing swallowed).

    An empty result list is evaluated as no detections at all (pycocotools' ``loadRes`` cannot
    load one): 0 where there is ground truth, -1 where COCOeval has none, as it would give.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            dt = gt.loadRes([dict(r) for r in results])  # loadRes sets keys of each result
        else:
            dt = COCO()
            dt.dataset = {
                "images": gt.dataset["images"],
                "categories": copy.deepcopy(gt.dataset.get("categories", [])),
                "annotations": [],
            }
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def summary(evaluator: COCOeval) -> dict[str, float]:
    """The 12 summary numbers of an evaluated COCOeval, by name, on a 0-1 scale (-1: no GT)."""
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(evaluator.stats), strict=True)}


def defined(stats: dict[str, float]) -> dict[str, float | None]:
    """``stats`` with pycocotools' -1 (undefined: no ground-truth objects of that size, or of
    that class) as None, JSON's null."""
    return {name: (None if value == -1 else value) for name, value in stats.items()}


def ap_text(value: float | None) -> str:
    """A COCO figure to 0.001, or n/a where it is undefined (None, see `defined`)."""
    return "n/a" if value is None else f"{value:.3f}"


def coco_stats(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> dict[str, float]:
    """The 12 COCOeval summary numbers for `iou_type` ("bbox" or "segm"), on a 0-1 scale."""
    return summary(run_cocoeval(gt, results, iou_type))


def per_class_ap(evaluator: COCOeval) -> dict[int, dict[str, float]]:
    """``{category_id: {"AP", "AP50"}}`` from COCOeval's precision array (all areas, 100
    detections), averaged as its summary does; -1 for a category without ground truth."""
    precision = evaluator.eval["precision"]  # (T iou, R recall, K category, A area, M maxDets)
    out = {}
    for k, category in enumerate(evaluator.params.catIds):
        values = {}
        for name, block in (("AP", precision[:, :, k, 0, -1]), ("AP50", precision[0, :, k, 0, -1])):
            valid = block[block > -1]
            values[name] = float(valid.mean()) if valid.size else -1.0
        out[int(category)] = values
    return out

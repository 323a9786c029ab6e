"""COCO results: `coco_result`, the one converter of `Detection`s (predict, eval and training
validation), and `read_results`, the reader of a results file.

A COCO results entry is ``{image_id, category_id, bbox: [x, y, w, h], score}`` plus, for mask
models, a ``segmentation``: polygons (``"polygons"``: one flat ``[x1, y1, ...]`` list per part,
holes filled, as COCO polygons cannot hold them) or compressed RLE of the polygons' pixels
(``"rle"``: holes kept, what pycocotools scores). Numbers go through float32 first, the precision
the gRPC API carries, so detections made locally and through a server give identical entries;
then boxes are rounded to 0.01 pixel, polygon vertices to 0.1 pixel and scores to 0.0001
(`detect.rounding`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from detect.errors import DataError
from detect.ops.boxes import xyxy_to_xywh
from detect.rounding import BOX_DECIMALS, SCORE_DECIMALS, rounded
from detect.structures import Detection

if TYPE_CHECKING:  # pycocotools (the eval extra) loads only where results are read or RLE made
    from pycocotools.coco import COCO

SEGMENTATIONS = ("polygons", "rle")


def coco_result(
    image_id: int,
    detection: Detection,
    image_size: tuple[int, int],
    segmentation: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The COCO results entry of one detection in an image of ``image_size = (height, width)``.

    ``bbox`` is `detect.ops.boxes.xyxy_to_xywh` of the detection's box; ``segmentation``
    "polygons" or "rle" adds the mask (when the detection has polygons), None leaves it out;
    ``extra`` fields (``file_name``, ``label``, ...) are added as they are.
    """
    if segmentation not in (None, *SEGMENTATIONS):
        raise ValueError(f"segmentation {segmentation!r}: use None, 'polygons' or 'rle'")
    x, y, w, h = xyxy_to_xywh(np.asarray(detection.box, np.float64)).tolist()
    result: dict[str, Any] = {
        "image_id": image_id,
        "category_id": detection.class_id,
        "bbox": rounded(np.float32([x, y, w, h]), BOX_DECIMALS),
        "score": rounded(np.float32(detection.score), SCORE_DECIMALS),
        **extra,
    }
    if segmentation == "polygons" and detection.polygons:
        from detect.runtime.polygons import polygons_to_coco

        result["segmentation"] = polygons_to_coco(detection.polygons)
    elif segmentation == "rle":
        from detect.data.coco import mask_to_rle
        from detect.runtime.polygons import polygons_to_mask

        mask = polygons_to_mask(detection.polygons, *image_size)
        result["segmentation"] = mask_to_rle(mask)
    return result


def read_results(path: Path, gt: COCO) -> list[dict[str, Any]]:
    """A COCO results file, checked against ``gt``: each item needs a known ``image_id`` and
    ``category_id``, a finite ``score`` and a ``bbox`` ``[x, y, w, h]`` with w, h >= 0 and/or a
    ``segmentation`` (polygons or RLE; polygons are converted to RLE, which is all pycocotools'
    ``loadRes`` takes, rasterised as pycocotools rasterises them)."""
    from pycocotools import mask as mask_utils

    from detect.data.coco import load_json

    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of COCO results ({{image_id, ...}})")
    images, categories = set(gt.getImgIds()), set(gt.getCatIds())
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object with image_id, category_id, score, bbox")
        if item.get("image_id") not in images:
            raise DataError(
                f"{where}: image_id {item.get('image_id')!r} is not in the ground truth "
                f"({len(images)} images); were these predictions made on another split?"
            )
        if item.get("category_id") not in categories:
            raise DataError(
                f"{where}: category_id {item.get('category_id')!r} is not a ground-truth "
                f"category (known: {sorted(categories)})"
            )
        score = item.get("score")
        numeric = isinstance(score, int | float) and not isinstance(score, bool)
        if not numeric or not math.isfinite(score):
            raise DataError(f"{where}: needs a numeric 'score' (got {score!r})")
        bbox = item.get("bbox")
        if bbox is None and "segmentation" not in item:
            raise DataError(f"{where}: needs a 'bbox' [x, y, w, h] or a 'segmentation'")
        if bbox is not None:
            if (
                not isinstance(bbox, list)
                or len(bbox) != 4
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
            ):
                raise DataError(f"{where}: 'bbox' must be 4 numbers [x, y, w, h] (got {bbox!r})")
            if bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{where}: bbox {bbox} has a negative width or height")
        segmentation = item.get("segmentation")
        if isinstance(segmentation, list):  # polygons: pycocotools' loadRes only takes RLE
            image = gt.imgs[item["image_id"]]
            try:
                rles = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
            except Exception:
                raise DataError(
                    f"{where}: 'segmentation' must be polygons [[x1, y1, x2, y2, ...], ...] "
                    "or an RLE {size, counts}"
                ) from None
            rle = mask_utils.merge(rles)
            item["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        elif segmentation is not None:
            if not (isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys()):
                raise DataError(
                    f"{where}: 'segmentation' must be polygons or an RLE {{size, counts}}"
                )
            image = gt.imgs[item["image_id"]]
            if list(segmentation["size"]) != [image["height"], image["width"]]:
                raise DataError(
                    f"{where}: RLE size {segmentation['size']} is not the image's "
                    f"[height, width] [{image['height']}, {image['width']}]"
                )
    return data

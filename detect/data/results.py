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

import logging
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

logger = logging.getLogger(__name__)


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


def _path_suffixes(name: str) -> list[str]:
    """``a/b/c.png`` -> ``["a/b/c.png", "b/c.png", "c.png"]`` (longest first; ``\\`` and ``./``
    spelt as ``/``)."""
    parts = [p for p in Path(name.replace("\\", "/")).parts if p not in ("/", ".")]
    return ["/".join(parts[i:]) for i in range(len(parts))]


class ImageMatcher:
    """Finds the ground-truth image a result names by its ``file_name``: the image whose
    ``file_name`` and the result's are the same path or one ends with the other
    (``D/images/000001.jpg`` is ``images/000001.jpg``), when exactly one image does."""

    def __init__(self, gt: COCO) -> None:
        owners: dict[str, set[int]] = {}
        for image in gt.dataset["images"]:
            for suffix in _path_suffixes(str(image.get("file_name", ""))):
                owners.setdefault(suffix, set()).add(int(image["id"]))
        self._owners = owners
        self.example = next((str(i.get("file_name")) for i in gt.dataset["images"]), "")

    def __call__(self, file_name: object) -> int | None:
        """The image id ``file_name`` names, or None (not a string, no image, several)."""
        if not isinstance(file_name, str):
            return None
        for suffix in _path_suffixes(file_name):
            owners = self._owners.get(suffix)
            if owners is not None:
                return next(iter(owners)) if len(owners) == 1 else None
        return None


def match_images(data: list[Any], gt: COCO, path: Path) -> str:
    """Point each result of ``data`` (read from ``path``) at its ground-truth image, in place;
    how they were matched: "file_name" or "image_id".

    Results that all carry a ``file_name`` are matched by it (`ImageMatcher`; their
    ``image_id`` is then replaced by the ground truth's, as `detect predict` numbers its images
    1..N in the order it read them), the ones naming images outside the ground truth left out;
    otherwise by ``image_id``. A `DataError` says what matched nothing and the fix."""
    images = set(gt.getImgIds())
    items = [r for r in data if isinstance(r, dict)]
    matcher = ImageMatcher(gt)
    if items and all("file_name" in r for r in items):
        ids = [matcher(r["file_name"]) for r in items]
        if any(i is not None for i in ids):
            kept = [r for r, i in zip(items, ids, strict=True) if i is not None]
            for result, image_id in zip(kept, [i for i in ids if i is not None], strict=True):
                result["image_id"] = image_id
            if len(kept) < len(items):
                logger.warning(
                    "%s: %d of %d results are of images that are not in the ground truth "
                    "(by file_name); they are left out",
                    path,
                    len(items) - len(kept),
                    len(items),
                )
            data[:] = kept + [r for r in data if not isinstance(r, dict)]
            return "file_name"
        logger.warning(
            "%s: no file_name of its results names an image of the ground truth (file names "
            "like %r); matching them by image_id",
            path,
            matcher.example,
        )
    for i, item in enumerate(items):
        if item.get("image_id") not in images:
            named, image_id = item.get("file_name"), item.get("image_id")
            known = f"ids {min(images)}..{max(images)}"
            if named is None:
                what = (
                    f"image_id {image_id!r} is not an image of the ground truth ({known}) and it "
                    "has no file_name to match by"
                )
            else:
                what = (
                    f"neither its image_id {image_id!r} nor its file_name {named!r} is an image "
                    f"of the ground truth ({known}, file names like {matcher.example!r})"
                )
            raise DataError(
                f"{path}[{i}]: {what}; score predictions made on this ground truth's images "
                "(detect predict on its image folder), or give --gt the ground truth they were "
                "made from"
            )
    return "image_id"


def read_results(path: Path, gt: COCO) -> tuple[list[dict[str, Any]], str]:
    """A COCO results file, checked against ``gt``, and how its results were matched to the
    ground-truth images (`match_images`: "file_name" or "image_id"): each item needs a
    ``category_id`` of ``gt``, a finite ``score`` and a ``bbox`` ``[x, y, w, h]`` with w, h >= 0
    and/or a ``segmentation`` (polygons or RLE; polygons are converted to RLE, which is all
    pycocotools' ``loadRes`` takes, rasterised as pycocotools rasterises them)."""
    from pycocotools import mask as mask_utils

    from detect.data.coco import load_json

    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of COCO results ({{image_id, ...}})")
    matched_by = match_images(data, gt, path)
    categories = set(gt.getCatIds())
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object with image_id, category_id, score, bbox")
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
    return data, matched_by

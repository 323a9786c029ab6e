"""Training validation: a torch model over dataset records, scored by COCOeval.

The model runs as an `EagerModel` (the backend protocol), its detections become COCO results
through `detect.data.results.coco_result`, the same converter as `detect predict` and
`detect eval` use, with the same options as `detect eval` (every detection down to the model's
own threshold, at most 100 per image, masks traced without simplification and scored as RLE).
"""

from __future__ import annotations

from torch import nn
from tqdm import tqdm

from detect.data.coco import CocoData
from detect.data.results import coco_result
from detect.errors import DataError
from detect.metrics.coco import coco_stats, load_gt
from detect.models.eager import EagerModel
from detect.runtime.backend import detect_each
from detect.structures import DetectOptions

EVAL_OPTIONS = DetectOptions(score_threshold=0.0, max_detections=100, polygon_tolerance=0.0)
"""What scoring asks of a model: every detection it keeps, masks traced exactly."""


def evaluate_records(
    model: nn.Module, data: CocoData, desc: str, show: bool, batch_size: int = 4
) -> dict[str, dict[str, float]]:
    """COCO stats per IoU type ("bbox", and "segm" for mask models) on `data`."""
    gt = load_gt(data.json_path, {r.image_id for r in data.records})
    backend = EagerModel(model, data.label_names, data.category_ids)
    has_masks = backend.info.has_masks
    items = [(r.image_id, r.path) for r in data.records]
    results = []
    with tqdm(total=len(items), desc=desc, leave=False, disable=not show) as bar:
        for image_id, detected in detect_each(backend, items, EVAL_OPTIONS, batch_size):
            if isinstance(detected, Exception):
                raise DataError(f"cannot use image {image_id}: {detected}; fix or remove it")
            results += [
                coco_result(image_id, d, detected.image_size, "rle" if has_masks else None)
                for d in detected.detections
            ]
            bar.update()
    iou_types = ["bbox", "segm"] if has_masks else ["bbox"]
    return {t: coco_stats(gt, results, t) for t in iou_types}

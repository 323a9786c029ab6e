"""Training validation: a torch model over dataset records, scored by COCOeval.

The model runs as an `EagerModel` (the backend protocol) through the same
`detect.metrics.evaluator.inference_on_dataset`, `CocoEvaluator` and scoring options as
`detect eval`, so validation AP and `detect eval` AP are computed the same way.
"""

from __future__ import annotations

from torch import nn

from detect.data.coco import CocoData
from detect.errors import DataError
from detect.metrics.coco import coco_stats, load_gt
from detect.metrics.evaluator import CocoEvaluator, inference_on_dataset, scoring_options
from detect.models.eager import EagerModel
from detect.progress import StartProgress, silent


def evaluate_records(
    model: nn.Module,
    data: CocoData,
    what: str,
    progress: StartProgress = silent,
    batch_size: int = 4,
) -> dict[str, dict[str, float]]:
    """COCO stats per IoU type ("bbox", and "segm" for mask models) on `data`; the images done
    to ``progress`` as ``what``."""
    gt = load_gt(data.json_path, {r.image_id for r in data.records})
    backend = EagerModel(model, data.label_names, data.category_ids)
    has_masks = backend.info.has_masks
    evaluator = CocoEvaluator(gt, masks=has_masks)
    images = {r.image_id: r.path for r in data.records}
    with progress(what, len(images), "images") as bar:
        options = scoring_options(has_masks)
        inference_on_dataset(backend, images, evaluator, options, batch_size, bar.update)
    if evaluator.failed:
        reason = next(iter(evaluator.failed.values()))
        raise DataError(f"cannot use {reason}; fix or remove it from {data.json_path}")
    iou_types = ["bbox", "segm"] if has_masks else ["bbox"]
    return {t: coco_stats(gt, evaluator.results, t) for t in iou_types}

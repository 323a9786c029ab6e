"""Raw model outputs -> `Detection`s: thresholds, class filter, class-agnostic NMS, top-k, masks
traced to polygons. NumPy, OpenCV and shapely; shared by every backend that runs a model here
(ONNX Runtime, torch eager), so they answer the same options the same way.
"""

from __future__ import annotations

import numpy as np

from detect.errors import ModelError
from detect.ops.nms import nms
from detect.runtime.masks import paste_mask
from detect.runtime.polygons import mask_to_polygons
from detect.structures import Detection, DetectOptions, ModelInfo, Polygon, RawDetections


def postprocess(raw: RawDetections, options: DetectOptions, info: ModelInfo) -> list[Detection]:
    """Threshold, filter and convert ``raw`` (xyxy pixels of an ``raw.image_size`` image).

    In this order: ``options.score_threshold`` (default: ``info.score_threshold``) drops lower
    scores; ``options.classes`` (names or category ids) keeps those classes;
    ``options.agnostic_nms`` (default: ``info.agnostic_nms``) runs greedy NMS over the remaining
    xyxy boxes regardless of class (`detect.ops.nms.nms`, the same as ``torchvision.ops.nms``):
    of boxes overlapping with IoU above ``info.agnostic_nms_iou`` only the highest-scoring one
    stays, so one object labelled as two classes gets one box (the graph's NMS works within each
    class only); ``options.max_detections`` then keeps the highest-scoring ones. Masks are
    thresholded (at ``info.mask_threshold``) and traced only for the detections kept, and only
    when ``options.polygons``.
    """
    threshold = info.score_threshold if options.score_threshold is None else options.score_threshold
    agnostic = info.agnostic_nms if options.agnostic_nms is None else options.agnostic_nms
    keep = raw.scores >= threshold
    if options.classes:
        keep &= np.isin(raw.labels, list(info.class_labels(options.classes)))
    index = np.flatnonzero(keep)
    if agnostic:
        # nms returns its kept boxes by decreasing score, equal scores by index, like below
        index = index[nms(raw.boxes[index], raw.scores[index], info.agnostic_nms_iou)]
    else:
        index = index[np.argsort(-raw.scores[index], kind="stable")]
    if options.max_detections is not None:
        index = index[: options.max_detections]
    kept = raw.select(index)
    if len(kept) and kept.labels.max() > len(info.labels):
        raise ModelError(
            f"model {info.name} predicted label {kept.labels.max()} but its model card names "
            f"only {len(info.labels)} classes; restore the card that came with it"
        )
    return [
        Detection(
            box=(x1, y1, x2, y2),
            label=info.labels[int(kept.labels[i]) - 1],
            class_id=info.category_ids[int(kept.labels[i]) - 1],
            score=float(kept.scores[i]),
            polygons=_polygons(kept, i, options, info.mask_threshold) if options.polygons else [],
        )
        for i, (x1, y1, x2, y2) in enumerate(kept.boxes.astype(np.float64).tolist())
    ]


def _polygons(
    raw: RawDetections, i: int, options: DetectOptions, threshold: float
) -> list[Polygon]:
    """Detection ``i``'s mask traced to polygons (none for a box-only model)."""
    height, width = raw.image_size
    if raw.mask_probs is not None:
        crop, x0, y0 = paste_mask(raw.mask_probs[i], raw.boxes[i], height, width)
        mask = crop > threshold
    elif raw.masks is not None:  # whole image: traced within the rows and columns it covers
        full = raw.masks[i] > threshold
        rows, columns = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        if not rows.size:
            return []
        y0, x0 = int(rows[0]), int(columns[0])
        mask = full[y0 : rows[-1] + 1, x0 : columns[-1] + 1]
    else:
        return []
    if not mask.size:
        return []
    return mask_to_polygons(
        mask,
        options.polygon_tolerance,
        options.min_polygon_area,
        offset=(float(x0), float(y0)),
    )

"""Run a torch detector over dataset records and emit COCO-format results.

Used by training validation and (later) `detect eval --checkpoint`. Boxes come out of the model
as xyxy pixels of the original image and go into results as COCO `[x, y, w, h]`; masks are
thresholded at 0.5 and encoded as compressed RLE.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from detect.data.coco import CocoData, ImageRecord, mask_to_rle
from detect.data.dataset import read_rgb
from detect.errors import DataError
from detect.metrics.coco import coco_stats, load_gt


def to_coco_results(
    output: dict[str, torch.Tensor], image_id: int, category_ids: list[int]
) -> list[dict]:
    """COCO results of one image's model output (xyxy -> [x, y, w, h], masks > 0.5 -> RLE)."""
    boxes = output["boxes"].float().cpu().numpy()
    scores = output["scores"].float().cpu().numpy()
    labels = output["labels"].cpu().numpy()
    masks = None
    if "masks" in output:
        masks = (output["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8)
    results = []
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        result = {
            "image_id": image_id,
            "category_id": category_ids[int(labels[i]) - 1],
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "score": float(scores[i]),
        }
        if masks is not None:
            result["segmentation"] = mask_to_rle(masks[i])
        results.append(result)
    return results


@torch.no_grad()
def predict_records(
    model: nn.Module,
    records: list[ImageRecord],
    category_ids: list[int],
    device: torch.device,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """COCO results for every record. `category_ids[label - 1]` maps model labels to COCO ids."""
    model.eval()
    results: list[dict] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        images = []
        for record in chunk:
            image = read_rgb(str(record.path))
            if image is None:
                raise DataError(f"cannot decode {record.path}; fix or remove it from the JSON")
            images.append(torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(device))
        outputs = model(images)
        for record, output in zip(chunk, outputs, strict=True):
            results.extend(to_coco_results(output, record.image_id, category_ids))
        if progress is not None:
            progress(len(chunk))
    return results


def evaluate_records(
    model: nn.Module, data: CocoData, device: torch.device, desc: str, show: bool
) -> dict[str, dict[str, float]]:
    """COCO stats per IoU type ("bbox", and "segm" for mask models) on `data`."""
    gt = load_gt(data.json_path, {r.image_id for r in data.records})
    with tqdm(total=len(data.records), desc=desc, leave=False, disable=not show) as bar:
        results = predict_records(
            model, data.records, data.category_ids, device, progress=bar.update
        )
    iou_types = ["bbox", "segm"] if model.roi_heads.has_mask() else ["bbox"]
    return {t: coco_stats(gt, results, t) for t in iou_types}

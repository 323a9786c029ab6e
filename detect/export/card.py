"""The model card of an exported graph (`detect.runtime.model_card.ModelCard`): what the graph
is, its input and outputs, its labels and default thresholds, and where it came from."""

from __future__ import annotations

import datetime
from pathlib import Path

from detect import __version__
from detect.export.config import ExportConfig
from detect.export.source import ModelSource
from detect.models.spec import ModelSpec
from detect.runtime.model_card import ModelCard, sha256_file


def model_card(name: str, source: ModelSource, path: Path, config: ExportConfig) -> ModelCard:
    """The card of the graph at ``path`` (its sha256), traced from ``source``'s model with
    ``config``'s opset, precision and default thresholds."""
    ckpt, model = source.checkpoint, source.model
    spec = ModelSpec.from_checkpoint(ckpt)
    transform = model.transform
    roi_heads = model.roi_heads
    outputs = {
        "boxes": "(N, 4) float32, xyxy pixels of the input image",
        "labels": "(N,) int64, model labels 1..K; the name is labels[k - 1]",
        "scores": "(N,) float32, 0..1",
    }
    if roi_heads.has_mask():
        side = 2 * roi_heads.mask_roi_pool.output_size[0]  # the head upsamples the RoI 2x
        outputs["mask_probs"] = (
            f"(N, {side}, {side}) float32, mask probabilities of the detection's class over "
            "its box; paste with detect.runtime.masks"
        )
    return ModelCard(
        name=name,
        arch=spec.arch,
        backbone=spec.backbone,
        roi=spec.roi,
        labels=list(ckpt["labels"]),
        category_ids=[int(c) for c in ckpt["category_ids"]],
        input={
            "name": "image",
            "dtype": "uint8",
            "shape": ["height", "width", 3],
            "color": "RGB",
            "in_graph": "float, /255, (x - mean) / std, resize short side to min_size "
            "(long side <= max_size), bilinear",
            "mean": [float(v) for v in transform.image_mean],
            "std": [float(v) for v in transform.image_std],
            "min_size": int(transform.min_size[0]),
            "max_size": int(transform.max_size),
        },
        outputs=outputs,
        precision="fp16" if config.fp16 else "fp32",
        thresholds={
            "score": config.score,
            "mask": 0.5,
            "agnostic_nms": config.agnostic_nms,
            "agnostic_nms_iou": config.agnostic_nms_iou,
            "graph_score": float(roi_heads.score_thresh),
            "nms_iou": float(roi_heads.nms_thresh),
            "max_detections": int(roi_heads.detections_per_img),
        },
        sha256=sha256_file(path),
        opset=config.opset,
        detect_version=__version__,
        exported_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        source=source.card_source,
        recipe=dict(ckpt.get("config", {})),
        metrics=dict(ckpt.get("metrics", {})),
    )

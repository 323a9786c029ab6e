"""Random Faster/Mask R-CNN weights that behave like a trained model's, for benchmarks.

No pretrained weights can be downloaded here, and a plain random init is degenerate: BatchNorm's
running statistics (mean 0, var 1) make activations vanish or explode, so every proposal gets the
same or a saturated score (ties make parity and detection counts meaningless). `random_checkpoint`
recalibrates the BatchNorm statistics on a few real images and gives the class head small weights
and a background bias, so that scores spread over (0, 1) and a few detections per image pass 0.5.
"""

from __future__ import annotations

from pathlib import Path

import torch

from detect.models.build import build_model
from detect.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from detect.models.inputs import image_tensor
from detect.runtime.image import decode_image


def random_checkpoint(
    path: Path, arch: str, backbone: str, min_size: int, max_size: int, images: list[Path]
) -> Path:
    """Write a random-weight checkpoint with live activations and spread scores (see above).

    ``images``: encoded image files; the first 8 calibrate BatchNorm.
    """
    sizes = {"min_size": min_size, "max_size": max_size, "anchor_scale": min(1.0, min_size / 800)}
    torch.manual_seed(0)
    model = build_model(arch, backbone, 6, "align", **sizes).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    with torch.no_grad():
        for image in images[:8]:
            rgb = decode_image(image.read_bytes())
            model.backbone(model.transform([image_tensor(rgb)])[0].tensors)
    model.eval()
    cls_score = model.roi_heads.box_predictor.cls_score
    torch.nn.init.normal_(cls_score.weight, std=0.01)
    torch.nn.init.constant_(cls_score.bias, 0.0)
    cls_score.bias.data[0] = 2.0  # background
    spec = {"arch": arch, "backbone": backbone, "roi": "align", "num_classes": 6, "sizes": sizes}
    save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "version": "bench",
            "model_spec": spec,
            "labels": ["circle", "rectangle", "triangle", "star", "ring"],
            "category_ids": [1, 2, 3, 4, 5],
            "config": {},
            "model": model.state_dict(),
            "epoch": 0,
        },
        path,
    )
    return path

"""Random Faster/Mask R-CNN weights that behave like a trained model's, for benchmarks.

No pretrained weights can be downloaded here, and a plain random init is degenerate (ties make
parity and detection counts meaningless). `random_checkpoint` applies the tests' stand-in for
trained weights (`tests/fake_zoo.py`, `like_trained`): BatchNorm statistics recalibrated on a few
real images, small class-head weights and a background bias, so that scores spread over (0, 1)
and a few detections per image pass 0.5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from detect.models.build import build_model
from detect.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_zoo import like_trained


def random_checkpoint(
    path: Path, arch: str, backbone: str, min_size: int, max_size: int, images: list[Path]
) -> Path:
    """Write a random-weight checkpoint with live activations and spread scores (see above).

    ``images``: encoded image files; the first 8 calibrate BatchNorm.
    """
    sizes = {"min_size": min_size, "max_size": max_size, "anchor_scale": min(1.0, min_size / 800)}
    torch.manual_seed(0)
    model = build_model(arch, backbone, 6, "align", **sizes)
    like_trained(model, images[:8], cls_std=0.01)
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

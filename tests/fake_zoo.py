"""Same-shaped stand-ins for torchvision's COCO weights (none can be downloaded here).

`write_fake_weights` writes, under torchvision's own file name in ``$TORCH_HOME/hub/checkpoints``,
a state dict with exactly the keys and shapes of the real file (the model in its pretrained
form: frozen BatchNorm in v1 backbones). Values are random, but like a trained model's in the
ways that matter for export, parity and serving: BatchNorm statistics calibrated on real images
(activations neither vanish nor explode) and a class head whose scores spread over (0, 1), so
most images get detections above the graph's 0.05. `like_trained` is that step; the
benchmarks' random checkpoints (`benchmarks/random_weights.py`) use it too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from detect.models.inputs import image_tensor
from detect.models.zoo import _freeze_batchnorm, cache_file, zoo_model
from detect.runtime.image import decode_image


def like_trained(model: torch.nn.Module, images: list[Path], cls_std: float) -> None:
    """Make a randomly initialised torchvision Faster/Mask R-CNN behave like a trained one, in
    place, and leave it in eval mode.

    A plain random init is degenerate: BatchNorm's running statistics (mean 0, var 1) make
    activations vanish or explode, so every proposal gets the same or a saturated score. Here
    each BatchNorm's statistics are the average over the backbone's activations on ``images``
    (encoded files, at the model's own transform), and the class head gets weights drawn from
    N(0, ``cls_std``) with a background bias of 2, so that scores spread over (0, 1).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration images
        norm.train()
    with torch.no_grad():
        for image in images:
            rgb = decode_image(image.read_bytes())
            model.backbone(model.transform([image_tensor(rgb)])[0].tensors)
    model.eval()
    cls_score = model.roi_heads.box_predictor.cls_score
    torch.nn.init.normal_(cls_score.weight, std=cls_std)
    torch.nn.init.constant_(cls_score.bias, 0.0)
    cls_score.bias.data[0] = 2.0  # background


def write_fake_weights(name: str, images: list[Path], torch_home: Path) -> Path:
    """The fake weights file of zoo model ``name`` under ``torch_home``; its path."""
    from torchvision.models import detection

    entry = zoo_model(name)
    torch.manual_seed(0)
    model = getattr(detection, name)(weights=None, weights_backbone=None, num_classes=91)
    like_trained(model, images[:2], cls_std=0.05)
    if entry.frozen_bn:
        _freeze_batchnorm(model.backbone.body)
    path = torch_home / "hub" / "checkpoints" / cache_file(entry.enum("DEFAULT")).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path

"""Same-shaped stand-ins for torchvision's COCO weights (none can be downloaded here).

`write_fake_weights` writes, under torchvision's own file name in ``$TORCH_HOME/hub/checkpoints``,
a state dict with exactly the keys and shapes of the real file (the model in its pretrained
form: frozen BatchNorm in v1 backbones). Values are random, but like a trained model's in the
ways that matter for export, parity and serving: BatchNorm statistics calibrated on real images
(activations neither vanish nor explode) and a class head whose scores spread over (0, 1), so
most images get detections above the graph's 0.05.
"""

from __future__ import annotations

from pathlib import Path

import torch

from detect.models.inputs import image_tensor
from detect.models.zoo import _freeze_batchnorm, cache_file, zoo_model
from detect.runtime.image import decode_image


def write_fake_weights(name: str, images: list[Path], torch_home: Path) -> Path:
    """The fake weights file of zoo model ``name`` under ``torch_home``; its path."""
    from torchvision.models import detection

    entry = zoo_model(name)
    torch.manual_seed(0)
    model = getattr(detection, name)(weights=None, weights_backbone=None, num_classes=91)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration images
    model.train()
    with torch.no_grad():
        for image in images[:2]:
            batch = model.transform([image_tensor(decode_image(image.read_bytes()))])[0]
            model.backbone(batch.tensors)
    model.eval()
    cls_score = model.roi_heads.box_predictor.cls_score
    torch.nn.init.normal_(cls_score.weight, std=0.05)
    torch.nn.init.constant_(cls_score.bias, 0.0)
    cls_score.bias.data[0] = 2.0  # background
    if entry.frozen_bn:
        _freeze_batchnorm(model.backbone.body)
    path = torch_home / "hub" / "checkpoints" / cache_file(entry.enum("DEFAULT")).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path

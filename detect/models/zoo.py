"""The model zoo: torchvision's COCO detectors, built exactly, loaded safely, ready to export or
fine-tune.

`ZOO` names the six torchvision builders offered (`fasterrcnn_resnet50_fpn`, ..._v2,
`fasterrcnn_mobilenet_v3_large_fpn`, ..._320_fpn, `maskrcnn_resnet50_fpn`, ..._v2).
`build_zoo_model` builds the builder's own architecture in its pretrained form (frozen
BatchNorm in the backbone where torchvision freezes it) without any download, then reads the
weights file from torch's hub cache (``$TORCH_HOME/hub/checkpoints/<torchvision's file name>``)
with ``torch.load(weights_only=True)``, downloading it first only when the cache lacks it.
Offline, a missing file is one `CheckpointError` line naming the path and file to put there.

COCO's 91-way head has 11 "N/A" slots (category ids no annotation uses). For serving, the
predictor rows of the 80 real categories are kept (labels 1..80, in COCO id order, with COCO's
ids and names on the card); for fine-tuning, the class-dependent predictor tensors are
re-initialised for the new classes and everything else keeps COCO's weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import detection
from torchvision.models._api import WeightsEnum
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import misc

from detect.errors import CheckpointError, ConfigError
from detect.models.spec import check_zoo_name

ZOO_TAGS = ("DEFAULT", "COCO_V1")


@dataclass(frozen=True)
class ZooModel:
    """One torchvision COCO detector: its builder and weights enum, and what the card says."""

    name: str
    arch: str
    backbone: str
    weights: type[WeightsEnum]
    frozen_bn: bool  # torchvision's pretrained backbone uses FrozenBatchNorm2d (v1 models)
    input_size: tuple[int, int]  # the builder's (min_size, max_size)

    def enum(self, tag: str = "DEFAULT") -> WeightsEnum:
        """The weights enum member for ``tag`` ("DEFAULT" or "COCO_V1")."""
        try:
            return self.weights[tag]
        except KeyError:
            names = ", ".join(["DEFAULT", *(m.name for m in self.weights)])
            raise ConfigError(f"{self.name} has no weights {tag!r}; use one of {names}") from None


ZOO = {
    z.name: z
    for z in (
        ZooModel(
            "fasterrcnn_resnet50_fpn",
            "faster_rcnn",
            "resnet50_fpn",
            detection.FasterRCNN_ResNet50_FPN_Weights,
            True,
            (800, 1333),
        ),
        ZooModel(
            "fasterrcnn_resnet50_fpn_v2",
            "faster_rcnn",
            "resnet50_fpn_v2",
            detection.FasterRCNN_ResNet50_FPN_V2_Weights,
            False,
            (800, 1333),
        ),
        ZooModel(
            "fasterrcnn_mobilenet_v3_large_fpn",
            "faster_rcnn",
            "mobilenet_v3_large_fpn",
            detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
            True,
            (800, 1333),
        ),
        ZooModel(
            "fasterrcnn_mobilenet_v3_large_320_fpn",
            "faster_rcnn",
            "mobilenet_v3_large_320_fpn",
            detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
            True,
            (320, 640),
        ),
        ZooModel(
            "maskrcnn_resnet50_fpn",
            "mask_rcnn",
            "resnet50_fpn",
            detection.MaskRCNN_ResNet50_FPN_Weights,
            True,
            (800, 1333),
        ),
        ZooModel(
            "maskrcnn_resnet50_fpn_v2",
            "mask_rcnn",
            "resnet50_fpn_v2",
            detection.MaskRCNN_ResNet50_FPN_V2_Weights,
            False,
            (800, 1333),
        ),
    )
}


def zoo_model(name: str) -> ZooModel:
    """The zoo entry called ``name``; a `ConfigError` listing the names otherwise."""
    check_zoo_name(name)
    return ZOO[name]


def parse_zoo_weights(spec: str) -> tuple[ZooModel, str] | None:
    """``NAME`` or ``NAME:TAG`` of a zoo model (TAG "COCO_V1" or "DEFAULT") -> (entry, tag);
    None when ``spec`` names no zoo model (a torchvision enum name or a file)."""
    name, _, tag = spec.partition(":")
    if name not in ZOO:
        if ":" in spec:
            zoo_model(name)  # NAME:TAG with an unknown NAME: say which names there are
        return None
    entry = ZOO[name]
    entry.enum(tag or "DEFAULT")
    return entry, tag or "DEFAULT"


def cache_file(weights: WeightsEnum) -> Path:
    """Where torch's hub cache keeps ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def coco_categories(weights: WeightsEnum) -> tuple[list[str], list[int]]:
    """COCO's 80 category names and their ids as in COCO's annotation files (the index in the
    weights' ``categories``, without ``__background__`` and the "N/A" slots)."""
    pairs = [
        (name, index)
        for index, name in enumerate(weights.meta["categories"])
        if index > 0 and name != "N/A"
    ]
    return [name for name, _ in pairs], [index for _, index in pairs]


def load_zoo_state(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The weights' state dict: from the hub cache, else downloaded into it (hash checked);
    always read with ``weights_only=True``. Offline: one line naming the file to put where."""
    path = cache_file(weights)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = torch.hub.HASH_REGEX.search(path.name)
        try:
            torch.hub.download_url_to_file(
                weights.url, str(path), hash_prefix=digest.group(1) if digest else None
            )
        except Exception as exc:  # no network, refused, interrupted
            path.unlink(missing_ok=True)
            raise CheckpointError(
                f"weights {weights} are not in the cache and cannot be downloaded "
                f"({exc.__class__.__name__}); put {path.name} into {path.parent} "
                f"(from {weights.url})"
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read {path} ({exc.__class__.__name__}); delete it and download it again "
            f"from {weights.url}"
        ) from None


def _freeze_batchnorm(module: nn.Module) -> None:
    """Every BatchNorm2d under ``module`` replaced by a FrozenBatchNorm2d with its statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = misc.FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _freeze_stages(body: nn.Module, backbone: str, trainable: int) -> None:
    """Train only the last ``trainable`` backbone stages, as torchvision's extractors do."""
    if backbone.startswith("resnet"):
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
        if trainable == 5:
            train.append("bn1")
        for name, parameter in body.named_parameters():
            parameter.requires_grad_(any(name.startswith(layer) for layer in train))
        return
    blocks = list(body.children())
    stages = [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)]
    stages.append(len(blocks) - 1)
    freeze_before = len(blocks) if trainable == 0 else stages[len(stages) - trainable]
    for index, block in enumerate(blocks):
        for parameter in block.parameters():
            parameter.requires_grad_(index >= freeze_before)


def build_zoo_model(
    name: str,
    tag: str | None = "DEFAULT",
    num_classes: int | None = None,
    trainable_layers: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """torchvision's ``name`` detector with its COCO weights (``tag``; None: no weights, for
    loading a checkpoint of it).

    ``num_classes`` None keeps COCO's 80 real categories (labels 1..80, see `coco_categories`);
    a number re-initialises the class-dependent predictor tensors for that many classes
    (background included). ``trainable_layers`` (fine-tuning) freezes all BatchNorm of the
    backbone and trains its last that-many stages, as torchvision does for pretrained models.
    ``kwargs`` go to the builder (``min_size``, ``max_size``, ``box_*``, ``rpn_*``).
    """
    entry = zoo_model(name)
    builder = getattr(detection, name)
    model = builder(weights=None, weights_backbone=None, num_classes=91, **kwargs)
    if entry.frozen_bn:  # the pretrained form: no BatchNorm statistics to update
        _freeze_batchnorm(model.backbone.body)
    if tag is not None:
        weights = entry.enum(tag)
        state = load_zoo_state(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        wrong = [k for k in [*missing, *unexpected] if not k.endswith("num_batches_tracked")]
        if wrong:
            raise CheckpointError(
                f"{cache_file(weights)} does not hold {name}'s weights ({len(wrong)} tensors "
                f"missing or unexpected, first: {wrong[0]}); delete it and download it again"
            )
    keep = [0, *coco_categories(entry.enum("DEFAULT"))[1]]
    _set_classes(model, keep if num_classes is None else num_classes)
    if trainable_layers is not None:
        _freeze_batchnorm(model.backbone.body)
        _freeze_stages(model.backbone.body, entry.backbone, trainable_layers)
    return model


def _set_classes(model: nn.Module, classes: list[int] | int) -> None:
    """Keep the predictor rows of ``classes`` (indices into COCO's 91), or replace the
    predictors with freshly initialised ones for ``classes`` classes."""
    heads = model.roi_heads
    box = heads.box_predictor
    if isinstance(classes, int):
        heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, classes)
        if heads.has_mask():  # conv5_mask keeps COCO's weights: only the logits are per class
            logits = nn.Conv2d(heads.mask_predictor.mask_fcn_logits.in_channels, classes, 1)
            # as torchvision's MaskRCNNPredictor initialises it (the bias keeps Conv2d's init)
            nn.init.kaiming_normal_(logits.weight, mode="fan_out", nonlinearity="relu")
            heads.mask_predictor.mask_fcn_logits = logits
        return
    rows = torch.tensor(classes)
    box_rows = (rows[:, None] * 4 + torch.arange(4)).reshape(-1)
    new = FastRCNNPredictor(box.cls_score.in_features, len(classes))
    with torch.no_grad():
        new.cls_score.weight.copy_(box.cls_score.weight[rows])
        new.cls_score.bias.copy_(box.cls_score.bias[rows])
        new.bbox_pred.weight.copy_(box.bbox_pred.weight[box_rows])
        new.bbox_pred.bias.copy_(box.bbox_pred.bias[box_rows])
    heads.box_predictor = new
    if heads.has_mask():
        logits = heads.mask_predictor.mask_fcn_logits
        with torch.no_grad():
            kept = nn.Conv2d(logits.in_channels, len(classes), 1)
            kept.weight.copy_(logits.weight[rows])
            kept.bias.copy_(logits.bias[rows])
        heads.mask_predictor.mask_fcn_logits = kept


# --------------------------------------------------------------------------- `detect models`


def rows() -> list[dict[str, Any]]:
    """One row per zoo model: what `detect models` prints."""
    table = []
    for entry in ZOO.values():
        weights = entry.enum("DEFAULT")
        metrics = weights.meta.get("_metrics", {}).get("COCO-val2017", {})
        table.append(
            {
                "name": entry.name,
                "arch": entry.arch,
                "backbone": entry.backbone,
                "roi": "align",
                "params_m": weights.meta["num_params"] / 1e6,
                "box_ap": metrics.get("box_map"),
                "mask_ap": metrics.get("mask_map"),
                "input": f"{entry.input_size[0]}-{entry.input_size[1]}",
                "weights": "cached" if cache_file(weights).is_file() else "download",
                "file": str(cache_file(weights)),
            }
        )
    return table

"""Resolve and load pretrained weights: torchvision enum names (cached under TORCH_HOME) or .pth.

Detector weights (`weights`) are torchvision COCO enums such as `COCO_V1` / `DEFAULT` for the
chosen arch+backbone; backbone weights (`backbone_weights`) are ImageNet enums such as
`IMAGENET1K_V1`. Either may instead be a local `.pth` path. Everything is read with
`torch.load(weights_only=True)`; a download happens only when the file is not cached yet.
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import torch
from torchvision.models import (
    MobileNet_V3_Large_Weights,
    ResNet18_Weights,
    ResNet50_Weights,
)
from torchvision.models._api import WeightsEnum
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
)

from detect.errors import CheckpointError

DETECTOR_WEIGHTS: dict[tuple[str, str], type[WeightsEnum]] = {
    ("faster_rcnn", "resnet50_fpn"): FasterRCNN_ResNet50_FPN_Weights,
    ("faster_rcnn", "mobilenet_v3_fpn"): FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    ("mask_rcnn", "resnet50_fpn"): MaskRCNN_ResNet50_FPN_Weights,
}
BACKBONE_WEIGHTS: dict[str, type[WeightsEnum]] = {
    "resnet50_fpn": ResNet50_Weights,
    "resnet18_fpn": ResNet18_Weights,
    "mobilenet_v3_fpn": MobileNet_V3_Large_Weights,
}


def looks_like_path(value: str) -> bool:
    return value.endswith((".pth", ".pt")) or "/" in value or Path(value).exists()


def _resolve_enum(enum_cls: type[WeightsEnum], name: str, what: str) -> WeightsEnum:
    try:
        return enum_cls[name]
    except KeyError:
        names = ", ".join(m.name for m in enum_cls)  # DEFAULT is an alias, not a member
        raise CheckpointError(
            f"unknown {what} weights {name!r}; use one of {names}, DEFAULT, or a .pth path"
        ) from None


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found; check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(
            f"cannot read weights {path}: {exc.__class__.__name__}; is it a PyTorch state dict?"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a `detect train` checkpoint
    if not isinstance(state, dict):
        raise CheckpointError(f"weights {path} hold no state dict; save model.state_dict()")
    return state


def _load_enum(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except (URLError, OSError) as exc:
        raise CheckpointError(
            f"cannot download {weights} ({exc.__class__.__name__}); offline, place the file at "
            f"{cache} (TORCH_HOME) or pass a local .pth path"
        ) from None


def load_detector_state(arch: str, backbone: str, spec: str) -> dict[str, torch.Tensor]:
    """State dict for a whole detector from an enum name (e.g. "COCO_V1") or a .pth path."""
    if looks_like_path(spec):
        return _load_file(Path(spec))
    enum_cls = DETECTOR_WEIGHTS.get((arch, backbone))
    if enum_cls is None:
        known = ", ".join(f"{a}+{b}" for a, b in DETECTOR_WEIGHTS)
        raise CheckpointError(
            f"torchvision has no pretrained {arch} with {backbone} (it has {known}); "
            "use --backbone-weights for ImageNet weights or pass a .pth path"
        )
    return _load_enum(_resolve_enum(enum_cls, spec, f"{arch}+{backbone}"))


def load_backbone_state(backbone: str, spec: str) -> dict[str, torch.Tensor]:
    """State dict of the ImageNet classifier behind `backbone` (enum name or .pth path)."""
    if looks_like_path(spec):
        return _load_file(Path(spec))
    return _load_enum(_resolve_enum(BACKBONE_WEIGHTS[backbone], spec, backbone))


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load every tensor whose name and shape match; return names left re-initialised.

    Shape mismatches are expected only in the class-dependent predictor layers (transfer to a
    different number of classes). If anything else is missing the weights belong to another
    architecture, and CheckpointError says so.
    """
    own = model.state_dict()
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in own if k not in compatible)
    structural = [k for k in skipped if "predictor" not in k and "num_batches_tracked" not in k]
    if structural:
        raise CheckpointError(
            f"weights {source} do not fit this model: {len(structural)} tensors missing or of "
            f"another shape (first: {structural[0]}); check --arch/--backbone/--roi"
        )
    model.load_state_dict(compatible, strict=False)
    return skipped

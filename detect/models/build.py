"""`build_model`: torchvision Faster/Mask R-CNN with a chosen backbone, RoI op and weights.

Boxes in and out of the model are xyxy float pixels of the input image; label 0 is background,
so `num_classes` = K foreground classes + 1.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _mobilenet_extractor,
    _resnet_fpn_extractor,
)
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, misc
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from detect.errors import CheckpointError, ConfigError
from detect.models.roi_pool import MultiScaleRoIPool
from detect.models.weights import load_backbone_state, load_detector_state, load_matching
from detect.train_config import ARCHS, BACKBONES, ROIS

log = logging.getLogger(__name__)

# torchvision's COCO anchors, one size per FPN level (ResNet) or all sizes on each of the
# 3 MobileNet levels; `anchor_scale` multiplies them for small images.
RESNET_ANCHORS = ((32,), (64,), (128,), (256,), (512,))
MOBILENET_ANCHORS = ((32, 64, 128, 256, 512),) * 3
# Keys of **sizes consumed here; the rest go to the FasterRCNN/MaskRCNN constructor.
OWN_SIZES = (
    "trainable_layers",
    "representation_size",
    "anchor_scale",
    "fpn_channels",
    "returned_layers",
    "norm",
    "box_head",
)
NORMS = ("none", "bn", "gn")
BOX_HEADS = ("mlp", "conv")
# Output stride of each stage torchvision's extractors can return (`returned_layers`).
RESNET_STRIDES = {1: 4, 2: 8, 3: 16, 4: 32}
MOBILENET_STRIDES = {1: 4, 2: 8, 3: 16, 4: 32, 5: 32}


def _norm_layer(norm: str) -> Callable[[int], nn.Module] | None:
    """FPN/head normalisation: None, BatchNorm or GroupNorm (32 groups, or 1 per 4 channels)."""
    if norm not in NORMS:
        raise ConfigError(f"norm={norm!r} is not one of {', '.join(NORMS)}")
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(min(32, channels // 4), channels)
    return None


def _backbone(
    name: str,
    pretrained: bool,
    trainable_layers: int | None,
    channels: int,
    returned_layers: list[int] | None,
    fpn_norm: Callable[[int], nn.Module] | None,
) -> tuple[nn.Module, Callable[[nn.Module], BackboneWithFPN]]:
    """The ImageNet classifier net and the function that turns it into an FPN body.

    Pretrained nets use frozen BatchNorm and train 3 stages by default, as torchvision does;
    from scratch everything trains with ordinary BatchNorm. `returned_layers` picks the stages
    the FPN reads (torchvision's default: ResNet [1, 2, 3, 4], strides 4-32; MobileNetV3 [4, 5],
    both at stride 32, which suits 800-px inputs, not small images).
    """
    norm = misc.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    if name == "mobilenet_v3_fpn":
        net = mobilenet_v3_large(weights=None, norm_layer=norm)
        layers = trainable_layers if trainable_layers is not None else (3 if pretrained else 6)
        return net, lambda n: _fpn(
            _mobilenet_extractor(n, True, layers, returned_layers), channels, fpn_norm
        )
    net = (resnet50 if name == "resnet50_fpn" else resnet18)(weights=None, norm_layer=norm)
    layers = trainable_layers if trainable_layers is not None else (3 if pretrained else 5)
    return net, lambda n: _fpn(
        _resnet_fpn_extractor(n, layers, returned_layers), channels, fpn_norm
    )


def _fpn(
    body: BackboneWithFPN, channels: int, norm: Callable[[int], nn.Module] | None
) -> BackboneWithFPN:
    """Rebuild the body's FPN with `channels` outputs and `norm` (torchvision's extractors fix
    256 and no norm; kept as built when those are asked for, so default models keep their
    init order)."""
    if channels != body.out_channels or norm is not None:
        in_channels = [block[0].in_channels for block in body.fpn.inner_blocks]
        body.fpn = FeaturePyramidNetwork(
            in_channels, channels, extra_blocks=LastLevelMaxPool(), norm_layer=norm
        )
        body.out_channels = channels
    return body


def _anchor_sizes(backbone: str, returned_layers: list[int] | None, scale: float):
    """One anchor size per FPN level, 8x the level's stride (torchvision's 32 px at stride 4),
    times `scale`; MobileNet's default levels ([4, 5], both at stride 32) keep torchvision's 5
    sizes on each of its 3 maps."""
    if backbone == "mobilenet_v3_fpn" and returned_layers in (None, [4, 5]):
        base: tuple[tuple[int, ...], ...] = MOBILENET_ANCHORS
    elif returned_layers is None:
        base = RESNET_ANCHORS
    else:
        strides = MOBILENET_STRIDES if backbone == "mobilenet_v3_fpn" else RESNET_STRIDES
        levels = [strides[k] for k in returned_layers]
        levels.append(levels[-1] * 2)  # LastLevelMaxPool
        base = tuple((8 * s,) for s in levels)
    return tuple(tuple(max(4, round(s * scale)) for s in level) for level in base)


def _roi_poolers(roi: str) -> tuple[nn.Module, nn.Module]:
    """Box (7x7) and mask (14x14) poolers over FPN levels '0'..'3' (those present)."""
    names = ["0", "1", "2", "3"]
    if roi == "align":
        return (
            MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2),
            MultiScaleRoIAlign(names, output_size=14, sampling_ratio=2),
        )
    return (
        MultiScaleRoIPool(names, output_size=7, sampling_ratio=0),
        MultiScaleRoIPool(names, output_size=14, sampling_ratio=0),
    )


def build_model(
    arch: str,
    backbone: str,
    num_classes: int,
    roi: str = "align",
    weights: str | None = None,
    backbone_weights: str | None = None,
    **sizes: Any,
) -> nn.Module:
    """Build a detector.

    Args:
        arch: "faster_rcnn" or "mask_rcnn".
        backbone: "resnet50_fpn", "resnet18_fpn" or "mobilenet_v3_fpn".
        num_classes: foreground classes + 1 (background).
        roi: "align" (MultiScaleRoIAlign) or "pool" (MultiScaleRoIPool).
        weights: whole-detector weights: torchvision enum name or .pth path. Tensors whose
            shape depends on the class count are re-initialised when it differs.
        backbone_weights: ImageNet enum name or .pth path for the backbone alone.
        sizes: `trainable_layers` (backbone stages to train), `representation_size` (box
            head MLP width, default 1024), `anchor_scale` (multiplies the default anchor
            sizes, e.g. 0.5 for 400-px images), `fpn_channels` (FPN, RPN and mask head width,
            default 256; smaller for compact models trained from scratch), `returned_layers`
            (backbone stages the FPN reads, see `_backbone`), `norm` ("none", "bn" or "gn": the
            FPN, mask head and conv box head normalisation, "Rethinking ImageNet
            Pre-training"'s remedy for training from scratch), `box_head` ("mlp": torchvision's
            TwoMLPHead; "conv": 4 conv + 1 FC, torchvision's v2 head), plus any
            FasterRCNN/MaskRCNN keyword
            (min_size, max_size, box_detections_per_img, rpn_*, box_*).
    """
    if arch not in ARCHS or backbone not in BACKBONES or roi not in ROIS:
        raise ConfigError(
            f"unsupported model {arch}/{backbone}/{roi}: arch one of {ARCHS}, "
            f"backbone one of {BACKBONES}, roi one of {ROIS}"
        )
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}: need at least one foreground class + 1")
    own = {k: sizes.pop(k) for k in OWN_SIZES if k in sizes}
    pretrained = weights is not None or backbone_weights is not None

    channels = int(own.get("fpn_channels", 256))
    returned = own.get("returned_layers")
    norm = _norm_layer(str(own.get("norm", "none")))
    net, extract = _backbone(
        backbone, pretrained, own.get("trainable_layers"), channels, returned, norm
    )
    if backbone_weights is not None and weights is None:
        state = load_backbone_state(backbone, backbone_weights)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(
                f"backbone weights {backbone_weights} do not fit {backbone}: {first}"
            ) from None
    body = extract(net)

    anchor_sizes = _anchor_sizes(backbone, returned, float(own.get("anchor_scale", 1.0)))
    anchors = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))

    box_pool, mask_pool = _roi_poolers(roi)
    resolution = box_pool.output_size[0]
    width = int(own.get("representation_size", 1024))
    box_head = str(own.get("box_head", "mlp"))
    if box_head not in BOX_HEADS:
        raise ConfigError(f"box_head={box_head!r} is not one of {', '.join(BOX_HEADS)}")
    heads: dict[str, Any] = {
        "rpn_anchor_generator": anchors,
        "box_roi_pool": box_pool,
        "box_head": (
            TwoMLPHead(body.out_channels * resolution**2, width)
            if box_head == "mlp"
            else FastRCNNConvFCHead(
                (channels, resolution, resolution), [channels] * 4, [width], norm_layer=norm
            )
        ),
        "box_predictor": FastRCNNPredictor(width, num_classes),
    }
    if arch == "mask_rcnn":
        heads["mask_roi_pool"] = mask_pool
        if channels != 256 or norm is not None:  # else torchvision's own (same init order)
            heads["mask_head"] = MaskRCNNHeads(channels, (channels,) * 4, 1, norm_layer=norm)
        heads["mask_predictor"] = MaskRCNNPredictor(channels, channels, num_classes)
    detector_cls = MaskRCNN if arch == "mask_rcnn" else FasterRCNN
    accepted = set(inspect.signature(detector_cls.__init__).parameters) - set(heads)
    accepted -= {"self", "backbone", "num_classes", "kwargs"}
    unknown = sorted(set(sizes) - accepted)
    if unknown:
        raise ConfigError(
            f"bad model size option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(accepted | set(OWN_SIZES)))}"
        )
    model = detector_cls(body, num_classes=None, **heads, **sizes)

    if weights is not None:
        skipped = load_matching(model, load_detector_state(arch, backbone, weights), weights)
        if skipped:
            log.info("re-initialised for %d classes: %s", num_classes, ", ".join(skipped))
    return model

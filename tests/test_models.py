"""build_model: every arch x backbone x RoI op trains and predicts; RoI pool matches roi_pool."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from detect.errors import ConfigError
from detect.models import build_model
from detect.models.roi_pool import MultiScaleRoIPool

TINY = {"min_size": 96, "max_size": 96, "representation_size": 32, "anchor_scale": 0.25}


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    masks = torch.zeros(1, 96, 96, dtype=torch.uint8)
    masks[0, 20:60, 10:50] = 1
    target = {
        "boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]),
        "labels": torch.tensor([1]),
        "masks": masks,
    }
    return [torch.rand(3, 96, 96), torch.rand(3, 96, 96)], [target, target]


@pytest.mark.parametrize("arch", ["faster_rcnn", "mask_rcnn"])
@pytest.mark.parametrize("backbone", ["resnet18_fpn", "mobilenet_v3_fpn"])
@pytest.mark.parametrize("roi", ["align", "pool"])
def test_every_combination_trains_and_predicts(arch: str, backbone: str, roi: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, backbone, num_classes=3, roi=roi, **TINY)
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    expected = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    if arch == "mask_rcnn":
        expected.add("loss_mask")
    assert set(losses) == expected
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images[:1])[0]
    assert out["boxes"].shape[1] == 4
    assert ("masks" in out) == (arch == "mask_rcnn")


def test_resnet50_fpn_builds_with_default_head() -> None:
    model = build_model("mask_rcnn", "resnet50_fpn", num_classes=5)
    assert model.roi_heads.box_predictor.cls_score.out_features == 5
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 5
    assert model.backbone.body.conv1.weight.requires_grad  # from scratch: everything trains


@pytest.mark.parametrize("backbone", ["resnet18_fpn", "mobilenet_v3_fpn"])
def test_fpn_channels_narrow_the_fpn_rpn_and_mask_head(backbone: str) -> None:
    torch.manual_seed(0)
    model = build_model("mask_rcnn", backbone, num_classes=3, fpn_channels=32, **TINY)
    assert model.backbone.out_channels == 32
    assert {
        m.out_channels
        for m in model.backbone.fpn.layer_blocks.modules()
        if hasattr(m, "out_channels")
    } == {32}
    assert model.rpn.head.conv[0][0].in_channels == 32
    assert model.roi_heads.mask_head[0][0].in_channels == 32
    images, targets = _batch()
    model.train()
    sum(model(images, targets).values()).backward()
    wide = build_model("mask_rcnn", backbone, num_classes=3, **TINY)
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in wide.parameters())


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_normalised_fpn_and_heads_for_training_from_scratch(norm: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        "mask_rcnn", "resnet18_fpn", 3, fpn_channels=32, norm=norm, box_head="conv", **TINY
    )
    kind = torch.nn.BatchNorm2d if norm == "bn" else torch.nn.GroupNorm
    for part in (model.backbone.fpn, model.roi_heads.box_head, model.roi_heads.mask_head):
        assert any(isinstance(m, kind) for m in part.modules()), part
    images, targets = _batch()
    model.train()
    sum(model(images, targets).values()).backward()
    model.eval()
    with torch.no_grad():
        assert model(images[:1])[0]["masks"].shape[1:] == (1, 96, 96)


def test_mobilenet_returned_layers_read_strides_8_to_32_with_one_anchor_size_each() -> None:
    torch.manual_seed(0)
    model = build_model(
        "faster_rcnn",
        "mobilenet_v3_fpn",
        3,
        returned_layers=[2, 3, 4],
        anchor_scale=0.25,
        min_size=128,
        max_size=128,
        representation_size=32,
    )
    features = model.backbone(torch.rand(1, 3, 128, 128))
    assert [f.shape[-1] for f in features.values()] == [16, 8, 4, 2]  # strides 8, 16, 32, 64
    assert model.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,))
    default = build_model("faster_rcnn", "mobilenet_v3_fpn", 3, min_size=128, max_size=128)
    assert [f.shape[-1] for f in default.backbone(torch.rand(1, 3, 128, 128)).values()] == [4, 4, 2]
    images, targets = _batch()
    model.train()
    sum(model(images, targets).values()).backward()


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="backbone one of"):
        build_model("mask_rcnn", "vgg16", num_classes=3)
    with pytest.raises(ConfigError, match="at least one foreground"):
        build_model("mask_rcnn", "resnet18_fpn", num_classes=1)
    with pytest.raises(ConfigError, match="bad model size option"):
        build_model("faster_rcnn", "resnet18_fpn", num_classes=3, no_such_size=1)
    with pytest.raises(ConfigError, match="norm='batch' is not one of none, bn, gn"):
        build_model("faster_rcnn", "resnet18_fpn", num_classes=3, norm="batch")
    with pytest.raises(ConfigError, match="box_head='fc' is not one of mlp, conv"):
        build_model("faster_rcnn", "resnet18_fpn", num_classes=3, box_head="fc")


def test_roi_pool_uses_fpn_level_mapping_and_roi_pool() -> None:
    torch.manual_seed(0)
    names = ["0", "1", "2", "3"]
    features = {n: torch.rand(1, 4, 256 // 2**i, 256 // 2**i) for i, n in enumerate(names)}
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 10.0, 200.0, 240.0]])]
    image_shapes = [(1024, 1024)]
    pooled = MultiScaleRoIPool(names, 7, 0)(features, boxes, image_shapes)
    assert pooled.shape == (2, 4, 7, 7)
    # Same level assignment as RoIAlign's pooler: small box -> finest level, large -> coarsest.
    align = MultiScaleRoIAlign(names, 7, 2)
    align(features, boxes, image_shapes)
    levels = align.map_levels(boxes)
    for i, level in enumerate(levels.tolist()):
        scale = 1 / 2 ** (level + 2)
        rois = torch.cat([torch.zeros(1, 1), boxes[0][i : i + 1]], dim=1)
        expected = roi_pool(features[names[level]], rois, (7, 7), spatial_scale=scale)
        torch.testing.assert_close(pooled[i : i + 1], expected)


def test_model_ema_follows_the_formula_for_weights_and_batchnorm_statistics() -> None:
    from detect.models.ema import ModelEma

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model.train()(torch.randn(4, 2))  # moves the running statistics
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
        ema.update(model)
    for k, v in ema.module.state_dict().items():
        torch.testing.assert_close(v, expected[k].to(v.dtype))
    assert ema.updates == 5 and not any(p.requires_grad for p in ema.module.parameters())

"""Weight loading: torchvision enum names resolved from a TORCH_HOME cache, local .pth files,
class-count transfer (predictor re-initialised), and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    fasterrcnn_mobilenet_v3_large_fpn,
)

from detect.errors import CheckpointError
from detect.models import build_model


def _cache_file(torch_home: Path, url: str) -> Path:
    path = torch_home / "hub" / "checkpoints" / Path(url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # Any real download attempt fails at once instead of waiting on the network.
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    return tmp_path


def test_coco_enum_loads_from_cache_and_reinitialises_predictor(torch_home: Path) -> None:
    torch.manual_seed(1)
    reference = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    state = reference.state_dict()
    url = FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1.url
    torch.save(state, _cache_file(torch_home, url))

    model = build_model("faster_rcnn", "mobilenet_v3_fpn", num_classes=4, weights="COCO_V1")
    own = model.state_dict()
    for key in (
        "backbone.body.0.0.weight",
        "rpn.head.conv.0.0.weight",
        "roi_heads.box_head.fc6.weight",
    ):
        torch.testing.assert_close(own[key], state[key])
    assert own["roi_heads.box_predictor.cls_score.weight"].shape == (4, 1024)
    # Pretrained: frozen BatchNorm and only the last stages train, as torchvision does.
    assert not model.backbone.body["0"][0].weight.requires_grad

    same = build_model("faster_rcnn", "mobilenet_v3_fpn", num_classes=91, weights="DEFAULT")
    torch.testing.assert_close(
        same.state_dict()["roi_heads.box_predictor.cls_score.weight"],
        state["roi_heads.box_predictor.cls_score.weight"],
    )


def test_imagenet_backbone_enum_and_local_pth(torch_home: Path, tmp_path: Path) -> None:
    torch.manual_seed(2)
    state = resnet18().state_dict()
    torch.save(state, _cache_file(torch_home, ResNet18_Weights.IMAGENET1K_V1.url))
    model = build_model("mask_rcnn", "resnet18_fpn", 3, backbone_weights="IMAGENET1K_V1")
    torch.testing.assert_close(model.backbone.body.conv1.weight, state["conv1.weight"])

    local = tmp_path / "my_resnet18.pth"
    torch.save(state, local)
    model = build_model("faster_rcnn", "resnet18_fpn", 3, backbone_weights=str(local))
    torch.testing.assert_close(
        model.backbone.body.layer4[0].conv1.weight, state["layer4.0.conv1.weight"]
    )


def test_detector_pth_roundtrip(tmp_path: Path) -> None:
    source = build_model("mask_rcnn", "resnet18_fpn", 3, representation_size=32)
    path = tmp_path / "detector.pth"
    torch.save(source.state_dict(), path)
    model = build_model("mask_rcnn", "resnet18_fpn", 3, weights=str(path), representation_size=32)
    torch.testing.assert_close(
        model.state_dict()["rpn.head.conv.0.0.weight"],
        source.state_dict()["rpn.head.conv.0.0.weight"],
    )


def test_weight_errors_are_clear(torch_home: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown .* weights 'COCO_V9'"):
        build_model("faster_rcnn", "mobilenet_v3_fpn", 3, weights="COCO_V9")
    with pytest.raises(CheckpointError, match="torchvision has no pretrained mask_rcnn"):
        build_model("mask_rcnn", "resnet18_fpn", 3, weights="COCO_V1")
    with pytest.raises(CheckpointError, match="cannot download .*place the file at"):
        build_model("faster_rcnn", "resnet50_fpn", 3, weights="COCO_V1")
    with pytest.raises(CheckpointError, match="not found"):
        build_model("faster_rcnn", "resnet18_fpn", 3, weights=str(tmp_path / "none.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        build_model("faster_rcnn", "resnet18_fpn", 3, weights=str(corrupt))
    other = tmp_path / "other.pth"
    torch.save(build_model("faster_rcnn", "mobilenet_v3_fpn", 3).state_dict(), other)
    with pytest.raises(CheckpointError, match="do not fit this model"):
        build_model("faster_rcnn", "resnet18_fpn", 3, weights=str(other))

"""The model zoo, offline: for every torchvision COCO detector offered, a same-shaped state dict
under torchvision's own file name in a temporary TORCH_HOME (`fake_zoo`); then `detect models`,
`detect export --pretrained` with its parity check (one model per head design), serving with
COCO's names, fine-tuning from every zoo name, and the one-line message when a weights file is
missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fake_zoo import write_fake_weights
from helpers import run_detect, write_config
from serving import start_server

from detect.client import DetectorClient
from detect.models.spec import ZOO_NAMES
from detect.models.zoo import ZOO, build_zoo_model, cache_file, coco_categories, zoo_model

pytestmark = pytest.mark.slow  # minutes of training, export or installing (make check skips it)

# COCO's category ids as in its annotation files: 1..90 without the 10 ids no annotation uses
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
SMALL = "fasterrcnn_mobilenet_v3_large_320_fpn"  # the quickest to export and serve


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory: pytest.TempPathFactory, shapes_small: Path) -> Path:
    """A TORCH_HOME holding same-shaped weights of every zoo model."""
    home = tmp_path_factory.mktemp("torch_home")
    images = sorted((shapes_small / "images").glob("*.jpg"))
    for name in ZOO:
        write_fake_weights(name, images, home)
    return home


@pytest.fixture(scope="module")
def small_model(torch_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "coco320.onnx"
    result = run_detect(
        "export", "--pretrained", SMALL, "--out", str(out), env={"TORCH_HOME": str(torch_home)}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_coco_categories_are_the_80_names_with_cocos_own_ids() -> None:
    labels, ids = coco_categories(zoo_model(SMALL).enum("COCO_V1"))
    assert len(labels) == 80 and ids == COCO_IDS
    assert (labels[0], labels[2], labels[-1]) == ("person", "car", "toothbrush")


def test_models_lists_every_zoo_model_and_whether_its_weights_are_cached(
    tmp_path: Path, shapes_small: Path
) -> None:
    images = sorted((shapes_small / "images").glob("*.jpg"))
    write_fake_weights(SMALL, images, tmp_path)
    result = run_detect("models", env={"TORCH_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:7]}
    assert set(rows) == set(ZOO)
    assert rows[SMALL].rstrip().endswith("cached") and "22.8" in rows[SMALL]
    assert rows["maskrcnn_resnet50_fpn_v2"].rstrip().endswith("download")
    assert "47.4" in rows["maskrcnn_resnet50_fpn_v2"] and "41.8" in rows["maskrcnn_resnet50_fpn_v2"]
    assert str(tmp_path / "hub" / "checkpoints") in result.stdout


# Every head design once, to keep the suite short: Mask R-CNN v2 (its box, RPN and mask heads
# are Faster R-CNN v2's plus a mask head; 40 s) and the 320-px MobileNetV3 (the v1 Faster R-CNN
# heads on the MobileNet backbone). The tiny ResNet-18 Mask R-CNN of every other test has the v1
# mask head. Every zoo model's weights load in
# test_fine_tuning_from_a_zoo_name_keeps_cocos_weights_but_the_class_tensors.
EXPORTED = ["maskrcnn_resnet50_fpn_v2", SMALL]


@pytest.mark.parametrize("name", EXPORTED)
def test_zoo_models_export_with_cocos_names_and_pass_parity(
    name: str, torch_home: Path, shapes_small: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"{name}.onnx"
    verify = tmp_path / "verify"  # two images: random weights may find nothing in one
    verify.mkdir()
    for image in sorted((shapes_small / "images").glob("*.jpg"))[:2]:
        (verify / image.name).write_bytes(image.read_bytes())
    result = run_detect(
        "export", "--pretrained", name, "--weights", "COCO_V1", "--out", str(out),
        "--verify", str(verify), env={"TORCH_HOME": str(torch_home)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "PASS" in result.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert len(card["labels"]) == 80 and card["category_ids"] == COCO_IDS
    assert card["labels"][0] == "person" and "N/A" not in card["labels"]
    entry = ZOO[name]
    assert (card["arch"], card["backbone"]) == (entry.arch, entry.backbone)
    assert card["source"]["pretrained"] == name
    assert card["source"]["file"].endswith(cache_file(entry.enum("COCO_V1")).name)
    published = card["metrics"]["published"]["COCO-val2017"]
    assert published["box_map"] == entry.enum("COCO_V1").meta["_metrics"]["COCO-val2017"]["box_map"]
    assert ("mask_map" in published) == (entry.arch == "mask_rcnn")
    assert card["parity"]["passed"] is True and card["input"]["min_size"] == entry.input_size[0]


def test_a_served_zoo_model_answers_with_coco_names_and_tlwh_boxes(
    small_model: Path, shapes_small: Path
) -> None:
    server = start_server(small_model)
    try:
        with DetectorClient(server.address) as client:
            info = client.model_info()
            assert [c.name for c in info.classes][:3] == ["person", "bicycle", "car"]
            assert [c.class_id for c in info.classes] == COCO_IDS
            image = sorted((shapes_small / "images").glob("*.jpg"))[0]
            result = client.detect(image.read_bytes(), score_threshold=0.0)
    finally:
        assert server.stop() == 0
    assert result.detections
    names = {c.name for c in info.classes}
    for d in result.detections:
        assert d.label in names and d.class_id in COCO_IDS
        assert d.width > 0 and d.height > 0
        assert d.left + d.width <= result.width + 1e-3 and d.top + d.height <= result.height + 1e-3


@pytest.mark.parametrize("name", list(ZOO))
def test_fine_tuning_from_a_zoo_name_keeps_cocos_weights_but_the_class_tensors(
    name: str, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    state = torch.load(cache_file(zoo_model(name).enum("COCO_V1")), weights_only=True)
    model = build_zoo_model(name, "COCO_V1", num_classes=6, trainable_layers=3)
    own = model.state_dict()
    changed = sorted(k for k in own if k not in state or own[k].shape != state[k].shape)
    class_tensors = [
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.cls_score.weight",
    ]
    if ZOO[name].arch == "mask_rcnn":
        class_tensors += [
            "roi_heads.mask_predictor.mask_fcn_logits.bias",
            "roi_heads.mask_predictor.mask_fcn_logits.weight",
        ]
    assert changed == sorted(class_tensors)
    assert all(torch.equal(own[k], state[k]) for k in own if k not in changed)
    assert type(model.roi_heads.box_head).__name__ == (
        "FastRCNNConvFCHead" if name.endswith("_v2") else "TwoMLPHead"
    )  # the v2 heads are built as torchvision builds them
    body = model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())  # all frozen
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    blocks = [name for name, _ in body.named_children()]
    assert trainable and blocks[0] not in trainable and blocks[-1] in trainable


def test_fine_tune_one_epoch_from_a_zoo_name_runs_and_exports(
    torch_home: Path, shapes_small: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "zoo.yaml",
        data=shapes_small / "train.json",
        val=shapes_small / "val.json",
        weights=f"{SMALL}:COCO_V1",
        epochs=1,
        sizes={},
        min_size=96,
        max_size=128,
        out=tmp_path / "run",
    )
    env = {"TORCH_HOME": str(torch_home)}
    trained = run_detect("train", "--config", str(config), env=env, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert ckpt["model_spec"]["zoo"] == SMALL and ckpt["model_spec"]["arch"] == "faster_rcnn"
    out = tmp_path / "ft.onnx"
    exported = run_detect("export", "--checkpoint", str(tmp_path / "run" / "best.pt"),
                          "--out", str(out), env=env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["labels"] == ["circle", "rectangle", "triangle", "star", "ring"]
    assert card["backbone"] == ZOO[SMALL].backbone


def test_missing_weights_offline_is_one_line_naming_the_file_and_where_it_goes(
    tmp_path: Path,
) -> None:
    env = {"TORCH_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    name = "maskrcnn_resnet50_fpn_v2"
    wanted = cache_file(ZOO[name].enum("COCO_V1")).name
    result = run_detect("export", "--pretrained", name, "--out", str(tmp_path / "m.onnx"), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert wanted in line and str(tmp_path / "hub" / "checkpoints") in line, line
    assert not (tmp_path / "hub" / "checkpoints" / wanted).exists()  # no partial file left


def test_the_torch_free_list_of_zoo_names_is_the_zoos() -> None:
    assert tuple(ZOO) == ZOO_NAMES


def test_unknown_zoo_name_or_weights_is_one_line(torch_home: Path, tmp_path: Path) -> None:
    env = {"TORCH_HOME": str(torch_home)}
    bad = run_detect("export", "--pretrained", "yolo", "--out", str(tmp_path / "m.onnx"), env=env)
    assert bad.returncode == 1 and "no zoo model 'yolo'" in bad.stderr and SMALL in bad.stderr
    tag = run_detect("export", "--pretrained", SMALL, "--weights", "COCO_V9",
                     "--out", str(tmp_path / "m.onnx"), env=env)  # fmt: skip
    assert tag.returncode == 1 and "COCO_V1" in tag.stderr
    assert len(tag.stderr.strip().splitlines()) == 1

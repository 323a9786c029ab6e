"""`detect export` and `detect parity`: ONNX graphs that match the PyTorch models they came from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
import torchvision
from conftest import TINY_RECIPES
from helpers import TINY_SIZES, run_detect
from torchvision.ops import boxes as box_ops

from detect.errors import ModelError
from detect.export.trace import PATCHED_NMS_CALLERS, DetectorGraph, _plain_batched_nms, export_graph
from detect.models.build import build_model
from detect.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from detect.parity import parity
from detect.runtime.model_card import ModelCard, sha256_file

pytestmark = pytest.mark.slow  # minutes of training, export or installing (make check skips it)


@pytest.fixture(scope="module")
def verify_images(shapes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six dataset images plus two of other sizes and aspect ratios (dynamic height/width)."""
    folder = tmp_path_factory.mktemp("verify")
    images = sorted((shapes_small / "images").glob("*.jpg"))
    for path in images[:6]:
        shutil.copy(path, folder / path.name)
    image = cv2.imread(str(images[0]))
    cv2.imwrite(str(folder / "wide.png"), cv2.resize(image, (160, 90)))
    cv2.imwrite(str(folder / "tall.jpg"), cv2.resize(image, (72, 130)))
    return folder


@pytest.mark.parametrize("arch", ["faster_rcnn", "mask_rcnn"])
@pytest.mark.parametrize("roi", ["align", "pool"])
def test_export_with_verify_passes_parity(
    arch: str, roi: str, tiny_runs: dict, verify_images: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"{arch}_{roi}.onnx"
    result = run_detect(
        "export", "--checkpoint", str(tiny_runs[arch, roi]), "--out", str(out),
        "--verify", str(verify_images),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "PASS" in result.stdout and "matched" in result.stdout
    for side in ("PyTorch", "export"):  # each side's progress, one plain line in a log
        assert f"parity {side}: 8/8 images, " in result.stderr, result.stderr

    card = ModelCard.read(out.with_suffix(".json"))
    assert (card.arch, card.backbone, card.roi) == (arch, "resnet18_fpn", roi)
    assert card.labels == ["circle", "rectangle", "triangle", "star", "ring"]
    assert card.sha256 == sha256_file(out)
    assert card.precision == "fp32" and card.opset == 17
    assert card.input["color"] == "RGB" and card.input["dtype"] == "uint8"
    assert card.recipe["arch"] == arch and card.recipe["epochs"] == TINY_RECIPES[arch, roi].epochs
    assert card.parity["passed"] and card.parity["images"] == 8
    assert card.parity["criteria"]["compared_score_at_least"] == 0.05
    assert card.parity["compared"] >= 8, card.parity  # confident detections were compared
    assert card.parity["matched_percent"] >= 99
    assert card.parity["score_max_abs_diff"] <= 1e-3
    if arch == "mask_rcnn":
        assert card.parity["mask_iou_min"] >= 0.9

    graph = onnx.load(str(out))
    (image,) = graph.graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["height", "width", 3]
    names = [o.name for o in graph.graph.output]
    expected = ["boxes", "labels", "scores"] + (["mask_probs"] if arch == "mask_rcnn" else [])
    assert names == expected


def test_parity_fails_against_another_checkpoint(
    tiny_runs: dict, mask_model: Path, verify_images: Path
) -> None:
    result = run_detect(
        "parity", "--checkpoint", str(tiny_runs["mask_rcnn", "pool"]),
        "--model", str(mask_model), str(verify_images),
    )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL" in result.stdout


def test_parity_cli_passes_on_its_own_checkpoint(
    tiny_runs: dict, mask_model: Path, verify_images: Path
) -> None:
    result = run_detect(
        "parity", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]),
        "--model", str(mask_model), str(verify_images),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    for row in ("matched", "box IoU mean / min", "max |Δscore|", "mask IoU mean / min"):
        assert row in result.stdout


def test_fp16_export_halves_the_file_and_reports_its_own_figures(
    tiny_runs: dict, mask_model: Path, verify_images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "half.onnx"
    result = run_detect(
        "export", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]), "--out", str(out),
        "--fp16", "--verify", str(verify_images),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "fp16" in result.stdout
    card = ModelCard.read(out.with_suffix(".json"))
    assert card.precision == "fp16"
    assert card.parity["criteria"]["compared_score_at_least"] == card.thresholds["score"]
    assert out.stat().st_size < 0.55 * mask_model.stat().st_size
    inputs = {i.name: i.type.tensor_type.elem_type for i in onnx.load(str(out)).graph.input}
    assert inputs == {"image": onnx.TensorProto.UINT8}


def _untrained_checkpoint(path: Path, arch: str, backbone: str, roi: str) -> Path:
    """A `detect train`-format checkpoint of a randomly initialised model whose class scores
    are spread out (torchvision's initialisation scores every box about 1/3: ties, which NMS
    may break either way)."""
    sizes = {**TINY_SIZES, "min_size": 96, "max_size": 160}
    torch.manual_seed(0)
    model = build_model(arch, backbone, 3, roi, **sizes)
    torch.nn.init.normal_(model.roi_heads.box_predictor.cls_score.weight, std=0.2)
    torch_state = model.state_dict()
    save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "version": "test",
            "model_spec": {
                "arch": arch, "backbone": backbone, "roi": roi, "num_classes": 3, "sizes": sizes,
            },
            "labels": ["a", "b"],
            "category_ids": [1, 2],
            "config": {},
            "model": torch_state,
            "epoch": 0,
        },
        path,
    )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("arch", "backbone", "roi"),
    [("faster_rcnn", "resnet50_fpn", "pool"), ("mask_rcnn", "mobilenet_v3_fpn", "align")],
)
def test_other_backbones_export_and_match(
    arch: str, backbone: str, roi: str, verify_images: Path, tmp_path: Path
) -> None:
    checkpoint = _untrained_checkpoint(tmp_path / "ckpt.pt", arch, backbone, roi)
    out = tmp_path / f"{backbone}.onnx"
    result = run_detect("export", "--checkpoint", str(checkpoint), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = parity(checkpoint, out, [verify_images])
    assert report.expected > 0, report.table()
    assert report.passed, report.table()


def test_export_bad_inputs_end_in_one_clear_line(tmp_path: Path) -> None:
    not_a_checkpoint = tmp_path / "weights.pt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")],
         1, "not found"),
        (["--checkpoint", str(not_a_checkpoint), "--out", str(tmp_path / "m.onnx")],
         1, "cannot read checkpoint"),
        (["--checkpoint", str(not_a_checkpoint), "--out", str(tmp_path / "m.txt")], 2, ".onnx"),
    ]  # fmt: skip
    for args, code, message in cases:
        result = run_detect("export", *args)
        assert result.returncode == code, result.stderr
        assert result.stderr.startswith("error:") and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.json"))


def test_parity_with_no_images_is_a_clear_error(
    tiny_runs: dict, mask_model: Path, tmp_path: Path
) -> None:
    result = run_detect(
        "parity", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]),
        "--model", str(mask_model), str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: no images found")


def test_model_card_is_plain_json(mask_model: Path) -> None:
    card = json.loads(mask_model.with_suffix(".json").read_text())
    assert card["format"] == "detect-model/1"
    assert set(card["thresholds"]) == {
        "score", "mask", "agnostic_nms", "agnostic_nms_iou", "graph_score", "nms_iou",
        "max_detections",
    }  # fmt: skip
    assert card["thresholds"]["agnostic_nms"] is False  # off unless exported with --agnostic-nms
    assert card["thresholds"]["agnostic_nms_iou"] == 0.7
    assert np.isclose(card["thresholds"]["graph_score"], 0.05)  # torchvision's box_score_thresh


def test_score_and_agnostic_nms_flags_set_the_cards_defaults(
    tiny_runs: dict, tmp_path: Path
) -> None:
    out = tmp_path / "scored.onnx"
    checkpoint = str(tiny_runs["faster_rcnn", "align"])
    result = run_detect(
        "export", "--checkpoint", checkpoint, "--out", str(out), "--score", "0.3",
        "--agnostic-nms", "--agnostic-nms-iou", "0.6",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    thresholds = json.loads(out.with_suffix(".json").read_text())["thresholds"]
    assert thresholds["score"] == 0.3
    assert thresholds["agnostic_nms"] is True and thresholds["agnostic_nms_iou"] == 0.6
    card = ModelCard.read(out.with_suffix(".json"))
    assert card.agnostic_nms and card.agnostic_nms_iou == 0.6
    bad = run_detect("export", "--checkpoint", checkpoint, "--out", str(out), "--score", "2")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --score 2")
    bad = run_detect(
        "export", "--checkpoint", checkpoint, "--out", str(out), "--agnostic-nms-iou", "1.5"
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: --agnostic-nms-iou 1.5")


def _tiny_untrained(arch: str = "mask_rcnn") -> torch.nn.Module:
    """A randomly initialised tiny ResNet-18-FPN model at 64 px, in eval mode."""
    torch.manual_seed(0)
    sizes = {**TINY_SIZES, "min_size": 64, "max_size": 96}
    return build_model(arch, "resnet18_fpn", 3, "align", **sizes).eval()


def _image(height: int = 64, width: int = 80) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_export_traces_torchvisions_nms_through_the_batched_nms_patch(tmp_path: Path) -> None:
    model = _tiny_untrained()
    original = box_ops.batched_nms
    with torch.no_grad(), _plain_batched_nms() as calls:
        DetectorGraph(model)(_image())
    # one call per image from each head: the RPN's proposals and the RoI heads' detections
    assert calls == dict.fromkeys(PATCHED_NMS_CALLERS, 1)

    out = tmp_path / "tiny.onnx"
    export_graph(model, out)  # raises ModelError if the trace bypassed the patch
    assert box_ops.batched_nms is original
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "NonMaxSuppression" in ops
    assert "If" not in ops  # torchvision's own batched_nms would trace an If branch


def test_export_patch_bypassed_by_torchvision_is_a_clear_error() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    scores, idxs = torch.tensor([0.9, 0.8]), torch.tensor([0, 0])
    # torchvision.ops.batched_nms is bound at import: a head calling it skips the patched name
    with pytest.raises(ModelError) as bypassed, _plain_batched_nms() as calls:
        torchvision.ops.batched_nms(boxes, scores, idxs, 0.5)
    assert not calls
    message = str(bypassed.value)
    assert message.startswith(f"export: torchvision {torchvision.__version__}'s ")
    for module in PATCHED_NMS_CALLERS:
        assert module in message
    assert "torchvision.ops.boxes.batched_nms" in message and "detect/export/trace.py" in message

    # the RPN alone goes through the patch; the RoI heads, never run, are named as bypassing it
    model = _tiny_untrained("faster_rcnn")
    with torch.no_grad(), pytest.raises(ModelError) as partly, _plain_batched_nms() as calls:
        images, _ = model.transform([_image().permute(2, 0, 1).float() / 255])
        model.rpn(images, model.backbone(images.tensors))
    assert calls == {"torchvision.models.detection.rpn": 1}
    assert "torchvision.models.detection.roi_heads never called" in str(partly.value)
    assert "detection.rpn" not in str(partly.value)


def test_export_patch_restores_torchvisions_batched_nms() -> None:
    original = box_ops.batched_nms
    with _plain_batched_nms(expected_callers=()):
        assert box_ops.batched_nms is not original
    assert box_ops.batched_nms is original
    with pytest.raises(ModelError), _plain_batched_nms():
        pass
    assert box_ops.batched_nms is original
    # an error inside the block is raised as it is, not replaced by the bypass error
    with pytest.raises(ZeroDivisionError), _plain_batched_nms():
        _ = 1 / 0
    assert box_ops.batched_nms is original

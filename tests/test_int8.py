"""`detect export --int8`: an int8 QDQ model calibrated on the model's own images, its AP cost
measured on held-out images on every installed engine, written into the card, and refused when
it is larger than ``--max-ap-drop``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import run_detect

from detect.quantize import QUANTIZED_SCOPES, ap_cost
from detect.runtime.detector import Detector
from detect.runtime.engines import installed_engines
from detect.runtime.model_card import ModelCard, card_path

pytestmark = pytest.mark.slow  # minutes of training, export or installing (make check skips it)


def _export(tiny_runs: dict, shapes_small: Path, out: Path, *flags: str):
    # the tiny model scores AP 0 on its 4 validation images; its 8 training images show a cost
    return run_detect(
        "export", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]), "--out", str(out),
        "--int8", str(shapes_small / "images"), "--int8-val", str(shapes_small / "train.json"),
        *flags,
    )  # fmt: skip


@pytest.fixture(scope="module")
def int8_model(tiny_runs: dict, shapes_small: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    result = _export(tiny_runs, shapes_small, out, "--force", "--max-ap-drop", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result.stdout


def test_int8_export_records_its_calibration_and_ap_cost_per_engine(
    int8_model: tuple[Path, str], shapes_small: Path
) -> None:
    out, stdout = int8_model
    card = ModelCard.read(card_path(out))
    assert card.precision == "int8"
    record = card.quantization
    assert record["calibration_images"] == 12 and record["held_out_images"] == 8
    assert record["scopes"] == list(QUANTIZED_SCOPES) and record["forced"] is True
    assert sorted(record["ap"]) == sorted(installed_engines())
    for engine, figures in record["ap"].items():
        assert set(figures["fp32"]) == set(figures["int8"]) == {"bbox", "segm"}
        assert figures["fp32"]["bbox"] > 0.3  # measured, not placeholders
        assert f"int8 on {engine}: bbox AP {figures['fp32']['bbox']:.4f} -> " in stdout
    fp32 = {e: f["fp32"] for e, f in record["ap"].items()}
    int8 = {e: f["int8"] for e, f in record["ap"].items()}
    assert record["ap_drop_points"] == pytest.approx(ap_cost(fp32, int8), abs=1e-3)
    graph = onnx.load(str(out))
    ops = {node.op_type for node in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights  # the Conv/Gemm weights are stored as int8
    dequantized = {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    users = [
        n.name for n in graph.graph.node if dequantized & set(n.input) and n.op_type != "Shape"
    ]
    # the learned layers run on int8 inputs, from the backbone to the mask head; nothing else
    # computes with int8-rounded values (Shape nodes read only the sizes)
    for scope in ("/backbone/", "/rpn/head/", "/roi_heads/box_head/", "/roi_heads/mask_head/"):
        assert any(name.startswith(scope) for name in users), scope
    assert all(name.startswith(QUANTIZED_SCOPES) for name in users), users


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_the_int8_model_detects_like_fp32(
    int8_model: tuple[Path, str], mask_model: Path, shapes_small: Path, engine: str
) -> None:
    if engine not in installed_engines():
        pytest.skip(f"{engine} is not installed")
    int8 = Detector(int8_model[0], device="cpu", backend=engine)
    fp32 = Detector(mask_model, device="cpu", backend=engine)
    agree = total = 0
    for path in sorted((shapes_small / "images").glob("*.jpg"))[:8]:
        image = path.read_bytes()
        a, b = fp32.detect(image, score_threshold=0.5), int8.detect(image, score_threshold=0.5)
        total += len(a)
        agree += sum(
            any(d.label == e.label and np.abs(np.subtract(d.box, e.box)).max() < 3 for e in b)
            for d in a
        )
    assert total > 0 and agree >= 0.8 * total


def test_an_int8_model_losing_more_than_max_ap_drop_is_not_written(
    int8_model: tuple[Path, str], tiny_runs: dict, shapes_small: Path, tmp_path: Path
) -> None:
    drop = ModelCard.read(card_path(int8_model[0])).quantization["ap_drop_points"]
    if drop <= 0:
        pytest.skip(f"int8 lost no AP here ({drop:.3f} points): nothing to refuse")
    out = tmp_path / "refused.onnx"
    result = _export(tiny_runs, shapes_small, out, "--max-ap-drop", f"{drop / 2:.4f}")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing written" in errors[0] and "--force" in errors[0]
    assert f"int8 loses {drop:.2f} AP points" in errors[0]
    assert list(tmp_path.iterdir()) == []  # no model, no card, no work folder left


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--int8 needs --int8-val GT_JSON"),
        (["--int8-val", "missing.json"], "--int8-val missing.json: no such file"),
        (["--int8-val", "GT", "--batch-sizes", "2"], "--int8 goes without --fp16, --batch-sizes"),
        (["--int8-val", "GT", "--max-ap-drop", "-1"], "--max-ap-drop -1.0: give AP points"),
        (["--int8-val", "GT", "--int8", "nowhere"], "--int8 nowhere: no such folder"),
        (["--int8-val", "GT", "--int8", "EMPTY"], "--int8 EMPTY: no images in it"),
        (["--int8-val", "NO_ANNOTATIONS"], "NO_ANNOTATIONS has no annotations"),
    ],
)
def test_int8_flag_mistakes_are_one_line_before_any_work(
    tiny_runs: dict, shapes_small: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    bare = json.loads((shapes_small / "train.json").read_text()) | {"annotations": []}
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    names = {
        "GT": str(shapes_small / "train.json"),
        "EMPTY": str(tmp_path / "empty"),
        "NO_ANNOTATIONS": str(tmp_path / "bare.json"),
    }
    flags = [names.get(f, f) for f in flags]
    for key in ("EMPTY", "NO_ANNOTATIONS"):
        message = message.replace(key, names[key])
    result = run_detect(
        "export", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]),
        "--out", str(tmp_path / "m.onnx"), "--int8", str(shapes_small / "images"), *flags,
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}"), result.stderr
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()


def test_a_bad_calibration_image_is_one_line_naming_it_before_any_work(
    tiny_runs: dict, shapes_small: Path, tmp_path: Path
) -> None:
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for path in sorted((shapes_small / "images").glob("*.jpg"))[:3]:
        (calibration / path.name).write_bytes(path.read_bytes())
    (calibration / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "out" / "m.onnx"
    result = run_detect(
        "export", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]), "--out", str(out),
        "--int8", str(calibration), "--int8-val", str(shapes_small / "train.json"),
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --int8 calibration image {calibration / 'zz_broken.jpg'}: ")
    assert last.endswith("; remove it") and "Traceback" not in result.stderr
    assert not out.parent.exists()  # nothing traced, nothing written

"""`detect export --int8`: the fp32 model and beside it its int8 QDQ model, calibrated on the
model's own images, its AP cost measured on held-out images on every installed engine, written
into its card, and refused when it is larger than ``--max-ap-drop``; ``--model`` makes the int8
model of an exported file. `detect serve` (and video, watch) on the CPU run the int8 model beside
the file they are given and say so, unless ``--precision fp32``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import run_detect
from serving import add_version, start_server

from detect.client import DetectorClient
from detect.errors import ConfigError
from detect.quantize import QUANTIZED_SCOPES, ap_cost
from detect.runtime.detector import Detector
from detect.runtime.engines import installed_engines
from detect.runtime.model_card import ModelCard, card_path
from detect.runtime.precision import FP32_SHA256, chosen_file, int8_sibling

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
    """The int8 model ``tiny.int8.onnx`` that ``export --int8 --out tiny.onnx`` wrote beside
    ``tiny.onnx``, and the export's stdout."""
    out = tmp_path_factory.mktemp("int8") / "tiny.onnx"
    result = _export(tiny_runs, shapes_small, out, "--force", "--max-ap-drop", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    return int8_sibling(out), result.stdout


def test_int8_export_writes_the_fp32_model_and_its_int8_model_beside_it(
    int8_model: tuple[Path, str],
) -> None:
    int8, stdout = int8_model
    fp32 = int8.with_name("tiny.onnx")
    assert sorted(p.name for p in fp32.parent.iterdir()) == [
        "tiny.int8.json", "tiny.int8.onnx", "tiny.json", "tiny.onnx",
    ]  # fmt: skip
    fp32_card, int8_card = ModelCard.read(card_path(fp32)), ModelCard.read(card_path(int8))
    assert (fp32_card.precision, int8_card.precision) == ("fp32", "int8")
    assert int8_card.name == fp32_card.name == "tiny"
    assert int8_card.quantization[FP32_SHA256] == fp32_card.sha256 and not fp32_card.quantization
    assert f"wrote {fp32} (" in stdout and f") and {card_path(fp32)}\n" in stdout
    assert f"wrote {int8} (" in stdout and f") and {card_path(int8)}, the int8 model" in stdout


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


def _said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "the int8 model of" in line]


def test_serve_on_the_cpu_runs_the_int8_model_beside_the_file_and_says_so_once(
    int8_model: tuple[Path, str],
) -> None:
    int8 = int8_model[0]
    fp32 = int8.with_name("tiny.onnx")
    server = start_server(fp32, "--device", "cpu", "--poll", "0.1")
    try:
        with DetectorClient(server.address) as client:
            info = client.model_info()
            time.sleep(0.5)  # the files looked at again, several times
    finally:
        assert server.stop() == 0
    assert (info.name, info.precision) == ("tiny", "int8")
    assert info.sha256 == ModelCard.read(card_path(int8)).sha256
    said = _said(server.process.stderr.read())
    assert len(said) == 1, said
    assert said[0].endswith(
        f"running {int8}, the int8 model of {fp32}, on the CPU; --precision fp32 runs {fp32} itself"
    )


def test_a_repository_version_serves_its_int8_model_as_that_version(
    int8_model: tuple[Path, str], tmp_path: Path
) -> None:
    int8 = int8_model[0]
    folder = add_version(tmp_path / "models", "shapes", 1, int8.with_name("tiny.onnx"))
    shutil.copy(int8, folder / "model.int8.onnx")
    shutil.copy(card_path(int8), folder / "model.int8.json")
    server = start_server(tmp_path / "models", "--device", "cpu")
    with server, DetectorClient(server.address) as client:
        listed = client.list_models().models
    assert [(m.name, m.version, m.precision) for m in listed] == [("shapes", "1", "int8")]


def test_precision_fp32_serves_the_file_given(int8_model: tuple[Path, str]) -> None:
    fp32 = int8_model[0].with_name("tiny.onnx")
    server = start_server(fp32, "--device", "cpu", "--precision", "fp32")
    try:
        with DetectorClient(server.address) as client:
            info = client.model_info()
    finally:
        assert server.stop() == 0
    assert (info.name, info.precision) == ("tiny", "fp32")
    assert _said(server.process.stderr.read()) == []


def test_video_on_the_cpu_runs_the_int8_model_and_says_so_unless_fp32(
    int8_model: tuple[Path, str], tmp_path: Path
) -> None:
    int8 = int8_model[0]
    fp32 = int8.with_name("tiny.onnx")
    clip = tmp_path / "clip.mp4"
    made = run_detect("synth", "--video", str(clip), "--frames", "3", "--video-size", "96x96")
    assert made.returncode == 0, made.stderr
    run = ("video", str(clip), "--model", str(fp32), "--device", "cpu", "--max-frames", "2")
    auto, exact = run_detect(*run), run_detect(*run, "--precision", "fp32")
    assert auto.returncode == exact.returncode == 0, auto.stderr + exact.stderr
    warnings = [line for line in auto.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: running {int8}, the int8 model of {fp32}, on the CPU; --precision fp32 runs "
        f"{fp32} itself"
    ]
    assert "warning:" not in exact.stderr


def test_precision_int8_without_an_int8_model_is_one_error_line(mask_model: Path) -> None:
    result = run_detect(
        "serve", "--model", str(mask_model), "--precision", "int8", "--port", "0",
        "--metrics-port", "0", timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: precision int8: no int8 model {int8_sibling(mask_model)} beside {mask_model}; "
        f"make it with `detect export --model {mask_model} --int8 CALIB_IMAGES --int8-val "
        "GT_JSON`"
    ]


def test_export_model_writes_only_the_int8_model_of_an_exported_file(
    int8_model: tuple[Path, str], shapes_small: Path, tmp_path: Path
) -> None:
    tiny = int8_model[0].with_name("tiny.onnx")
    fp32 = tmp_path / "m.onnx"
    shutil.copy(tiny, fp32)
    shutil.copy(card_path(tiny), card_path(fp32))
    result = run_detect(
        "export", "--model", str(fp32), "--int8", str(shapes_small / "images"),
        "--int8-val", str(shapes_small / "train.json"), "--force",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.int8.json", "m.int8.onnx", "m.json", "m.onnx",
    ]  # fmt: skip
    assert fp32.read_bytes() == tiny.read_bytes()  # the fp32 model as it was
    int8 = int8_sibling(fp32)
    card = ModelCard.read(card_path(int8))
    assert card.precision == "int8" and card.quantization["calibration_images"] == 12
    assert card.quantization[FP32_SHA256] == ModelCard.read(card_path(fp32)).sha256
    wrote = [line for line in result.stdout.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 1 and wrote[0].startswith(f"wrote {int8} (")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--model FP32: an exported model is only made int8 here; give --int8"),
        (["--int8", "IMAGES", "--int8-val", "GT", "--out", "x.onnx"], "leave --out out"),
        (["--int8", "IMAGES", "--int8-val", "GT", "--score", "0.3"], "leave --score out"),
        (["--checkpoint", "c.pt"], "not allowed with argument"),
    ],
)
def test_export_model_mistakes_are_one_line_before_any_work(
    int8_model: tuple[Path, str], shapes_small: Path, flags: list[str], message: str
) -> None:
    fp32 = int8_model[0].with_name("tiny.onnx")
    names = {
        "IMAGES": str(shapes_small / "images"), "GT": str(shapes_small / "train.json"),
    }  # fmt: skip
    result = run_detect("export", "--model", str(fp32), *[names.get(f, f) for f in flags])
    assert result.returncode == 2, result.stderr
    assert message.replace("FP32", str(fp32)) in result.stderr.strip().splitlines()[-1]


def test_export_model_of_an_int8_model_is_one_line(
    int8_model: tuple[Path, str], shapes_small: Path
) -> None:
    int8 = int8_model[0]
    result = run_detect(
        "export", "--model", str(int8), "--int8", str(shapes_small / "images"),
        "--int8-val", str(shapes_small / "train.json"),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --model {int8} is an int8 model; give the fp32 NAME.onnx it was exported beside"
    ]


def _cards(folder: Path, fp32_sha256: str, made_from: str | None) -> Path:
    """``folder/m.onnx`` and ``m.int8.onnx`` with cards saying what they are (the files are
    placeholders: choosing reads only the cards)."""
    folder.mkdir()
    fp32 = folder / "m.onnx"
    for path, card in [
        (fp32, {"precision": "fp32", "sha256": fp32_sha256}),
        (int8_sibling(fp32), {"precision": "int8", "quantization": {FP32_SHA256: made_from}}),
    ]:
        path.write_bytes(b"onnx")
        card_path(path).write_text(json.dumps(card))
    return fp32


def test_precision_picks_the_int8_model_only_on_the_cpu_and_only_the_one_made_from_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fp32 = _cards(tmp_path / "ok", "a" * 64, "a" * 64)
    int8 = int8_sibling(fp32)
    assert chosen_file(fp32, "auto", "cpu") == chosen_file(fp32, "int8", "cuda") == int8
    assert chosen_file(fp32, "auto", "cuda", "onnxruntime") == chosen_file(fp32, "fp32") == fp32
    assert chosen_file(int8, "int8") == chosen_file(int8, "auto", "cpu") == int8
    stale = _cards(tmp_path / "stale", "b" * 64, "a" * 64)  # fp32 exported again since
    assert chosen_file(stale, "auto", "cpu") == stale
    assert f"{int8_sibling(stale)} was quantized from another m.onnx (sha256 aaaaaaaaaaaa, " in (
        caplog.text
    )
    with pytest.raises(ConfigError, match="^precision int8: .* was quantized from another"):
        chosen_file(stale, "int8")
    card_path(int8_sibling(fp32)).unlink()  # half-copied: not yet
    assert chosen_file(fp32, "auto", "cpu") == fp32

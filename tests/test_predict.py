"""`detect predict` end to end: the real CLI in a subprocess, a real exported model on ONNX Runtime,
real image files (good, broken and missing), and the outputs checked with pycocotools."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import run_detect
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detect.runtime.model_card import sha256_file

# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Line:
    """One stdout line: ``image,top,left,width,height,label,score``."""

    image: str
    top: float
    left: float
    width: float
    height: float
    label: str
    score: float


def _lines(stdout: str) -> list[Line]:
    rows = []
    for text in stdout.splitlines():
        image, top, left, width, height, label, score = text.rsplit(",", 6)
        rows.append(Line(image, *map(float, (top, left, width, height)), label, float(score)))
    return rows


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _predict(*args: str | Path) -> subprocess.CompletedProcess:
    """`detect predict ARGS`; never a raw traceback, whatever the outcome."""
    result = run_detect("predict", *map(str, args))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def _predictions(out: Path) -> list[dict]:
    predictions = json.loads((out / "predictions.json").read_text())
    assert isinstance(predictions, list)
    return predictions


def _card(model: Path) -> dict:
    return json.loads(model.with_suffix(".json").read_text())


def _size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, decoded in full."""
    with Image.open(path) as image:
        image.load()
        return image.size


def _key(entry: dict) -> tuple:
    """What identifies a detection across runs of the same model on the same images."""
    return entry["file_name"], entry["label"], tuple(entry["bbox"]), entry["score"]


def _good_images(shapes: Path, root: Path) -> dict[Path, str]:
    """Good images under `root` (JPEGs, one PNG, one of another size, a subfolder with a name
    that repeats one above it) -> the name of their annotated copy."""
    sources = sorted((shapes / "images").glob("*.jpg"))
    (root / "sub").mkdir(parents=True)
    images: dict[Path, str] = {}
    for i, src in enumerate(sources):
        dst = root / src.name if i < 8 else root / "sub" / src.name
        shutil.copy(src, dst)
        images[dst] = src.name
    with Image.open(sources[0]) as image:
        image.save(root / "copy.png")
        image.resize((120, 72)).save(root / "wide.jpg", quality=95)
    images[root / "copy.png"] = "copy.png"
    images[root / "wide.jpg"] = "wide.jpg"
    # same name as root/<first>.jpg: its annotated copy is numbered
    shutil.copy(sources[1], root / "sub" / sources[0].name)
    images[root / "sub" / sources[0].name] = f"{sources[0].stem}_2.jpg"
    return images


def _check_outputs(
    result: subprocess.CompletedProcess, out: Path, images: dict[Path, str], model: Path
) -> list[dict]:
    """The checks every run shares: annotated copies, predictions.json <-> stdout, COCO
    validity (boxes through pycocotools' loadRes, polygons through its rasteriser)."""
    for path, name in images.items():
        annotated = out / "annotated" / name
        assert annotated.is_file(), f"no annotated copy of {path}"
        assert _size(annotated) == _size(path), annotated
    assert {p.name for p in (out / "annotated").iterdir()} == set(images.values())

    predictions = _predictions(out)
    lines = _lines(result.stdout)
    assert len(lines) == len(predictions)
    card = _card(model)
    good = {str(p) for p in images}
    sizes = {str(p): _size(p) for p in images}
    ids: dict[int, str] = {}
    for line, entry in zip(lines, predictions, strict=True):
        assert entry["file_name"] in good and line.image == entry["file_name"], (line, entry)
        assert ids.setdefault(entry["image_id"], entry["file_name"]) == entry["file_name"]
        x, y, w, h = entry["bbox"]
        # stdout is top,left,width,height to 0.01 px; the JSON bbox is [left, top, width, height]
        assert line.top == pytest.approx(y, abs=0.051)
        assert line.left == pytest.approx(x, abs=0.051)
        assert line.width == pytest.approx(w, abs=0.051)
        assert line.height == pytest.approx(h, abs=0.051)
        assert line.score == pytest.approx(entry["score"], abs=0.00051)
        assert line.label == entry["label"] and entry["label"] in card["labels"]
        index = card["labels"].index(entry["label"])
        assert entry["category_id"] == card["category_ids"][index]
        width, height = sizes[entry["file_name"]]
        assert min(x, y, w, h) >= 0
        assert x + w <= width + 1e-3 and y + h <= height + 1e-3
        assert 0 <= entry["score"] <= 1
    assert len(set(ids.values())) == len(ids), "one image_id per image"

    # pycocotools takes the boxes as COCO results for a ground truth holding these images
    gt = COCO()
    gt.dataset = {
        "images": [
            {"id": i, "file_name": f, "width": sizes[f][0], "height": sizes[f][1]}
            for i, f in ids.items()
        ],
        "annotations": [],
        "categories": [
            {"id": c, "name": n} for c, n in zip(card["category_ids"], card["labels"], strict=True)
        ],
    }
    gt.createIndex()
    if predictions:
        boxes = [{k: v for k, v in e.items() if k != "segmentation"} for e in predictions]
        loaded = gt.loadRes(copy.deepcopy(boxes))
        assert len(loaded.getAnnIds()) == len(predictions)

    # and rasterises every polygon to a non-empty mask inside the image
    for entry in predictions:
        if "segmentation" not in entry:
            continue
        width, height = sizes[entry["file_name"]]
        assert entry["segmentation"] and all(
            len(p) >= 6 and len(p) % 2 == 0 for p in entry["segmentation"]
        )
        # polygons are simplified (--polygon-tolerance, 1 px) and not clipped to the image:
        # their vertices may lie up to that far outside it
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in entry["segmentation"]])
        assert points.min() >= -1.0
        assert (points.max(axis=0) <= (width + 1.0, height + 1.0)).all()
        rles = mask_utils.frPyObjects(entry["segmentation"], height, width)
        assert mask_utils.decode(mask_utils.merge(rles)).sum() > 0, entry
    return predictions


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    images: dict[Path, str]
    out: Path
    result: subprocess.CompletedProcess
    predictions: list[dict]


@pytest.fixture(scope="module")
def good_run(shapes_small: Path, mask_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """`detect predict` over a folder of good images only, every detection kept (--score 0)."""
    root = tmp_path_factory.mktemp("good_run")
    images = _good_images(shapes_small, root / "in")
    out = root / "out"
    result = _predict(root / "in", "--model", mask_model, "--out", out, "--score", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = _predictions(out)
    assert predictions, "the tiny model found nothing at --score 0; the checks below need some"
    return Run(images, out, result, predictions)


def test_good_and_bad_files_each_bad_one_reported_the_good_ones_all_processed(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    root = tmp_path / "in"
    images = _good_images(shapes_small, root)
    first = sorted((shapes_small / "images").glob("*.jpg"))[0]
    bad = {
        root / "empty.jpg": b"",
        root / "garbage.jpg": bytes(range(1, 256)) * 8,
        root / "notes.png": b"these are notes, not pixels\n",
        root / "sub" / "truncated.jpg": first.read_bytes()[: first.stat().st_size // 2],
    }
    for path, data in bad.items():
        path.write_bytes(data)
    with Image.open(first) as image:  # 200 x 150 = 0.03 MP, over --max-mp 0.02 (96 x 96 is not)
        image.resize((200, 150)).save(root / "large.jpg")
    missing = tmp_path / "missing.jpg"
    bad_paths = [*bad, root / "large.jpg", missing]

    out = tmp_path / "out"
    result = _predict(
        root, missing, "--model", mask_model, "--out", out, "--score", "0", "--max-mp", "0.02"
    )

    assert result.returncode == 1, result.stderr[-3000:]
    errors = _errors(result.stderr)
    assert len(errors) == len(bad_paths), errors
    for path in bad_paths:
        assert sum(line.startswith(f"error: {path}: ") for line in errors) == 1, (path, errors)
    assert any("MP limit" in line for line in errors if "large.jpg" in line), errors
    assert f"{len(images)} images" in result.stderr and f"{len(bad_paths)} failed" in result.stderr

    predictions = _check_outputs(result, out, images, mask_model)
    assert not {e["file_name"] for e in predictions} & {str(p) for p in bad_paths}


def test_all_good_images_exit_0_with_consistent_outputs(good_run: Run, mask_model: Path) -> None:
    assert _errors(good_run.result.stderr) == []
    predictions = _check_outputs(good_run.result, good_run.out, good_run.images, mask_model)
    assert any("segmentation" in e for e in predictions), "a mask model gives polygons"
    per_image = Counter(e["file_name"] for e in predictions)
    assert max(per_image.values()) <= 100  # --max-detections defaults to 100
    for name in per_image:  # best first within each image
        scores = [e["score"] for e in predictions if e["file_name"] == name]
        assert scores == sorted(scores, reverse=True)


def test_progress_in_a_log_is_plain_lines_on_stderr_and_stdout_keeps_only_result_lines(
    good_run: Run,
) -> None:
    result, n = good_run.result, len(good_run.images)
    assert "\r" not in result.stderr and "\r" not in result.stdout
    final = rf"^predict: {n}/{n} images, [\d.e-]+ images/s, took \d+:\d\d:\d\d$"
    assert re.search(final, result.stderr, re.MULTILINE), result.stderr
    assert len(_lines(result.stdout)) == len(good_run.predictions)  # each line parses as one


def test_same_named_images_in_different_folders_get_numbered_annotated_copies(
    good_run: Run,
) -> None:
    names = sorted(p.name for p in (good_run.out / "annotated").iterdir())
    assert "000000.jpg" in names and "000000_2.jpg" in names
    first = next(p for p, n in good_run.images.items() if n == "000000.jpg")
    second = next(p for p, n in good_run.images.items() if n == "000000_2.jpg")
    assert first.parent.name == "in" and second.parent.name == "sub"


def test_unknown_class_fails_listing_the_models_classes_and_writes_nothing(
    good_run: Run, mask_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _predict(
        good_run.out.parent / "in", "--model", mask_model, "--out", out, "--classes", "zebra"
    )
    assert result.returncode == 2
    errors = _errors(result.stderr)
    assert len(errors) == 1 and "zebra" in errors[0], result.stderr
    assert all(label in errors[0] for label in _card(mask_model)["labels"]), errors[0]
    assert result.stdout == ""
    assert not (out / "predictions.json").exists() and not (out / "annotated").exists()


def test_classes_keeps_only_that_label(good_run: Run, mask_model: Path, tmp_path: Path) -> None:
    label, _ = Counter(e["label"] for e in good_run.predictions).most_common(1)[0]
    out = tmp_path / "out"
    result = _predict(
        good_run.out.parent / "in",
        *("--model", mask_model, "--out", out, "--score", "0", "--classes", label),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = _check_outputs(result, out, good_run.images, mask_model)
    assert predictions and {e["label"] for e in predictions} == {label}
    # the filter applies before the per-image cap: all of that label from the unfiltered run
    # are kept (and maybe more that the cap cut there)
    before = {_key(e) for e in good_run.predictions if e["label"] == label}
    assert before <= {_key(e) for e in predictions}


def test_max_detections_caps_each_image_keeping_the_best(
    good_run: Run, mask_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _predict(
        good_run.out.parent / "in",
        *("--model", mask_model, "--out", out, "--score", "0", "--max-detections", "2"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = _check_outputs(result, out, good_run.images, mask_model)
    capped, full = defaultdict(list), defaultdict(list)
    for entry in predictions:
        capped[entry["file_name"]].append(_key(entry))
    for entry in good_run.predictions:
        full[entry["file_name"]].append(_key(entry))
    assert set(capped) == set(full)
    for name, kept in capped.items():
        assert len(kept) == min(2, len(full[name]))
        assert kept == full[name][: len(kept)]


def test_score_threshold_keeps_only_detections_at_or_above_it(
    good_run: Run, mask_model: Path, tmp_path: Path
) -> None:
    threshold = float(np.median([e["score"] for e in good_run.predictions]))
    out = tmp_path / "out"
    result = _predict(
        good_run.out.parent / "in",
        *("--model", mask_model, "--out", out, "--score", str(threshold)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = _check_outputs(result, out, good_run.images, mask_model)
    assert predictions and all(e["score"] >= threshold - 1e-5 for e in predictions)
    expected = {_key(e) for e in good_run.predictions if e["score"] >= threshold + 1e-5}
    assert expected <= {_key(e) for e in predictions}


def test_score_1_gives_no_lines_and_an_empty_list(
    good_run: Run, mask_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _predict(
        good_run.out.parent / "in", "--model", mask_model, "--out", out, "--score", "1.0"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""
    assert _predictions(out) == []
    assert {p.name for p in (out / "annotated").iterdir()} == set(good_run.images.values())


# --------------------------------------------------------------------------- model problems


def _missing_onnx(model: Path, dst: Path) -> Path:
    return dst / "none.onnx"


def _missing_card(model: Path, dst: Path) -> Path:
    shutil.copy(model, dst / "m.onnx")
    return dst / "m.onnx"


def _card_not_json(model: Path, dst: Path) -> Path:
    shutil.copy(model, dst / "m.onnx")
    (dst / "m.json").write_text('{"format": "detect-model/1", "labels": [')
    return dst / "m.onnx"


def _sha256_mismatch(model: Path, dst: Path) -> Path:
    shutil.copy(model, dst / "m.onnx")
    shutil.copy(model.with_suffix(".json"), dst / "m.json")
    data = bytearray((dst / "m.onnx").read_bytes())
    data[-16] ^= 0xFF
    (dst / "m.onnx").write_bytes(bytes(data))
    return dst / "m.onnx"


def _corrupt_onnx_matching_card(model: Path, dst: Path) -> Path:
    (dst / "m.onnx").write_bytes(b"\x08\x07 not a protobuf " * 4096)
    card = _card(model)
    card["sha256"] = sha256_file(dst / "m.onnx")
    (dst / "m.json").write_text(json.dumps(card))
    return dst / "m.onnx"


def _card_without_sizes(model: Path, dst: Path) -> Path:
    shutil.copy(model, dst / "m.onnx")
    card = _card(model)
    card["input"] = {}
    (dst / "m.json").write_text(json.dumps(card))
    return dst / "m.onnx"


def _card_with_fewer_ids_than_labels(model: Path, dst: Path) -> Path:
    shutil.copy(model, dst / "m.onnx")
    card = _card(model)
    card["category_ids"] = card["category_ids"][:1]
    (dst / "m.json").write_text(json.dumps(card))
    return dst / "m.onnx"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_missing_onnx, "not found"),
        (_missing_card, "model card"),
        (_card_not_json, "not valid JSON"),
        (_sha256_mismatch, "does not match its model card"),
        (_corrupt_onnx_matching_card, "cannot load"),  # by the default engine
        (_card_without_sizes, "input.min_size must be an integer"),
        (_card_with_fewer_ids_than_labels, "category_ids must list one id per label"),
    ],
    ids=[
        "missing-onnx",
        "missing-card",
        "card-not-json",
        "sha256-mismatch",
        "corrupt-onnx",
        "card-without-sizes",
        "card-ids-short",
    ],
)
def test_model_problem_fails_with_one_error_line_before_any_work(
    make, says: str, shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    (tmp_path / "model").mkdir()
    model = make(mask_model, tmp_path / "model")
    out = tmp_path / "out"
    result = _predict(shapes_small / "images", "--model", model, "--out", out, "--score", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert says in lines[0] and str(model.parent) in lines[0], lines[0]
    assert result.stdout == ""
    assert not (out / "predictions.json").exists() and not (out / "annotated").exists()


@pytest.mark.parametrize(
    ("backend", "says"),
    [("onnxruntime", "ONNX Runtime cannot load"), ("openvino", "OpenVINO cannot load")],
)
def test_a_corrupt_model_is_one_error_line_on_either_engine(
    backend: str, says: str, shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    (tmp_path / "model").mkdir()
    model = _corrupt_onnx_matching_card(mask_model, tmp_path / "model")
    result = _predict(shapes_small / "images", "--model", model, "--out", tmp_path / "out",
                      "--backend", backend)  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says} {model}"), result.stderr


# --------------------------------------------------------------------------- closed stdout


@pytest.mark.parametrize("keep", [0, 1])
def test_closed_stdout_ends_quietly_without_a_traceback(
    keep: int, shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    """`detect predict ... | head -n K`: head exits early, the writes after get EPIPE."""
    out = tmp_path / "out"
    script = 'set -o pipefail; "$0" -m detect predict "$1" --model "$2" --out "$3" --score 0 '
    script += '| head -n "$4"'
    args = [sys.executable, shapes_small / "images", mask_model, out, keep]
    result = subprocess.run(
        ["bash", "-c", script, *map(str, args)], capture_output=True, text=True, timeout=600
    )
    for text in ("Traceback", "Exception ignored", "BrokenPipeError", "Broken pipe"):
        assert text not in result.stderr, result.stderr[-3000:]
    assert result.returncode in (0, 1), result.stderr[-3000:]  # pipefail: detect's own code
    lines = _lines(result.stdout)
    assert len(lines) == keep
    predictions = _predictions(out)  # an interrupted run keeps what it has done
    if lines:
        assert lines[0].image == predictions[0]["file_name"]


# --------------------------------------------------------------------------- bad flags


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--max-mp", "0"], "--max-mp 0.0: use more than 0"),
        (["--polygon-tolerance", "-1"], "--polygon-tolerance -1.0: use 0 or more"),
        (["--score", "1.5"], "--score 1.5: use a value in [0, 1]"),
        (["--max-detections", "0"], "--max-detections 0: use 1 or more"),
    ],
)
def test_bad_flag_values_fail_before_any_work(
    flags: list[str], says: str, shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _predict(shapes_small / "images", "--model", mask_model, "--out", out, *flags)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {says}" or says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_out_that_is_a_file_is_refused(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "afile"
    out.write_text("keep me")
    result = _predict(shapes_small / "images", "--model", mask_model, "--out", out)
    assert result.returncode == 2
    assert "is a file; give a folder" in result.stderr and "Traceback" not in result.stderr
    assert out.read_text() == "keep me"

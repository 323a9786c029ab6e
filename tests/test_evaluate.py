"""`detect eval`: COCO AP/AR identical to pycocotools, the project's own metrics on hand-computed
cases, every prediction source (file, model, checkpoint, server), and bad input. The real CLI
runs in a subprocess on real files; pycocotools is called directly as the reference."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import run_detect
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from serving import start_server

from detect.metrics.coco import STAT_NAMES, load_gt, run_cocoeval
from detect.metrics.confusion import confusion_matrix
from detect.metrics.operating_point import (
    best_f1,
    counts_at,
    matches_from_cocoeval,
    mean_matched_iou,
)
from detect.metrics.proposals import proposal_recall

# --------------------------------------------------------------------------- synthetic sets


def _rect_rle(x: float, y: float, w: float, h: float, height: int, width: int) -> dict:
    polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    rle = mask_utils.merge(mask_utils.frPyObjects(polygon, height, width))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def synthetic_set(seed: int, crowd: bool, many: bool) -> tuple[dict, list[dict]]:
    """A GT (images of 3 sizes, 3 categories with objects + 1 without, crowd regions,
    images without objects) and predictions (jittered true boxes, duplicates, false alarms,
    images without predictions, and with ``many`` one image with 150 detections)."""
    rng = np.random.default_rng(seed)
    sizes = [(120, 160), (200, 200), (90, 300)]
    images, annotations, predictions = [], [], []
    for i in range(12):
        h, w = sizes[i % 3]
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": h, "width": w})
        if i == 5:
            continue  # an image without objects
        for _ in range(int(rng.integers(1, 6))):
            bw, bh = rng.uniform(4, min(w, h) * 0.6, size=2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = int(rng.integers(1, 4))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]],
                }
            )
            if i in (3, 7):
                continue  # images without predictions
            for _ in range(int(rng.integers(0, 3))):
                jx, jy = rng.normal(0, 0.08 * bw), rng.normal(0, 0.08 * bh)
                box = [x + jx, y + jy, bw * rng.uniform(0.8, 1.2), bh * rng.uniform(0.8, 1.2)]
                guess = cat if rng.random() < 0.85 else int(rng.integers(1, 5))
                predictions.append(_prediction(i + 1, guess, box, float(rng.random()), h, w))
        if crowd and i % 4 == 1:
            x, y = 5.0, 5.0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [x, y, 40.0, 30.0],
                    "area": 1200.0,
                    "iscrowd": 1,
                    "segmentation": _rect_rle(x, y, 40, 30, h, w),
                }
            )
            predictions.append(_prediction(i + 1, 1, [8, 8, 20, 15], 0.77, h, w))
        for _ in range(int(rng.integers(0, 3))):  # false alarms
            box = [rng.uniform(0, w - 20), rng.uniform(0, h - 20), 15.0, 12.0]
            predictions.append(
                _prediction(i + 1, int(rng.integers(1, 5)), box, float(rng.random()), h, w)
            )
    if many:
        h, w = sizes[0]
        for _ in range(150):
            box = [rng.uniform(0, 100), rng.uniform(0, 60), 30.0, 30.0]
            predictions.append(_prediction(1, 1, box, float(rng.random()), h, w))
    categories = [{"id": c, "name": n} for c, n in enumerate(["a", "b", "c", "unseen"], 1)]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return gt, predictions


def _prediction(image_id: int, cat: int, box: list[float], score: float, h: int, w: int) -> dict:
    x, y, bw, bh = (float(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [x, y, bw, bh],
        "score": score,
        "segmentation": _rect_rle(x, y, bw, bh, h, w),
    }


def _pycocotools_stats(gt: dict, predictions: list[dict], iou_type: str) -> list[float | None]:
    """COCOeval's 12 numbers as metrics.json holds them: its -1 (nothing to measure) as null."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(predictions)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [None if v == -1 else float(v) for v in evaluator.stats]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- pycocotools equality


@pytest.mark.parametrize(
    ("seed", "crowd", "many"),
    [(0, False, False), (1, True, False), (2, True, True), (3, False, True)],
)
def test_coco_stats_are_identical_to_pycocotools(
    tmp_path: Path, seed: int, crowd: bool, many: bool
) -> None:
    gt, predictions = synthetic_set(seed, crowd, many)
    gt_path = _write(tmp_path / "gt.json", gt)
    preds = _write(tmp_path / "preds.json", predictions)
    result = run_detect("eval", "--gt", gt_path, "--predictions", preds, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    for iou_type in ("bbox", "segm"):
        expected = _pycocotools_stats(gt, predictions, iou_type)
        assert [metrics[iou_type][name] for name in STAT_NAMES] == expected, iou_type
    assert metrics["bbox"]["APl"] is None or any(a["area"] > 96**2 for a in gt["annotations"])
    # per-class AP/AP50: COCOeval restricted to that category, all areas
    coco = load_gt(gt_path)
    for category in coco.loadCats(coco.getCatIds()):
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(coco, coco.loadRes(copy.deepcopy(predictions)), "bbox")
            evaluator.params.catIds = [category["id"]]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        row = metrics["per_class"][category["name"]]
        for name, value in (("AP", evaluator.stats[0]), ("AP50", evaluator.stats[1])):
            if value == -1:  # no ground truth of that class
                assert row[name] is None
            else:
                assert row[name] == pytest.approx(value, abs=1e-12)
    assert metrics["per_class"]["unseen"]["AP"] is None  # no ground truth


def test_polygon_predictions_score_as_their_rle(tmp_path: Path) -> None:
    gt, predictions = synthetic_set(4, crowd=True, many=False)
    polygons = copy.deepcopy(predictions)
    for p in polygons:
        x, y, w, h = p["bbox"]
        p["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        del p["bbox"]  # segmentation only: pycocotools' loadRes path for masks
    rles = copy.deepcopy(predictions)
    for p in rles:
        del p["bbox"]
    gt_path = _write(tmp_path / "gt.json", gt)
    outs = {}
    for name, preds in (("poly", polygons), ("rle", rles)):
        result = run_detect(
            "eval",
            "--gt",
            gt_path,
            "--predictions",
            _write(tmp_path / f"{name}.json", preds),
            "--out",
            tmp_path / name,
            "--iou-type",
            "segm",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        outs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert outs["poly"]["segm"] == outs["rle"]["segm"]
    assert [outs["rle"]["segm"][n] for n in STAT_NAMES] == _pycocotools_stats(gt, rles, "segm")


# --------------------------------------------------------------------------- hand-computed cases


def _fixture() -> tuple[COCO, list[dict]]:
    """One 100x200 image. Objects: a (cat 1) [0,0,10,10], b (cat 1) [20,0,10,10], c (cat 2)
    [40,0,10,10], and a cat-1 crowd region [60,0,20,20]. Detections:
    d7 cat1 on c .95 (wrong class), d1 cat1 on a .9, d2 cat1 shifted onto a .8 (duplicate),
    d3 cat1 on b (IoU .8) .7, d4 cat1 inside the crowd .6, d5 cat2 on c .4, d6 cat2 nowhere .3."""
    gt = {
        "images": [{"id": 1, "file_name": "x.jpg", "height": 100, "width": 200}],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10], "area": 100},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [40, 0, 10, 10], "area": 100},
            {
                "id": 4,
                "image_id": 1,
                "category_id": 1,
                "bbox": [60, 0, 20, 20],
                "area": 400,
                "iscrowd": 1,
            },
        ],
    }
    dets = [
        (1, [40, 0, 10, 10], 0.95),
        (1, [0, 0, 10, 10], 0.9),
        (1, [1, 0, 10, 10], 0.8),
        (1, [20, 0, 10, 8], 0.7),
        (1, [62, 2, 10, 10], 0.6),
        (2, [40, 0, 10, 10], 0.4),
        (2, [150, 80, 5, 5], 0.3),
    ]
    results = [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for c, b, s in dets]
    for ann in gt["annotations"]:
        ann.setdefault("iscrowd", 0)
    coco = COCO()
    coco.dataset = gt
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, results


def test_precision_recall_f1_best_threshold_and_matched_iou_by_hand() -> None:
    gt, results = _fixture()
    matches = matches_from_cocoeval(run_cocoeval(gt, results, "bbox"))
    one = counts_at(matches, 0.5, 1)  # d7 FP, d1 TP, d2 FP, d3 TP, d4 ignored (crowd)
    assert (one.tp, one.fp, one.fn) == (2, 2, 0)
    assert (one.precision, one.recall) == (0.5, 1.0) and one.f1 == pytest.approx(2 / 3)
    two = counts_at(matches, 0.5, 2)  # nothing of class 2 scores >= 0.5
    assert (two.tp, two.fp, two.fn, two.precision, two.recall, two.f1) == (0, 0, 1, 0, 0, 0)
    overall = counts_at(matches, 0.5)
    assert (overall.tp, overall.fp, overall.fn) == (2, 2, 1)
    assert overall.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    low = counts_at(matches, 0.0, 2)  # d5 TP, d6 FP
    assert (low.tp, low.fp, low.fn) == (1, 1, 0)
    assert best_f1(matches, 1) == (0.7, pytest.approx(2 / 3))  # after d3: P .5, R 1
    assert best_f1(matches, 2) == (0.4, 1.0)  # d5 alone: P 1, R 1
    assert mean_matched_iou(matches, 0.5) == pytest.approx((1.0 + 0.8) / 2)


def test_confusion_matrix_with_background_by_hand() -> None:
    gt, results = _fixture()
    matrix, categories = confusion_matrix(gt, results, "bbox", 0.5)
    assert categories == [1, 2]
    # d7 takes c: true two, predicted one; d1 takes a; d2 overlaps only the taken a: false alarm;
    # d3 takes b; d4 sits in the crowd region: ignored; nothing missed
    assert matrix.tolist() == [[2, 0, 0], [1, 0, 0], [1, 0, 0]]
    matrix, _ = confusion_matrix(gt, results, "bbox", 0.35)  # adds d5: c is taken -> false alarm
    assert matrix.tolist() == [[2, 0, 0], [1, 0, 0], [1, 1, 0]]
    matrix, _ = confusion_matrix(gt, results, "bbox", 0.99)  # nothing kept: all three missed
    assert matrix.tolist() == [[0, 0, 2], [0, 0, 1], [0, 0, 0]]


def test_proposal_recall_by_hand() -> None:
    gt, _ = _fixture()
    proposals = {
        1: np.array(
            [
                [0, 0, 10, 10],  # a, IoU 1
                [20, 0, 30, 7],  # b, IoU 0.7
                [40, 0, 50, 6],  # c, IoU 0.6
                [60, 0, 80, 20],  # the crowd region: not an object
            ]
            + [[150, 80, 155, 85]] * 200
            + [[20, 0, 30, 10]],  # b exactly, but only at rank 206
            dtype=np.float64,
        )
    }
    recall = proposal_recall(gt, proposals, top_k=(1, 3, 300), ious=(0.5, 0.7))
    assert recall["objects"] == 3 and recall["proposals_per_image"] == 205
    assert recall["iou_0.5"] == {"top_1": 1 / 3, "top_3": 1.0, "top_300": 1.0}
    assert recall["iou_0.7"] == {"top_1": 1 / 3, "top_3": 2 / 3, "top_300": 2 / 3}
    assert proposal_recall(gt, {})["iou_0.5"]["top_100"] == 0.0


# --------------------------------------------------------------------------- sources end to end


@pytest.fixture(scope="module")
def val_gt(shapes_small: Path) -> Path:
    """The tiny models' training split: the only images they find much on."""
    return shapes_small / "train.json"


@pytest.mark.slow
def test_model_server_and_checkpoint_sources_write_the_full_report(
    val_gt: Path, mask_model: Path, tiny_runs: dict, tmp_path: Path
) -> None:
    pinned = ("--backend", "onnxruntime")  # the same engine on both sides: identical numbers
    local = run_detect(
        "eval", "--gt", str(val_gt), "--model", str(mask_model), "--out", str(tmp_path / "m"),
        *pinned,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    server = start_server(mask_model, *pinned)
    try:
        remote = run_detect(
            "eval", "--gt", str(val_gt), "--server", server.address, "--out", str(tmp_path / "s")
        )
    finally:
        assert server.stop() == 0
    assert remote.returncode == 0, remote.stderr[-3000:]
    by_model = json.loads((tmp_path / "m/metrics.json").read_text())
    by_server = json.loads((tmp_path / "s/metrics.json").read_text())
    for key in ("bbox", "segm", "per_class", "operating_point", "mean_iou_matched"):
        assert by_server[key] == by_model[key], key
    predictions = json.loads((tmp_path / "m/predictions.json").read_text())
    assert predictions and all("segmentation" in p for p in predictions)
    assert json.loads((tmp_path / "s/predictions.json").read_text()) == predictions
    for name in ("metrics.json", "report.md", "pr_curves.png", "confusion_matrix.png"):
        assert (tmp_path / "m" / name).stat().st_size > 0, name
    assert "AP50" in local.stdout and "precision" in local.stdout
    assert by_model["speed"]["images"] == 8 and by_model["speed"]["ms_per_image"] > 0

    checkpoint = run_detect(
        "eval",
        "--gt",
        str(val_gt),
        "--checkpoint",
        str(tiny_runs["mask_rcnn", "align"]),
        "--out",
        str(tmp_path / "c"),
    )
    assert checkpoint.returncode == 0, checkpoint.stderr[-3000:]
    by_checkpoint = json.loads((tmp_path / "c/metrics.json").read_text())
    recall = by_checkpoint["proposal_recall"]
    assert set(recall) >= {"iou_0.5", "iou_0.7", "objects", "proposals_per_image"}
    assert 0 <= recall["iou_0.7"]["top_100"] <= recall["iou_0.5"]["top_100"] <= 1
    assert "RPN proposal recall" in (tmp_path / "c/report.md").read_text()

    rescored = run_detect(
        "eval",
        "--gt",
        str(val_gt),
        "--predictions",
        str(tmp_path / "m/predictions.json"),
        "--out",
        str(tmp_path / "r"),
        "--score",
        "0.5",
    )
    assert rescored.returncode == 0, rescored.stderr[-3000:]
    again = json.loads((tmp_path / "r/metrics.json").read_text())
    assert again["bbox"] == by_model["bbox"] and again["segm"] == by_model["segm"]


def test_predict_output_is_scored_by_file_name_with_its_threshold_and_why_its_ap_is_lower(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    """detect predict numbers the images of a folder 1..N; the training split's ground truth
    holds 8 of its 12 images under other ids: eval matches the results by file_name, reuses
    predict's threshold as its operating one and says why the AP is not eval --model's."""
    predicted = run_detect(
        "predict", str(shapes_small / "images"), "--model", str(mask_model),
        "--out", str(tmp_path / "p"), "--score", "0.3",
    )  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    record = json.loads((tmp_path / "p/predict.json").read_text())
    card = json.loads(mask_model.with_suffix(".json").read_text())
    assert record["model"] == {
        "name": "tiny_mask",
        "file": str(mask_model),
        "sha256": card["sha256"],
    }
    assert (record["score_threshold"], record["polygon_tolerance"]) == (0.3, 1.0)
    predictions = json.loads((tmp_path / "p/predictions.json").read_text())
    for p in predictions:  # the stated precision: boxes 0.01 px, polygons 0.1 px, scores 1e-4
        assert [round(v, 2) for v in p["bbox"]] == p["bbox"] and round(p["score"], 4) == p["score"]
        assert all(round(v, 1) == v for ring in p["segmentation"] for v in ring)
    line = re.compile(r"^[^,]+(,\d+\.\d\d){4},[a-z]+,[01]\.\d{4}$")
    assert predicted.stdout and all(line.match(x) for x in predicted.stdout.splitlines())
    gt = shapes_small / "train.json"
    assert {i["id"] for i in json.loads(gt.read_text())["images"]} != set(range(1, 9))

    result = run_detect(
        "eval", "--gt", str(gt), "--predictions", str(tmp_path / "p/predictions.json"),
        "--out", str(tmp_path / "e"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    why = (
        "note: these predictions were made by detect predict at score >= 0.3 with polygons "
        "simplified by 1 px (predict.json): AP from them is lower than detect eval --model's"
    )
    assert why in result.stdout and "at score >= 0.3 (bbox, IoU 0.5)" in result.stdout
    assert why in (tmp_path / "e/report.md").read_text()
    metrics = json.loads((tmp_path / "e/metrics.json").read_text())
    assert metrics["predictions"]["matched_by"] == "file_name"
    assert metrics["predictions"]["predict"]["score_threshold"] == 0.3
    assert metrics["operating_point"]["score_threshold"] == 0.3
    assert metrics["bbox"]["AP50"] > 0.5  # the results were put on their own images
    given = run_detect(
        "eval", "--gt", str(gt), "--predictions", str(tmp_path / "p/predictions.json"),
        "--out", str(tmp_path / "g"), "--score", "0.8",
    )  # fmt: skip
    assert given.returncode == 0, given.stderr[-3000:]
    assert "at score >= 0.8 (bbox, IoU 0.5)" in given.stdout


def test_eval_of_a_model_shows_plain_progress_lines_in_a_log(
    val_gt: Path, mask_model: Path, tmp_path: Path
) -> None:
    result = run_detect(
        "eval", "--gt", str(val_gt), "--model", str(mask_model), "--out", str(tmp_path / "m")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stderr
    final = r"^eval: 8/8 images, [\d.e-]+ images/s, took \d+:\d\d:\d\d$"
    assert re.search(final, result.stderr, re.MULTILINE), result.stderr
    assert "eval:" not in result.stdout and "AP50" in result.stdout


# --------------------------------------------------------------------------- bad input


def _bad_predictions(gt: dict, predictions: list[dict]) -> dict[str, tuple[object, str]]:
    first = predictions[0]
    no_score = {k: v for k, v in first.items() if k != "score"}
    return {
        "malformed": ("[{not json", "not valid JSON"),
        "not-a-list": ({"image_id": 1}, "JSON list"),
        "unknown-image": (
            [{**first, "image_id": 999}],
            "image_id 999 is not an image of the ground truth (ids 1..",
        ),
        "unknown-file-name": (
            [{**first, "image_id": 999, "file_name": "elsewhere/x.png"}],
            "neither its image_id 999 nor its file_name 'elsewhere/x.png' is an image of the "
            "ground truth",
        ),
        "unknown-category": ([{**first, "category_id": 77}], "category_id 77"),
        "missing-score": ([no_score], "score"),
        "negative-box": ([{**first, "bbox": [1, 1, -3, 4]}], "negative"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "malformed",
        "not-a-list",
        "unknown-image",
        "unknown-file-name",
        "unknown-category",
        "missing-score",
        "negative-box",
    ],
)
def test_bad_predictions_are_one_clear_line_and_exit_1(tmp_path: Path, case: str) -> None:
    gt, predictions = synthetic_set(0, crowd=False, many=False)
    content, fragment = _bad_predictions(gt, predictions)[case]
    preds = tmp_path / "preds.json"
    preds.write_text(content if isinstance(content, str) else json.dumps(content))
    result = run_detect(
        "eval",
        "--gt",
        str(_write(tmp_path / "gt.json", gt)),
        "--predictions",
        str(preds),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert str(preds) in errors[0]


def test_empty_predictions_score_zero_and_undefined_where_cocoeval_has_no_ground_truth(
    tmp_path: Path,
) -> None:
    gt, _ = synthetic_set(0, crowd=False, many=False)
    result = run_detect(
        "eval",
        "--gt",
        str(_write(tmp_path / "gt.json", gt)),
        "--predictions",
        str(_write(tmp_path / "preds.json", [])),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    large = any(a["area"] > 96**2 for a in gt["annotations"])
    for name in STAT_NAMES:
        expected = None if name in ("APl", "ARl") and not large else 0.0  # pycocotools' -1
        assert metrics["bbox"][name] == expected, name
    if not large:  # the terminal says n/a, and why
        assert re.search(r"^bbox .* n/a$", result.stdout, re.M), result.stdout
        assert "n/a (APl): the ground truth has no large (> 96x96 px) objects" in result.stdout
    assert "segm" not in metrics  # no masks to score
    op = metrics["operating_point"]
    assert (op["tp"], op["fp"], op["precision"], op["recall"]) == (0, 0, 0.0, 0.0)
    assert op["fn"] == len(gt["annotations"])


def test_bad_ground_truth_and_flags(tmp_path: Path, mask_model: Path) -> None:
    gt, predictions = synthetic_set(0, crowd=False, many=False)
    preds = str(_write(tmp_path / "preds.json", predictions))
    boxes_only = [{k: v for k, v in p.items() if k != "segmentation"} for p in predictions]
    boxes_gt = {
        **gt,
        "annotations": [
            {k: v for k, v in a.items() if k != "segmentation"} for a in gt["annotations"]
        ],
    }
    box_gt = str(_write(tmp_path / "boxgt.json", boxes_gt))
    wrong_rle = [{**predictions[0], "segmentation": {"size": [1, 1], "counts": "01"}}]
    wrong_size = str(_write(tmp_path / "size.json", wrong_rle))
    empty_gt = _write(tmp_path / "empty.json", {**gt, "annotations": []})
    cases = [
        (["--gt", str(empty_gt), "--predictions", preds], 1, "no annotations"),
        (["--gt", str(tmp_path / "none.json"), "--predictions", preds], 1, "not found"),
        (
            ["--gt", str(_write(tmp_path / "bad.json", {"x": 1})), "--predictions", preds],
            1,
            "images",
        ),
        (["--gt", str(tmp_path / "none.json")], 2, "give exactly one of --predictions"),
        (
            ["--gt", preds, "--predictions", preds, "--model", str(mask_model)],
            2,
            "not allowed with",
        ),
        (
            [
                "--gt",
                str(_write(tmp_path / "gt.json", gt)),
                "--predictions",
                str(_write(tmp_path / "boxes.json", boxes_only)),
                "--iou-type",
                "segm",
            ],
            1,
            "no masks",
        ),
        (["--gt", str(tmp_path / "gt.json"), "--predictions", preds, "--score", "2"], 2, "--score"),
        (["--gt", box_gt, "--predictions", preds, "--iou-type", "segm"], 1, "no segmentation"),
        (["--gt", str(tmp_path / "gt.json"), "--predictions", wrong_size], 1, "RLE size"),
    ]
    for args, code, fragment in cases:
        result = run_detect("eval", *args, "--out", str(tmp_path / "out"))
        assert result.returncode == code, (args, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_unreadable_image_is_reported_and_the_others_are_scored(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    gt = json.loads((shapes_small / "val.json").read_text())
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(gt["images"]):
        source = shapes_small / image["file_name"]
        target = images / image["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"broken" if i == 0 else source.read_bytes())
    result = run_detect(
        "eval",
        "--gt",
        str(shapes_small / "val.json"),
        "--images",
        str(images),
        "--model",
        str(mask_model),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and gt["images"][0]["file_name"] in errors[0]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["images"] == {
        "evaluated": len(gt["images"]) - 1,
        "failed": [gt["images"][0]["id"]],
    }

"""`detect eval`: score predictions against COCO ground truth and write the report.

Exactly one source of predictions: a COCO results file, an exported model (local ONNX Runtime),
a training checkpoint (PyTorch; also gives the RPN's proposal recall) or a running server (the
gRPC API). Model, checkpoint and server predictions are written to ``OUT/predictions.json``
before any scoring, so a run can be re-scored with ``--predictions``.

COCO AP/AR are pycocotools' COCOeval, wrapped. What it does not give (P/R/F1 at the operating
threshold, best-F1 thresholds, matched IoU, the confusion matrix, proposal recall) comes from
`detect.metrics`. The detection sources ask for every detection the graph keeps (down to its
own score threshold, at most 100 per image) so that AP sees the low-score tail; ``score`` is the
operating threshold of the P/R/F1 figures and the confusion matrix. Masks are compared as RLE
of the polygons' pixels (holes kept), traced without simplification.
"""

from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tqdm import tqdm

from detect.data.coco import load_json, mask_to_rle, read_json
from detect.errors import ConfigError, DataError, DetectError
from detect.metrics.coco import STAT_NAMES, load_gt, per_class_ap, run_cocoeval, summary
from detect.metrics.confusion import confusion_matrix
from detect.metrics.operating_point import (
    best_f1,
    counts_at,
    matches_from_cocoeval,
    mean_matched_iou,
)
from detect.metrics.plots import Plotter, plot_confusion, plot_pr_curves, pr_curves
from detect.metrics.proposals import proposal_recall

if TYPE_CHECKING:  # the runtime (ONNX Runtime, shapely) loads only for the sources that use it
    from detect.runtime.detector import Detection

IOU_TYPES = ("bbox", "segm", "both")
DEFAULT_SCORE = 0.5
MAX_DETECTIONS = 100  # COCOeval's largest maxDets


@dataclass
class EvalConfig:
    """Settings of `detect eval` (see the module docstring).

    ``iou_type`` None: "both" when the predictions have masks, else "bbox". ``score`` None: the
    model card's default threshold for model and server sources, else 0.5. ``agnostic_nms``
    (model and server sources) None: the model card's default.
    """

    gt: Path
    out: Path
    predictions: Path | None = None
    model: Path | None = None
    checkpoint: Path | None = None
    server: str | None = None
    images: Path | None = None
    iou_type: str | None = None
    score: float | None = None
    agnostic_nms: bool | None = None
    device: str = "auto"
    tls: bool = False
    ca: Path | None = None
    token: str | None = None

    def source(self) -> str:
        given = [
            name
            for name in ("predictions", "model", "checkpoint", "server")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of --predictions, --model, --checkpoint, --server "
                f"(got {', '.join('--' + g for g in given) or 'none'})"
            )
        return given[0]

    def validate(self) -> str:
        """Check the flags; the source's name."""
        source = self.source()
        if self.iou_type is not None and self.iou_type not in IOU_TYPES:
            raise ConfigError(f"--iou-type {self.iou_type}: use bbox, segm or both")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ConfigError(f"--score {self.score}: use a threshold from 0 to 1")
        if self.agnostic_nms and source not in ("model", "server"):
            raise ConfigError(
                f"--agnostic-nms with --{source}: it is the runtime's postprocessing, so it "
                "applies to --model and --server only; leave it out"
            )
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")
        for flag in ("predictions", "model", "checkpoint"):
            path = getattr(self, flag)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"--{flag} {path}: no such file")
        return source


@dataclass
class Predicted:
    """A source's results, the images that failed, and how long predicting took."""

    results: list[dict[str, Any]]
    has_masks: bool
    default_score: float
    failed: dict[int, str] = field(default_factory=dict)  # image id -> reason
    seconds: float = 0.0
    images: int = 0
    proposals: dict[int, np.ndarray] | None = None


# --------------------------------------------------------------------------- ground truth


def _read_gt(config: EvalConfig) -> tuple[dict[str, Any], COCO]:
    data = read_json(config.gt)
    if not data["annotations"]:
        raise DataError(
            f"{config.gt} has no annotations: there is nothing to evaluate against; "
            "point --gt at the annotated split"
        )
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= ann.keys():
            raise DataError(f"{config.gt}: every annotation needs image_id, category_id and bbox")
    return data, load_gt(config.gt, data=data)


def _image_paths(config: EvalConfig, data: dict[str, Any]) -> dict[int, Path]:
    root = config.images if config.images is not None else config.gt.parent
    return {int(img["id"]): root / img["file_name"] for img in data["images"]}


def _check_categories(model_ids: list[int], names: list[str], gt: COCO, what: str) -> None:
    gt_names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    wrong = [
        f"{name} (id {cid})"
        for cid, name in zip(model_ids, names, strict=True)
        if gt_names.get(cid) != name
    ]
    if wrong:
        raise DataError(
            f"{what} predicts {', '.join(wrong)}, which the ground truth does not have under "
            f"the same id (it has {', '.join(f'{n} (id {i})' for i, n in gt_names.items())}); "
            "evaluate on data with the model's categories"
        )


# --------------------------------------------------------------------------- predictions file


def read_predictions(path: Path, gt: COCO) -> list[dict[str, Any]]:
    """A COCO results file, checked against ``gt``: each item needs a known ``image_id`` and
    ``category_id``, a finite ``score`` and a ``bbox`` ``[x, y, w, h]`` with w, h >= 0 and/or a
    ``segmentation`` (polygons or RLE; polygons are converted to RLE, which is all pycocotools'
    ``loadRes`` takes, rasterised as pycocotools rasterises them)."""
    data = load_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of COCO results ({{image_id, ...}})")
    images, categories = set(gt.getImgIds()), set(gt.getCatIds())
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object with image_id, category_id, score, bbox")
        if item.get("image_id") not in images:
            raise DataError(
                f"{where}: image_id {item.get('image_id')!r} is not in the ground truth "
                f"({len(images)} images); were these predictions made on another split?"
            )
        if item.get("category_id") not in categories:
            raise DataError(
                f"{where}: category_id {item.get('category_id')!r} is not a ground-truth "
                f"category (known: {sorted(categories)})"
            )
        score = item.get("score")
        numeric = isinstance(score, int | float) and not isinstance(score, bool)
        if not numeric or not math.isfinite(score):
            raise DataError(f"{where}: needs a numeric 'score' (got {score!r})")
        bbox = item.get("bbox")
        if bbox is None and "segmentation" not in item:
            raise DataError(f"{where}: needs a 'bbox' [x, y, w, h] or a 'segmentation'")
        if bbox is not None:
            if (
                not isinstance(bbox, list)
                or len(bbox) != 4
                or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
            ):
                raise DataError(f"{where}: 'bbox' must be 4 numbers [x, y, w, h] (got {bbox!r})")
            if bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{where}: bbox {bbox} has a negative width or height")
        segmentation = item.get("segmentation")
        if isinstance(segmentation, list):  # polygons: pycocotools' loadRes only takes RLE
            image = gt.imgs[item["image_id"]]
            try:
                rles = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
            except Exception:
                raise DataError(
                    f"{where}: 'segmentation' must be polygons [[x1, y1, x2, y2, ...], ...] "
                    "or an RLE {size, counts}"
                ) from None
            rle = mask_utils.merge(rles)
            item["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        elif segmentation is not None:
            if not (isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys()):
                raise DataError(
                    f"{where}: 'segmentation' must be polygons or an RLE {{size, counts}}"
                )
            image = gt.imgs[item["image_id"]]
            if list(segmentation["size"]) != [image["height"], image["width"]]:
                raise DataError(
                    f"{where}: RLE size {segmentation['size']} is not the image's "
                    f"[height, width] [{image['height']}, {image['width']}]"
                )
    return data


# --------------------------------------------------------------------------- detection sources


def _f32(value: float) -> float:
    return float(np.float32(value))


def detection_result(
    image_id: int, detection: Detection, height: int, width: int, masks: bool
) -> dict[str, Any]:
    """A COCO result for a runtime/server `Detection` (numbers rounded to float32, as the API
    carries them, so local and server sources give identical results)."""
    result = {
        "image_id": image_id,
        "category_id": detection.class_id,
        "bbox": [
            _f32(detection.left),
            _f32(detection.top),
            _f32(detection.width),
            _f32(detection.height),
        ],
        "score": _f32(detection.score),
    }
    if masks:
        from detect.runtime.polygons import polygons_to_mask

        result["segmentation"] = mask_to_rle(polygons_to_mask(detection.polygons, height, width))
    return result


DETECT_OPTIONS = {"max_detections": MAX_DETECTIONS, "polygon_tolerance": 0.0}


def _progress(total: int, source: str) -> tqdm:
    return tqdm(
        total=total, desc=f"predicting ({source})", unit="img", disable=not sys.stderr.isatty()
    )


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read it ({exc.strerror})") from None


def predict_with_model(config: EvalConfig, paths: dict[int, Path], gt: COCO) -> Predicted:
    from detect.runtime.detector import Detector

    detector = Detector(config.model, device=config.device)
    card = detector.card
    _check_categories(card.category_ids, card.labels, gt, f"model {config.model}")
    predicted = Predicted([], card.has_masks, float(card.thresholds["score"]))
    started = time.perf_counter()
    with _progress(len(paths), "model") as bar:
        for image_id, path in paths.items():
            try:
                rgb = detector.prepare(_read_image(path))
            except DetectError as exc:
                predicted.failed[image_id] = f"{path}: {exc}"
                bar.update()
                continue
            h, w = rgb.shape[:2]
            detections = detector.postprocess(
                detector.infer(rgb),
                h,
                w,
                score_threshold=0.0,
                agnostic_nms=config.agnostic_nms,
                polygons=card.has_masks,
                **DETECT_OPTIONS,
            )
            predicted.results += [
                detection_result(image_id, d, h, w, card.has_masks) for d in detections
            ]
            bar.update()
    predicted.seconds = time.perf_counter() - started
    predicted.images = len(paths) - len(predicted.failed)
    return predicted


def predict_with_server(config: EvalConfig, paths: dict[int, Path], gt: COCO) -> Predicted:
    from detect.client import DetectorClient, ServerError

    client = DetectorClient(
        config.server, tls=config.tls, ca=config.ca, token=config.token, timeout=300
    )
    with client:
        info = client.model_info()
        _check_categories(
            [c.class_id for c in info.classes],
            [c.name for c in info.classes],
            gt,
            f"the model served at {config.server}",
        )
        predicted = Predicted([], info.has_masks, float(info.default_score_threshold))

        def one(item: tuple[int, Path]) -> tuple[int, Path, Any]:
            image_id, path = item
            try:
                data = _read_image(path)
                return (
                    image_id,
                    path,
                    client.detect(
                        data,
                        score_threshold=0.0,
                        agnostic_nms=config.agnostic_nms,
                        polygons=info.has_masks,
                        **DETECT_OPTIONS,
                    ),
                )
            except DataError as exc:
                return image_id, path, exc
            except ServerError as exc:
                if exc.code.name != "INVALID_ARGUMENT":
                    raise
                return image_id, path, exc

        started = time.perf_counter()
        with _progress(len(paths), "server") as bar, ThreadPoolExecutor(8) as pool:
            for image_id, path, answer in pool.map(one, paths.items()):
                if isinstance(answer, DetectError):
                    predicted.failed[image_id] = f"{path}: {answer}"
                else:
                    predicted.results += [
                        detection_result(image_id, d, answer.height, answer.width, info.has_masks)
                        for d in answer.detections
                    ]
                bar.update()
        predicted.seconds = time.perf_counter() - started
    predicted.images = len(paths) - len(predicted.failed)
    return predicted


def predict_with_checkpoint(config: EvalConfig, paths: dict[int, Path], gt: COCO) -> Predicted:
    try:
        import torch

        from detect.models.checkpoint import load_checkpoint, model_from_checkpoint
        from detect.models.infer import to_coco_results
    except ImportError:
        raise ConfigError("--checkpoint needs torch: install the `train` extra") from None
    from detect.runtime.image import decode_image

    ckpt = load_checkpoint(config.checkpoint)
    category_ids = [int(c) for c in ckpt["category_ids"]]
    _check_categories(category_ids, list(ckpt["labels"]), gt, f"checkpoint {config.checkpoint}")
    model = model_from_checkpoint(ckpt).eval()
    has_masks = model.roi_heads.has_mask()
    captured: dict[str, Any] = {}
    model.transform.register_forward_hook(lambda m, i, o: captured.update(sizes=o[0].image_sizes))
    model.rpn.register_forward_hook(lambda m, i, o: captured.update(proposals=o[0]))
    predicted = Predicted([], has_masks, DEFAULT_SCORE, proposals={})
    started = time.perf_counter()
    with torch.inference_mode(), _progress(len(paths), "checkpoint") as bar:
        for image_id, path in paths.items():
            try:
                rgb = decode_image(_read_image(path))
            except DetectError as exc:
                predicted.failed[image_id] = f"{path}: {exc}"
                bar.update()
                continue
            tensor = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)
            (output,) = model([tensor])
            predicted.results += to_coco_results(output, image_id, category_ids)
            resized_h, resized_w = captured["sizes"][0]
            scale = np.array([rgb.shape[1] / resized_w, rgb.shape[0] / resized_h] * 2)
            predicted.proposals[image_id] = captured["proposals"][0].numpy() * scale
            bar.update()
    predicted.seconds = time.perf_counter() - started
    predicted.images = len(paths) - len(predicted.failed)
    return predicted


# --------------------------------------------------------------------------- scoring and report


@dataclass
class EvalResult:
    """What `evaluate` measured (``metrics`` is what metrics.json holds) and where it wrote."""

    metrics: dict[str, Any]
    out: Path
    failed: dict[int, str]


def _iou_types(config: EvalConfig, has_masks: bool, gt: COCO) -> list[str]:
    gt_masks = all(a.get("segmentation") for a in gt.dataset["annotations"])
    wanted = config.iou_type or ("both" if has_masks and gt_masks else "bbox")
    if wanted != "bbox" and not has_masks:
        raise ConfigError(
            f"--iou-type {wanted}: these predictions have no masks (segmentation); use bbox"
        )
    if wanted != "bbox" and not gt_masks:
        raise ConfigError(
            f"--iou-type {wanted}: some ground-truth annotations of {config.gt} have no "
            "segmentation; use bbox"
        )
    return ["bbox", "segm"] if wanted == "both" else [wanted]


def score(
    gt: COCO,
    results: list[dict[str, Any]],
    iou_types: list[str],
    threshold: float,
    plotter: Plotter | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """The metrics.json numbers. The per-class, operating-point and confusion figures use the
    first IoU type; with ``plotter`` and ``out`` its plots are queued as soon as they are known
    (drawn while the other IoU type is evaluated)."""
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    primary = iou_types[0]
    evaluator = run_cocoeval(gt, results, primary)
    metrics: dict[str, Any] = {primary: summary(evaluator)}
    matches = matches_from_cocoeval(evaluator)
    aps = per_class_ap(evaluator)
    per_class = {}
    for category, name in names.items():
        counts = counts_at(matches, threshold, category)
        best_threshold, _ = best_f1(matches, category)
        per_class[name] = {
            **aps[category],
            **counts.as_dict(),
            "best_f1_threshold": best_threshold,
        }
    overall = counts_at(matches, threshold)
    metrics["per_class"] = per_class
    metrics["operating_point"] = {
        "iou_type": primary,
        "score_threshold": threshold,
        "iou_threshold": 0.5,
        **overall.as_dict(),
    }
    metrics["mean_iou_matched"] = mean_matched_iou(matches, threshold)
    matrix, categories = confusion_matrix(gt, results, primary, threshold)
    labels = [names[c] for c in categories]
    metrics["confusion_matrix"] = {
        "labels": [*labels, "background"],
        "rows_true_columns_predicted": matrix.tolist(),
    }
    if plotter is not None and out is not None:
        title = f"PR curves ({primary}, IoU 0.5)"
        plotter.draw(plot_pr_curves, pr_curves(evaluator, names), out / "pr_curves.png", title)
        title = f"Confusion at score >= {threshold:g} ({primary}, IoU 0.5)"
        plotter.draw(plot_confusion, matrix, labels, out / "confusion_matrix.png", title)
    for iou_type in iou_types[1:]:
        metrics[iou_type] = summary(run_cocoeval(gt, results, iou_type))
    return metrics


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report_markdown(metrics: dict[str, Any], title: str) -> str:
    """``report.md``: the tables a person reads."""
    lines = [f"# {title}", ""]
    types = [t for t in ("bbox", "segm") if t in metrics]
    lines += ["## COCO AP / AR (pycocotools)", ""]
    lines += ["| metric | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for name in STAT_NAMES:
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics[t][name]) for t in types) + " |")
    op = metrics["operating_point"]
    lines += [
        "",
        f"## Per class ({op['iou_type']}; P/R/F1 at score >= {op['score_threshold']:g}, IoU 0.5)",
        "",
        "| class | AP | AP50 | precision | recall | F1 | TP | FP | FN | best-F1 threshold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in metrics["per_class"].items():
        cells = [row[k] for k in ("AP", "AP50", "precision", "recall", "f1", "tp", "fp", "fn")]
        lines.append(
            f"| {name} | "
            + " | ".join(_fmt(v) for v in cells)
            + f" | {_fmt(row['best_f1_threshold'])} |"
        )
    lines.append(
        f"| **all** | | | {_fmt(op['precision'])} | {_fmt(op['recall'])} | {_fmt(op['f1'])} | "
        f"{op['tp']} | {op['fp']} | {op['fn']} | |"
    )
    lines += ["", f"Mean IoU of matched pairs: {_fmt(metrics['mean_iou_matched'])}", ""]
    confusion = metrics["confusion_matrix"]
    labels = confusion["labels"]
    lines += [
        "## Confusion matrix (rows: true class, columns: predicted; background = missed / "
        "false alarm)",
        "",
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for label, row in zip(labels, confusion["rows_true_columns_predicted"], strict=True):
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + " |")
    if "proposal_recall" in metrics:
        recall = metrics["proposal_recall"]
        keys = [k for k in recall if k.startswith("iou_")]
        tops = list(recall[keys[0]])
        lines += [
            "",
            f"## RPN proposal recall ({recall['proposals_per_image']:.0f} proposals per image)",
            "",
            "| | " + " | ".join(tops) + " |",
            "|---|" + "---|" * len(tops),
        ]
        for key in keys:
            lines.append(f"| {key} | " + " | ".join(_fmt(recall[key][t]) for t in tops) + " |")
    speed = metrics["speed"]
    lines += ["", "## Speed", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in speed.items()]
    return "\n".join(lines) + "\n"


def stdout_table(metrics: dict[str, Any]) -> str:
    """A compact table for the terminal."""
    types = [t for t in ("bbox", "segm") if t in metrics]
    rows = [f"{'':<6}" + "".join(f"{n:>7}" for n in ("AP", "AP50", "AP75", "APs", "APm", "APl"))]
    for t in types:
        rows.append(
            f"{t:<6}"
            + "".join(f"{metrics[t][n]:>7.3f}" for n in ("AP", "AP50", "AP75", "APs", "APm", "APl"))
        )
    op = metrics["operating_point"]
    rows.append(
        f"at score >= {op['score_threshold']:g} ({op['iou_type']}, IoU 0.5): precision "
        f"{op['precision']:.3f}, recall {op['recall']:.3f}, F1 {op['f1']:.3f} "
        f"(TP {op['tp']}, FP {op['fp']}, FN {op['fn']})"
    )
    return "\n".join(rows)


def evaluate(config: EvalConfig) -> EvalResult:
    """Predict (unless given predictions), score, and write the report into ``config.out``."""
    source = config.validate()
    data, gt = _read_gt(config)
    if source == "predictions":
        started = time.perf_counter()
        results = read_predictions(config.predictions, gt)
        has_masks = bool(results) and all("segmentation" in r for r in results)
        predicted = Predicted(results, has_masks, DEFAULT_SCORE, images=len(gt.getImgIds()))
        predicted.seconds = time.perf_counter() - started
    else:
        paths = _image_paths(config, data)
        predict = {
            "model": predict_with_model,
            "server": predict_with_server,
            "checkpoint": predict_with_checkpoint,
        }[source]
        predicted = predict(config, paths, gt)
    iou_types = _iou_types(config, predicted.has_masks, gt)
    threshold = config.score if config.score is not None else predicted.default_score
    config.out.mkdir(parents=True, exist_ok=True)
    if source != "predictions":
        (config.out / "predictions.json").write_text(json.dumps(predicted.results))
    for reason in predicted.failed.values():
        print(f"error: {reason}", file=sys.stderr)
    if predicted.failed:
        kept = set(gt.getImgIds()) - set(predicted.failed)
        if not kept:
            raise DataError("no image could be predicted; see the errors above")
        gt = load_gt(config.gt, kept, data)
    started = time.perf_counter()
    plotter = Plotter()  # imports matplotlib in a helper process while COCOeval runs
    try:
        metrics = score(gt, predicted.results, iou_types, threshold, plotter, config.out)
        if predicted.proposals is not None:
            metrics["proposal_recall"] = proposal_recall(gt, predicted.proposals)
        eval_seconds = time.perf_counter() - started
        _finish_report(config, metrics, predicted, source, eval_seconds, len(gt.getImgIds()))
        plotter.finish()
    finally:
        plotter.close()
    return EvalResult(metrics, config.out, predicted.failed)


def _finish_report(
    config: EvalConfig,
    metrics: dict[str, Any],
    predicted: Predicted,
    source: str,
    eval_seconds: float,
    evaluated: int,
) -> None:
    """Add the speed and image counts to ``metrics``; write metrics.json and report.md."""
    images = predicted.images
    metrics["speed"] = {
        "source": source,
        "images": images,
        "predict_seconds": predicted.seconds,
        "images_per_second": images / predicted.seconds if predicted.seconds else None,
        "ms_per_image": 1000 * predicted.seconds / images if images else None,
        "eval_seconds": eval_seconds,
    }
    metrics["images"] = {"evaluated": evaluated, "failed": sorted(predicted.failed)}
    _write_report(config, metrics)


def _write_report(config: EvalConfig, metrics: dict[str, Any]) -> None:
    out = config.out
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    source = config.predictions or config.model or config.checkpoint or config.server
    title = f"Evaluation of {source} against {config.gt}"
    (out / "report.md").write_text(report_markdown(metrics, title))

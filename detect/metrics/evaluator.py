"""`CocoEvaluator` and `inference_on_dataset`: where predictions come from kept apart from how
they are scored (Detectron2's ``DatasetEvaluator`` and ``inference_on_dataset``).

`inference_on_dataset` runs any `detect.runtime.backend.Backend` over image files and hands each
image's detections to an evaluator's `CocoEvaluator.process`; `CocoEvaluator.evaluate` scores
what it was given with pycocotools' COCOeval, wrapped, plus what COCOeval does not give (P/R/F1
at the operating threshold, best-F1 thresholds, matched IoU, the confusion matrix, and, when the
backend exposes its RPN proposals, proposal recall) from `detect.metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from detect.data.results import coco_result
from detect.errors import DetectError
from detect.metrics.coco import defined, per_class_ap, run_cocoeval, summary
from detect.metrics.confusion import confusion_matrix
from detect.metrics.operating_point import (
    best_f1,
    counts_at,
    matches_from_cocoeval,
    mean_matched_iou,
)
from detect.metrics.plots import Plotter, plot_confusion, plot_pr_curves, pr_curves
from detect.metrics.proposals import proposal_recall
from detect.runtime.backend import Backend, Detected, detect_each
from detect.structures import DetectOptions

MAX_DETECTIONS = 100
"""COCOeval's largest ``maxDets``."""


def scoring_options(has_masks: bool, agnostic_nms: bool | None = None) -> DetectOptions:
    """What scoring asks of a backend: every detection it keeps (down to the model's own
    threshold, at most `MAX_DETECTIONS` per image), so that AP sees the low-score tail, with
    masks traced without simplification."""
    return DetectOptions(
        score_threshold=0.0,
        max_detections=MAX_DETECTIONS,
        agnostic_nms=agnostic_nms,
        polygons=has_masks,
        polygon_tolerance=0.0,
    )


class CocoEvaluator:
    """Collects COCO results image by image, then scores them against ``gt``.

    ``masks``: results carry RLE segmentations of the detections' polygons (holes kept).
    """

    def __init__(self, gt: COCO, masks: bool) -> None:
        self.gt = gt
        self.masks = masks
        self.reset()

    def reset(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.proposals: dict[int, np.ndarray] = {}
        self.failed: dict[int, str] = {}  # image id -> reason

    def process(self, image_id: int, detected: Detected) -> None:
        """One image's detections."""
        segmentation = "rle" if self.masks else None
        self.results += [
            coco_result(image_id, d, detected.image_size, segmentation) for d in detected.detections
        ]
        proposals = getattr(detected.raw, "proposals", None)
        if proposals is not None:
            self.proposals[image_id] = proposals

    def evaluate(
        self,
        iou_types: list[str],
        threshold: float,
        plotter: Plotter | None = None,
        out: Path | None = None,
    ) -> dict[str, Any]:
        """The metrics.json numbers (see `score`), with proposal recall when there were
        proposals."""
        metrics = score(self.gt, self.results, iou_types, threshold, plotter, out)
        if self.proposals:
            metrics["proposal_recall"] = proposal_recall(self.gt, self.proposals)
        return metrics


def inference_on_dataset(
    backend: Backend,
    images: dict[int, Path],
    evaluator: CocoEvaluator,
    options: DetectOptions,
    batch_size: int = 1,
    progress: Callable[[], None] = lambda: None,
) -> float:
    """Every image (id -> file) through ``backend`` into ``evaluator``; the seconds it took.

    An image that cannot be read or detected is recorded as failed (``path: reason``) and the
    others go on."""
    started = time.perf_counter()
    outcomes = detect_each(backend, images.items(), options, batch_size)
    process_outcomes(evaluator, images, outcomes, progress)
    return time.perf_counter() - started


def process_outcomes(
    evaluator: CocoEvaluator,
    images: dict[int, Path],
    outcomes: Iterable[tuple[int, Detected | DetectError]],
    progress: Callable[[], None] = lambda: None,
) -> None:
    """Each image's outcome (`detect_each`'s, made here or on Ray) into ``evaluator``: its
    detections, or ``path: reason`` as failed."""
    for image_id, detected in outcomes:
        if isinstance(detected, DetectError):
            evaluator.failed[image_id] = f"{images[image_id]}: {detected}"
        else:
            evaluator.process(image_id, detected)
        progress()


def score(
    gt: COCO,
    results: list[dict[str, Any]],
    iou_types: list[str],
    threshold: float,
    plotter: Plotter | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """The metrics.json numbers. A COCO figure with nothing to measure (no ground-truth objects
    of that size or class: pycocotools' -1) is None. The per-class, operating-point and
    confusion figures use the first IoU type; with ``plotter`` and ``out`` its plots are queued
    as soon as they are known (drawn while the other IoU type is evaluated)."""
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    primary = iou_types[0]
    evaluator = run_cocoeval(gt, results, primary)
    metrics: dict[str, Any] = {primary: defined(summary(evaluator))}
    matches = matches_from_cocoeval(evaluator)
    aps = per_class_ap(evaluator)
    per_class = {}
    for category, name in names.items():
        counts = counts_at(matches, threshold, category)
        best_threshold, _ = best_f1(matches, category)
        per_class[name] = {
            **defined(aps[category]),
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
        metrics[iou_type] = defined(summary(run_cocoeval(gt, results, iou_type)))
    return metrics

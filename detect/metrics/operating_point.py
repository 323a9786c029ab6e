"""Precision, recall and F1 at an operating score threshold, and the best-F1 threshold.

The matching is COCOeval's own, read from its ``evalImgs`` at IoU 0.5, all areas, the top 100
detections per image and category: detections in descending score order, each taking the
unmatched ground truth of its class with the highest IoU >= 0.5; a detection that only matches a
crowd region is ignored (neither a true nor a false positive) and crowd regions are not objects
to find. Because a detection's match depends only on higher-scoring ones, the matches at any
threshold are the prefix of these, so one COCOeval run serves every threshold.

Definitions: recall = true positives / objects in the ground truth; precision = true positives /
all (non-ignored) detections; F1 = 2PR / (P + R). Where a denominator is 0 the value is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools.cocoeval import COCOeval


@dataclass(frozen=True)
class Matches:
    """Every non-ignored detection with its match at IoU 0.5, and the objects to find.

    ``category``, ``score``, ``tp`` and ``iou`` are ``(D,)`` arrays (``iou`` of the matched
    object, NaN for a false positive); ``objects`` maps category id -> non-crowd ground truth.
    """

    category: np.ndarray
    score: np.ndarray
    tp: np.ndarray
    iou: np.ndarray
    objects: dict[int, int]


@dataclass(frozen=True)
class Counts:
    """True/false positives and misses, and the P/R/F1 they give."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


def matches_from_cocoeval(evaluator: COCOeval) -> Matches:
    """The matches of an evaluated COCOeval at IoU 0.5, all areas, its largest maxDets."""
    params = evaluator.params
    if not np.isclose(params.iouThrs[0], 0.5):
        raise ValueError("COCOeval's first IoU threshold must be 0.5")
    all_areas = list(params.areaRng[0])
    max_det = params.maxDets[-1]
    categories, scores, tps, ious = [], [], [], []
    objects: dict[int, int] = dict.fromkeys(map(int, params.catIds), 0)
    for entry in evaluator.evalImgs:
        if entry is None or list(entry["aRng"]) != all_areas or entry["maxDet"] != max_det:
            continue
        category = int(entry["category_id"])
        objects[category] += int(np.count_nonzero(~np.asarray(entry["gtIgnore"], bool)))
        if not entry["dtIds"]:
            continue
        matched = np.asarray(entry["dtMatches"][0])
        ignored = np.asarray(entry["dtIgnore"][0], bool)
        keep = ~ignored
        iou = np.full(len(matched), np.nan)
        table = evaluator.ious[entry["image_id"], category]
        if len(table):
            gt_ids = [g["id"] for g in evaluator._gts[entry["image_id"], category]]
            column = {gt_id: j for j, gt_id in enumerate(gt_ids)}
            for d in np.flatnonzero(matched > 0):
                iou[d] = table[d, column[int(matched[d])]]
        categories.append(np.full(int(keep.sum()), category))
        scores.append(np.asarray(entry["dtScores"])[keep])
        tps.append((matched > 0)[keep])
        ious.append(iou[keep])
    if not categories:
        empty = np.zeros(0)
        return Matches(empty.astype(int), empty, empty.astype(bool), empty, objects)
    return Matches(
        np.concatenate(categories),
        np.concatenate(scores),
        np.concatenate(tps),
        np.concatenate(ious),
        objects,
    )


def counts_at(matches: Matches, threshold: float, category: int | None = None) -> Counts:
    """TP/FP/FN of detections scoring >= ``threshold`` (one category, or all: micro-average)."""
    keep = matches.score >= threshold
    objects = sum(matches.objects.values())
    if category is not None:
        keep &= matches.category == category
        objects = matches.objects.get(category, 0)
    tp = int(np.count_nonzero(matches.tp & keep))
    fp = int(np.count_nonzero(~matches.tp & keep))
    return Counts(tp, fp, objects - tp)


def best_f1(matches: Matches, category: int) -> tuple[float | None, float]:
    """``(threshold, F1)``: the score threshold with the highest F1 for ``category`` (the
    highest such threshold on ties); ``(None, 0.0)`` without detections or objects."""
    mine = matches.category == category
    objects = matches.objects.get(category, 0)
    if not mine.any() or objects == 0:
        return None, 0.0
    order = np.argsort(-matches.score[mine], kind="mergesort")
    scores = matches.score[mine][order]
    tp = np.cumsum(matches.tp[mine][order])
    fp = np.cumsum(~matches.tp[mine][order])
    last_of_tie = np.append(scores[1:] != scores[:-1], True)  # a threshold keeps whole ties
    precision = tp / (tp + fp)
    recall = tp / objects
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f1 = np.where(last_of_tie, f1, -1.0)
    best = int(np.argmax(f1))  # first maximum = highest threshold
    return float(scores[best]), float(f1[best])


def mean_matched_iou(matches: Matches, threshold: float) -> float | None:
    """Mean IoU of the true positives scoring >= ``threshold`` (None when there are none)."""
    keep = matches.tp & (matches.score >= threshold)
    return float(matches.iou[keep].mean()) if keep.any() else None

"""What a detected object looks like, for telling objects apart when their boxes do not:
a colour histogram of the pixels inside each detection's mask.

`colour_histograms` gives each detection an 8x8x8 histogram of its frame's pixels (any channel
order, as long as one run keeps to one) inside its mask polygons, or inside its box when it has
none (a box-only model, ``--no-polygons``), L1-normalised; `appearance_distance` compares them
by the Bhattacharyya distance (0: the same colours, 1: none in common). Pixels of several
detections' overlap count for each of them. NumPy and OpenCV.
"""

from __future__ import annotations

import cv2
import numpy as np

from detect.structures import Detections

BINS = 8
"""Histogram bins per colour channel."""

FEATURE_SIZE = BINS**3


def colour_histograms(frame: np.ndarray, detections: Detections) -> np.ndarray:
    """``(N, 512)`` float32 histograms of ``frame`` ``(H, W, 3) uint8`` inside each of the N
    detections' polygons (pixels) or xyxy box; each row sums to 1 (0 for an empty mask)."""
    height, width = frame.shape[:2]
    out = np.zeros((len(detections), FEATURE_SIZE), np.float32)
    for i, (polygons, box) in enumerate(zip(detections.polygons, detections.xyxy, strict=True)):
        x1, y1, x2, y2 = (int(v) for v in np.clip(np.round(box), 0, [width, height] * 2))
        if x2 <= x1 or y2 <= y1:
            continue
        crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
        mask = None
        rings = [np.round(r - (x1, y1)).astype(np.int32) for p in polygons for r in p.rings()]
        if rings:
            mask = np.zeros(crop.shape[:2], np.uint8)
            cv2.fillPoly(mask, rings, 1)
        hist = cv2.calcHist([crop], [0, 1, 2], mask, [BINS] * 3, [0, 256] * 3).ravel()
        total = hist.sum()
        if total > 0:
            out[i] = hist / total
    return out


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` Bhattacharyya distances between histograms ``a (N, B)`` and ``b (M, B)``
    (each row L1-normalised; a row of zeros is 1 from everything)."""
    coefficient = np.sqrt(a.astype(np.float64)) @ np.sqrt(b.astype(np.float64)).T
    return np.sqrt(np.clip(1.0 - coefficient, 0.0, 1.0))

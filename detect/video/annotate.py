"""What a camera's run writes of a frame: the annotated picture (boxes, track ids, zones, lines,
a counter panel) and the frame's detections as JSONL records (TLWH boxes, polygons)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from detect.rounding import BOX_DECIMALS, POLYGON_DECIMALS, SCORE_DECIMALS, rounded
from detect.runtime.draw import class_color, draw_detections
from detect.structures import Detections
from detect.zones import Counting


def annotate_frame(
    frame: np.ndarray, detections: Detections, counting: Counting, panel: list[str]
) -> np.ndarray:
    """The ``(H, W, 3)`` BGR frame with the (tracked) detections, zone outlines, lines and a
    counter panel."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    captions = [
        f"{label} {score:.2f}" + (f" #{i}" if i >= 0 else "")
        for label, score, i in zip(
            detections.labels, detections.scores, detections.track_ids.tolist(), strict=True
        )
    ]
    canvas = draw_detections(rgb, detections.rows(), captions)
    for k, zone in enumerate(counting.zones):
        points = np.round(np.asarray(zone.polygon.exterior.coords)).astype(np.int32)
        color = class_color(k + 7)
        cv2.polylines(canvas, [points], True, color, 2, cv2.LINE_AA)
        x, y = points.min(axis=0)
        cv2.putText(canvas, zone.name, (int(x) + 3, int(y) + 14), 0, 0.45, color, 1, cv2.LINE_AA)
    for line in counting.lines:
        ends = (round(line.x1), round(line.y1)), (round(line.x2), round(line.y2))
        cv2.line(canvas, *ends, (255, 255, 0), 2, cv2.LINE_AA)
    if panel:
        height = 16 * len(panel) + 8
        width = min(canvas.shape[1], 8 + 7 * max(len(t) for t in panel))
        box = canvas[:height, :width]
        canvas[:height, :width] = (box * 0.4).astype(np.uint8)
        for k, text in enumerate(panel):
            cv2.putText(canvas, text, (4, 16 * (k + 1)), 0, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(canvas[:, :, ::-1])


def detection_records(detections: Detections) -> list[dict[str, Any]]:
    """The detections of a JSONL line, one dict each: TLWH box (pixels to 0.01), label, score
    (to 0.0001), track id, polygon rings (flat ``[x1, y1, x2, y2, ...]`` to 0.1 pixel): the
    precisions of `detect.rounding`."""
    return [
        {
            "top": top,
            "left": left,
            "width": width,
            "height": height,
            "label": str(label),
            "score": rounded(score, SCORE_DECIMALS),
            "track_id": track_id,
            "polygons": [
                [rounded(ring.ravel(), POLYGON_DECIMALS) for ring in p.rings()] for p in polygons
            ],
        }
        for (top, left, width, height), label, score, track_id, polygons in zip(
            rounded(detections.tlwh(), BOX_DECIMALS),
            detections.labels,
            detections.scores.tolist(),
            detections.track_ids.tolist(),
            detections.polygons,
            strict=True,
        )
    ]

"""What a camera's run writes of a frame: the annotated picture (boxes, track ids, zones, lines,
a counter panel) and the frame's detections as JSONL records (TLWH boxes, polygons)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from detect.runtime.draw import class_color, draw_detections
from detect.structures import Detection
from detect.zones import Counting


def annotate_frame(
    frame: np.ndarray,
    detections: list[Detection],
    ids: list[int],
    counting: Counting,
    panel: list[str],
) -> np.ndarray:
    """The frame (BGR) with detections, track ids, zone outlines, lines and a counter panel."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    captions = [
        f"{d.label} {d.score:.2f}" + (f" #{i}" if i >= 0 else "")
        for d, i in zip(detections, ids, strict=True)
    ]
    canvas = draw_detections(rgb, detections, captions)
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


def detection_record(d: Detection, track_id: int) -> dict[str, Any]:
    """One detection of a JSONL line: TLWH box, label, score, track id, polygon rings."""
    top, left, width, height = d.tlwh
    return {
        "top": round(top, 2),
        "left": round(left, 2),
        "width": round(width, 2),
        "height": round(height, 2),
        "label": d.label,
        "score": round(d.score, 4),
        "track_id": track_id,
        "polygons": [[np.round(r, 1).ravel().tolist() for r in p.rings()] for p in d.polygons],
    }

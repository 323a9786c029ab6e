"""Annotated copies of images: boxes, labels, scores and polygon outlines (OpenCV, no torch)."""

from __future__ import annotations

import cv2
import numpy as np

from detect.structures import Detection

# Tableau-10 colours (RGB), picked by class id so a class keeps its colour across images.
_PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel outlines


def class_color(class_id: int) -> tuple[int, int, int]:
    """RGB colour of a class."""
    return _PALETTE[class_id % len(_PALETTE)]


def _points(ring: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(ring) * (1 << _SHIFT)).astype(np.int32)


def draw_detections(
    rgb: np.ndarray, detections: list[Detection], captions: list[str] | None = None
) -> np.ndarray:
    """A copy of ``rgb`` ``(H, W, 3) uint8`` with the detections drawn on it (RGB).

    Masks are filled at 35 % opacity and outlined (exteriors and holes); boxes are outlined and
    captioned (default ``label score``). Every outline is drawn before any caption, and the
    captions go from the largest box to the smallest, so a small object's caption lies on top
    of a large one's. A caption sits above its box's top-left corner (inside the box when that
    touches the top), shifted left and up as needed to lie fully inside the image.
    """
    canvas = rgb.copy()
    overlay = rgb.copy()
    # every ring of a detection (exteriors and holes of its disjoint parts): one even-odd fill
    outlines = [[_points(r) for p in det.polygons for r in p.rings()] for det in detections]
    for det, rings in zip(detections, outlines, strict=True):
        if rings:
            cv2.fillPoly(overlay, rings, class_color(det.class_id), cv2.LINE_AA, _SHIFT)
    if any(det.polygons for det in detections):
        canvas = cv2.addWeighted(overlay, 0.35, canvas, 0.65, 0)
    thickness = max(1, round(min(rgb.shape[:2]) / 300))
    if captions is None:
        captions = [f"{det.label} {det.score:.2f}" for det in detections]
    for det, rings in zip(detections, outlines, strict=True):
        color = class_color(det.class_id)
        if rings:
            cv2.polylines(canvas, rings, True, color, thickness, cv2.LINE_AA, _SHIFT)
        x1, y1, x2, y2 = det.box
        corners = _points(np.array([[x1, y1], [x2, y2]]))
        cv2.rectangle(canvas, corners[0], corners[1], color, thickness, cv2.LINE_AA, _SHIFT)
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in (det.box for det in detections)]
    for k in sorted(range(len(detections)), key=lambda k: -areas[k]):  # stable: ties keep order
        _draw_caption(canvas, detections[k], captions[k], 0.4 * thickness)
    return canvas


def _draw_caption(canvas: np.ndarray, det: Detection, caption: str, scale: float) -> None:
    """``caption`` on a filled label of ``det``'s colour above its box's top-left corner (xyxy
    pixels), inside the box when there is no room above, then shifted to lie inside ``canvas``
    ``(H, W, 3)``."""
    height, width = canvas.shape[:2]
    (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x1, y1 = det.box[0], det.box[1]
    top = int(y1) - th - base if y1 >= th + base else int(y1)
    left = max(0, min(int(x1), width - 1 - tw))  # the label spans columns left..left + tw
    top = max(0, min(top, height - 1 - th - base))
    cv2.rectangle(
        canvas, (left, top), (left + tw, top + th + base), class_color(det.class_id), cv2.FILLED
    )
    cv2.putText(
        canvas,
        caption,
        (left, top + th),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )

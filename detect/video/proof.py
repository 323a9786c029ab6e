"""An event's proof (`Proof`): the pictures that show what happened, made from the frame in
which the event was confirmed.

* ``frame``: the whole frame as JPEG, with the event's object (the detection of its track) drawn
  on it as `detect.runtime.draw.draw_detections` draws: mask filled and outlined, box, caption.
* ``crop``: the object's box grown by a quarter of its size on every side (at least 16 px),
  cut from the frame as the camera saw it (nothing drawn), as JPEG; None when the track has no
  detection in that frame (an ``exit`` after the track was lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from detect.runtime.draw import draw_detections
from detect.structures import Detections

QUALITY = 90
MARGIN = 0.25
MIN_MARGIN_PX = 16


@dataclass(frozen=True)
class Proof:
    """JPEG bytes of an event's annotated frame and of its object's crop (see the module)."""

    frame: bytes
    crop: bytes | None


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:  # an (H, W, 3) uint8 frame always encodes
        raise ValueError(f"cannot JPEG-encode a frame of shape {bgr.shape}")
    return data.tobytes()


def event_proof(frame: np.ndarray, detections: Detections, event: dict[str, Any]) -> Proof:
    """The proof of ``event`` (its ``track_id``) in ``frame`` (``(H, W, 3) uint8`` BGR) with the
    frame's tracked ``detections`` (boxes ``xyxy``)."""
    mine = np.flatnonzero(detections.track_ids == event.get("track_id"))
    if not len(mine):
        return Proof(_jpeg(frame), None)
    k = int(mine[0])
    row = detections.rows()[k]
    caption = f"{row.label} #{event.get('track_id')} {event.get('event', '')}".rstrip()
    drawn = draw_detections(np.ascontiguousarray(frame[:, :, ::-1]), [row], [caption])
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = detections.xyxy[k]
    grow_x = max(MARGIN * (x2 - x1), MIN_MARGIN_PX)
    grow_y = max(MARGIN * (y2 - y1), MIN_MARGIN_PX)
    left, top = max(0, int(x1 - grow_x)), max(0, int(y1 - grow_y))
    right, bottom = min(w, int(np.ceil(x2 + grow_x))), min(h, int(np.ceil(y2 + grow_y)))
    crop = _jpeg(frame[top:bottom, left:right]) if right > left and bottom > top else None
    return Proof(_jpeg(np.ascontiguousarray(drawn[:, :, ::-1])), crop)

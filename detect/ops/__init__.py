"""Box conversions, IoU and NMS for the serving runtime: NumPy only, no torch."""

from detect.ops.boxes import (
    box_area,
    box_iou,
    tlwh_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_tlwh,
    xyxy_to_xywh,
)
from detect.ops.nms import nms

__all__ = [
    "box_area",
    "box_iou",
    "nms",
    "tlwh_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_tlwh",
    "xyxy_to_xywh",
]

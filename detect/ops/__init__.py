"""Box conversions, IoU and NMS for the serving runtime: NumPy only, no torch."""

from detect.ops.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    remove_small_boxes,
    tlwh_to_xyxy,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_tlwh,
    xyxy_to_xywh,
)
from detect.ops.nms import batched_nms, nms, soft_nms

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes",
    "cxcywh_to_xyxy",
    "nms",
    "remove_small_boxes",
    "soft_nms",
    "tlwh_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_tlwh",
    "xyxy_to_xywh",
]

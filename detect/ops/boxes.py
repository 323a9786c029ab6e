"""Axis-aligned box conversions and geometry in NumPy, mirroring ``torchvision.ops.boxes``.

Every box array has shape ``(..., 4)`` (usually ``(N, 4)``) in pixel coordinates, with x growing
to the right and y growing down. The column order of each format is named by the function:

- ``xyxy``:   ``[x1, y1, x2, y2]``, the top-left and bottom-right corners (torchvision's format,
  and the one every geometry function here expects);
- ``tlwh``:   ``[top, left, width, height] = [y1, x1, x2 - x1, y2 - y1]``, the product's
  user-facing box;
- ``xywh``:   ``[x1, y1, width, height]``, the COCO ``bbox`` field.

Floating inputs keep their dtype (the arithmetic is done in it, operation for operation as
torchvision does, so float32 results are bit-identical); integer or boolean inputs are converted
to float64 first. ``box_area`` and ``box_iou`` compute float16 in float32, as torchvision does.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "box_area",
    "box_iou",
    "tlwh_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_tlwh",
    "xyxy_to_xywh",
]

FloatArray = NDArray[np.floating]


def _as_boxes(boxes: ArrayLike, *, upcast_half: bool = False) -> FloatArray:
    """Return ``boxes`` as a floating array of shape ``(..., 4)`` (no copy when already one).

    Integer and boolean inputs become float64; float16 becomes float32 when ``upcast_half``.
    """
    arr = np.asarray(boxes)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    elif upcast_half and arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.ndim == 0 or arr.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {arr.shape}")
    return arr


# --------------------------------------------------------------------------- conversions


def xyxy_to_tlwh(boxes: ArrayLike) -> FloatArray:
    """Convert ``[x1, y1, x2, y2]`` corners to ``[top, left, width, height]``.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[x1, y1, x2, y2]``.

    Returns:
        ``(..., 4)`` boxes, columns ``[top, left, width, height] = [y1, x1, x2 - x1, y2 - y1]``.
        Example: ``[10, 20, 50, 80]`` -> ``[20, 10, 40, 60]``.
    """
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack((y1, x1, x2 - x1, y2 - y1), axis=-1)


def tlwh_to_xyxy(boxes: ArrayLike) -> FloatArray:
    """Convert ``[top, left, width, height]`` to ``[x1, y1, x2, y2]`` corners.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[top, left, width, height]`` (top = y1, left = x1).

    Returns:
        ``(..., 4)`` boxes, columns ``[x1, y1, x2, y2] = [left, top, left + width, top + height]``.
    """
    b = _as_boxes(boxes)
    top, left, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack((left, top, left + w, top + h), axis=-1)


def xyxy_to_xywh(boxes: ArrayLike) -> FloatArray:
    """Convert ``[x1, y1, x2, y2]`` corners to COCO ``[x, y, width, height]``.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[x1, y1, x2, y2]``.

    Returns:
        ``(..., 4)`` boxes, columns ``[x1, y1, x2 - x1, y2 - y1]``
        (same as ``torchvision.ops.box_convert(boxes, "xyxy", "xywh")``).
    """
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack((x1, y1, x2 - x1, y2 - y1), axis=-1)


def xywh_to_xyxy(boxes: ArrayLike) -> FloatArray:
    """Convert COCO ``[x, y, width, height]`` to ``[x1, y1, x2, y2]`` corners.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[x, y, w, h]`` with ``(x, y)`` the top-left corner.

    Returns:
        ``(..., 4)`` boxes, columns ``[x, y, x + w, y + h]``
        (same as ``torchvision.ops.box_convert(boxes, "xywh", "xyxy")``).
    """
    b = _as_boxes(boxes)
    x, y, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack((x, y, x + w, y + h), axis=-1)


# --------------------------------------------------------------------------- geometry


def box_area(boxes: ArrayLike) -> FloatArray:
    """Area of each box: ``(x2 - x1) * (y2 - y1)``, as ``torchvision.ops.box_area``.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[x1, y1, x2, y2]``.

    Returns:
        ``(...)`` areas (``(N,)`` for ``(N, 4)`` input). Inverted boxes (``x2 < x1`` xor
        ``y2 < y1``) give negative areas, exactly as torchvision; nothing is clamped.
    """
    b = _as_boxes(boxes, upcast_half=True)
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike) -> FloatArray:
    """Pairwise intersection over union, as ``torchvision.ops.box_iou``.

    Args:
        boxes1: ``(N, 4)`` boxes, columns ``[x1, y1, x2, y2]``.
        boxes2: ``(M, 4)`` boxes, columns ``[x1, y1, x2, y2]``.

    Returns:
        ``(N, M)`` IoU matrix. Identical to torchvision, bit for bit, wherever the union is
        non-zero. Where the union is exactly 0 (two zero-area boxes, e.g. a box with itself)
        torchvision returns ``0 / 0 = nan``; this returns 0 instead, so a degenerate box never
        matches anything and ``argmax`` / threshold comparisons stay well defined.
    """
    a = _as_boxes(boxes1, upcast_half=True)
    b = _as_boxes(boxes2, upcast_half=True)
    area1 = box_area(a)
    area2 = box_area(b)
    lt = np.maximum(a[..., :, None, :2], b[..., None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[..., :, None, 2:], b[..., None, :, 2:])  # (N, M, 2)
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = area1[..., :, None] + area2[..., None, :] - inter
    nonzero = union != 0
    out = np.zeros(np.broadcast_shapes(inter.shape, union.shape), dtype=inter.dtype)
    np.divide(inter, union, out=out, where=nonzero)
    return out

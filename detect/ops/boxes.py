"""Axis-aligned box conversions and geometry in NumPy, mirroring ``torchvision.ops.boxes``.

Every box array has shape ``(..., 4)`` (usually ``(N, 4)``) in pixel coordinates, with x growing
to the right and y growing down. The column order of each format is named by the function:

- ``xyxy``:   ``[x1, y1, x2, y2]``, the top-left and bottom-right corners (torchvision's format,
  and the one every geometry function here expects);
- ``tlwh``:   ``[top, left, width, height] = [y1, x1, x2 - x1, y2 - y1]``, the product's
  user-facing box;
- ``xywh``:   ``[x1, y1, width, height]``, the COCO ``bbox`` field;
- ``cxcywh``: ``[cx, cy, width, height]``, the centre and the size.

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
    "clip_boxes",
    "cxcywh_to_xyxy",
    "remove_small_boxes",
    "tlwh_to_xyxy",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "xyxy_to_tlwh",
    "xyxy_to_xywh",
]

FloatArray = NDArray[np.floating]
IndexArray = NDArray[np.int64]


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


def xyxy_to_cxcywh(boxes: ArrayLike) -> FloatArray:
    """Convert ``[x1, y1, x2, y2]`` corners to ``[cx, cy, width, height]``.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[x1, y1, x2, y2]``.

    Returns:
        ``(..., 4)`` boxes, columns ``[(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]``
        (same as ``torchvision.ops.box_convert(boxes, "xyxy", "cxcywh")``).
    """
    b = _as_boxes(boxes)
    x1, y1, x2, y2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), axis=-1)


def cxcywh_to_xyxy(boxes: ArrayLike) -> FloatArray:
    """Convert ``[cx, cy, width, height]`` to ``[x1, y1, x2, y2]`` corners.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[cx, cy, w, h]`` with ``(cx, cy)`` the centre.

    Returns:
        ``(..., 4)`` boxes, columns ``[cx - w/2, cy - h/2, cx + w/2, cy + h/2]``
        (same as ``torchvision.ops.box_convert(boxes, "cxcywh", "xyxy")``).
    """
    b = _as_boxes(boxes)
    cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), axis=-1)


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


def clip_boxes(boxes: ArrayLike, height: float, width: float) -> FloatArray:
    """Clip boxes to the image, as ``torchvision.ops.clip_boxes_to_image(boxes, (h, w))``.

    Args:
        boxes: ``(..., 4)`` boxes, columns ``[x1, y1, x2, y2]``.
        height: image height in pixels; y coordinates are clamped to ``[0, height]``.
        width: image width in pixels; x coordinates are clamped to ``[0, width]``.

    Returns:
        A new ``(..., 4)`` array, columns ``[x1, y1, x2, y2]``, same dtype as the input.
        Boxes entirely outside the image become zero-width or zero-height; NaN stays NaN.
    """
    b = _as_boxes(boxes)
    out = np.empty_like(b)
    out[..., 0::2] = np.clip(b[..., 0::2], 0, width)
    out[..., 1::2] = np.clip(b[..., 1::2], 0, height)
    return out


def remove_small_boxes(boxes: ArrayLike, min_size: float) -> IndexArray:
    """Indices of the boxes whose sides are both at least ``min_size``.

    Same as ``torchvision.ops.remove_small_boxes``: keeps ``(x2 - x1 >= min_size) &
    (y2 - y1 >= min_size)``, compared in the boxes' dtype.

    Args:
        boxes: ``(N, 4)`` boxes, columns ``[x1, y1, x2, y2]``.
        min_size: minimum width and height, in pixels.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, increasing.
    """
    b = _as_boxes(boxes)
    ws = b[..., 2] - b[..., 0]
    hs = b[..., 3] - b[..., 1]
    keep = (ws >= min_size) & (hs >= min_size)
    return np.flatnonzero(keep).astype(np.int64, copy=False)

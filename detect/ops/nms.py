"""Non-maximum suppression in NumPy: ``nms``, as ``torchvision.ops.nms``.

All boxes are ``(N, 4)`` arrays in ``[x1, y1, x2, y2]`` pixel coordinates; scores are ``(N,)``.

Ties. Boxes with equal scores are visited in increasing index order (a stable sort by decreasing
score; NaN scores sort first, as in torch). torchvision's CPU kernel uses torch's *unstable*
sort, whose order among equal scores depends on the build and the CPU (x86-simd-sort on AVX2 /
AVX-512 machines), so on exact ties torchvision itself is not reproducible across machines.
Without ties the results are identical to torchvision's, index for index.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["nms"]

FloatArray = NDArray[np.floating]
IndexArray = NDArray[np.int64]


def _as_nms_inputs(boxes: ArrayLike, scores: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate and return ``(boxes (N, 4) float32/float64, scores (N,) float)``."""
    b = np.asarray(boxes)
    if not np.issubdtype(b.dtype, np.floating):
        b = b.astype(np.float64)
    elif b.dtype == np.float16:
        b = b.astype(np.float32)
    if b.ndim == 1 and b.size == 0:  # np.array([]) for no boxes
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {b.shape}")
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if s.ndim != 1 or s.shape[0] != b.shape[0]:
        raise ValueError(f"scores must have shape ({b.shape[0]},), got {s.shape}")
    return b, s


def _descending_order(scores: FloatArray) -> IndexArray:
    """Indices sorting ``scores`` in decreasing order; ties by increasing index, NaN first."""
    nan = np.isnan(scores)
    if not nan.any():
        return np.argsort(-scores, kind="stable").astype(np.int64, copy=False)
    finite = np.flatnonzero(~nan)
    order = finite[np.argsort(-scores[finite], kind="stable")]
    return np.concatenate((np.flatnonzero(nan), order)).astype(np.int64, copy=False)


def nms(boxes: ArrayLike, scores: ArrayLike, iou_threshold: float) -> IndexArray:
    """Greedy non-maximum suppression, identical to ``torchvision.ops.nms`` (CPU).

    Visits boxes by decreasing score; keeps a box unless a kept box overlaps it with
    ``IoU > iou_threshold``. The IoU is computed in the boxes' dtype with exactly the operations
    of torchvision's CPU kernel (float32 stays float32), and compared to ``iou_threshold`` in
    float64, so even an IoU equal to the threshold is decided the same way. A pair whose union
    is 0 has IoU ``nan`` there, which never suppresses.

    Args:
        boxes: ``(N, 4)`` boxes, columns ``[x1, y1, x2, y2]``; integer boxes are taken as
            float64 and float16 as float32 (torchvision rejects both).
        scores: ``(N,)`` scores; any real dtype.
        iou_threshold: suppress boxes with IoU strictly greater than this.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, by decreasing score (equal scores by
        increasing index, see the module docstring). ``N = 0`` gives an empty array.
    """
    b, s = _as_nms_inputs(boxes, scores)
    if b.shape[0] == 0:
        return np.empty((0,), dtype=np.int64)
    x1 = np.ascontiguousarray(b[:, 0])
    y1 = np.ascontiguousarray(b[:, 1])
    x2 = np.ascontiguousarray(b[:, 2])
    y2 = np.ascontiguousarray(b[:, 3])
    areas = (x2 - x1) * (y2 - y1)
    zero = b.dtype.type(0)
    threshold = float(iou_threshold)

    order = _descending_order(s)
    keep: list[int] = []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while order.size:
            i = int(order[0])
            keep.append(i)
            rest = order[1:]
            if rest.size == 0:
                break
            # std::max(a, b) is (a < b) ? b : a and std::min(a, b) is (b < a) ? b : a: written
            # with np.where so that NaN coordinates behave as in the C++ kernel.
            rx1, ry1, rx2, ry2 = x1[rest], y1[rest], x2[rest], y2[rest]
            xx1 = np.where(x1[i] < rx1, rx1, x1[i])
            yy1 = np.where(y1[i] < ry1, ry1, y1[i])
            xx2 = np.where(rx2 < x2[i], rx2, x2[i])
            yy2 = np.where(ry2 < y2[i], ry2, y2[i])
            dw = xx2 - xx1
            dh = yy2 - yy1
            w = np.where(zero < dw, dw, zero)
            h = np.where(zero < dh, dh, zero)
            inter = w * h
            ovr = inter / (areas[i] + areas[rest] - inter)
            order = rest[~(ovr.astype(np.float64) > threshold)]
    return np.asarray(keep, dtype=np.int64)

"""Low-resolution mask probabilities -> image masks, the way torchvision pastes them (NumPy).

The exported graph returns, per detection, the ``(M, M)`` mask probabilities of its class over its
box (``M = 28`` for torchvision's Mask R-CNN head) instead of ``N`` full-image masks. This module
does torchvision's ``paste_masks_in_image`` afterwards, for the detections that survive the
thresholds only: pad the ``M x M`` grid by one zero cell on each side, grow the box by
``(M + 2) / M`` about its centre and truncate it to integer pixels, resize the padded grid
bilinearly (half-pixel centres, no antialiasing: ``cv2.INTER_LINEAR`` on float32, the same as
``F.interpolate(mode="bilinear", align_corners=False)``) to the grown box's
``(y1 - y0 + 1) x (x1 - x0 + 1)`` pixels, and clip it to the image. Boxes are xyxy float pixels
of the original image.
"""

from __future__ import annotations

import cv2
import numpy as np

from detect.structures import RawDetections


def _grown_box(box: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """torchvision's ``expand_boxes`` + ``.to(int64)``: float32 arithmetic, truncated to zero."""
    x1, y1, x2, y2 = np.asarray(box, np.float32)
    scale = np.float32((side + 2) / side)
    w_half = (x2 - x1) * np.float32(0.5) * scale
    h_half = (y2 - y1) * np.float32(0.5) * scale
    x_c = (x2 + x1) * np.float32(0.5)
    y_c = (y2 + y1) * np.float32(0.5)
    return int(x_c - w_half), int(y_c - h_half), int(x_c + w_half), int(y_c + h_half)


def paste_mask(
    probs: np.ndarray, box: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, int, int]:
    """The part of one pasted mask that lies in the image.

    Args:
        probs: ``(M, M)`` float mask probabilities over ``box``.
        box: ``(4,)`` xyxy float pixels of the original image.
        height, width: the original image's size.

    Returns:
        ``(crop, x0, y0)``: ``crop`` is an ``(h, w) float32`` array of probabilities whose
        top-left pixel is image pixel ``(row y0, column x0)``; ``h`` or ``w`` is 0 when the grown
        box lies outside the image. Threshold it (``> 0.5``) for the binary mask.
    """
    side = probs.shape[-1]
    bx0, by0, bx1, by1 = _grown_box(box, side)
    w = max(bx1 - bx0 + 1, 1)
    h = max(by1 - by0 + 1, 1)
    padded = np.pad(np.asarray(probs, np.float32), 1)
    resized = cv2.resize(padded, (w, h), interpolation=cv2.INTER_LINEAR)
    x0, x1 = max(bx0, 0), min(bx1 + 1, width)
    y0, y1 = max(by0, 0), min(by1 + 1, height)
    crop = resized[max(y0 - by0, 0) : max(y1 - by0, 0), max(x0 - bx0, 0) : max(x1 - bx0, 0)]
    return crop, x0, y0


def paste_masks(
    probs: np.ndarray, boxes: np.ndarray, height: int, width: int, threshold: float = 0.5
) -> np.ndarray:
    """``(N, H, W) bool`` image masks from ``(N, M, M)`` probabilities and ``(N, 4)`` xyxy boxes.

    A pixel is foreground when its pasted probability is ``> threshold``.
    """
    masks = np.zeros((len(probs), height, width), bool)
    for mask, prob, box in zip(masks, probs, boxes, strict=True):
        crop, x0, y0 = paste_mask(prob, box, height, width)
        mask[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop > threshold
    return masks


def binary_masks(raw: RawDetections, threshold: float = 0.5) -> np.ndarray | None:
    """``(N, H, W) bool`` whole-image masks of ``raw`` (pasted when the model gave
    low-resolution ones), or None for a box-only model."""
    if raw.masks is not None:
        return raw.masks > threshold
    if raw.mask_probs is not None:
        return paste_masks(raw.mask_probs, raw.boxes, *raw.image_size, threshold)
    return None

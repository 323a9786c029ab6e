"""Large images shrunk to the model's input size before the graph, once, with area averaging.

The exported graph (like torchvision's eager model) converts the whole image to float32 and only
then resizes it (bilinear, shorter side to ``min_size``, longer side at most ``max_size``). A
12-megapixel photo for a 256-px model thus costs a 146 MB float tensor and engine buffers of that
shape (OpenVINO keeps them per input shape), and its bilinear resize by 1/12 reads one pixel in
144. So an image more than twice the size the graph would resize it to is first shrunk to that
size by OpenCV's ``INTER_AREA`` (the mean of the pixels each output pixel covers); the graph's own
resize is then a no-op, and the boxes are scaled back to the original pixels. Images up to twice
the model's size go to the graph as they are.
"""

from __future__ import annotations

import cv2
import numpy as np

SHRINK_BELOW = 0.5
"""Scales (model size / image size) below this are done by `shrink_for_model`."""


def model_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The graph's resize factor for a ``height`` x ``width`` image (torchvision's rule)."""
    return min(min_size / min(height, width), max_size / max(height, width))


def shrink_for_model(
    rgb: np.ndarray, min_size: int, max_size: int
) -> tuple[np.ndarray, float, float]:
    """``(H, W, 3) uint8`` -> the image the graph should get, and the x and y factors from
    original pixels to its pixels (1.0, 1.0 and ``rgb`` itself when it is not shrunk)."""
    height, width = rgb.shape[:2]
    scale = model_scale(height, width, min_size, max_size)
    if scale >= SHRINK_BELOW:
        return rgb, 1.0, 1.0
    size = (max(1, int(width * scale)), max(1, int(height * scale)))  # as the graph floors
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return small, size[0] / width, size[1] / height


def boxes_to_original(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``(N, 4)`` xyxy boxes in the shrunk image's pixels -> the original image's pixels."""
    if sx == 1.0 and sy == 1.0:
        return boxes
    return boxes / np.array([sx, sy, sx, sy], boxes.dtype)

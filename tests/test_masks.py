"""`detect.runtime.masks` pastes low-resolution masks exactly as torchvision does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image

from detect.runtime.masks import paste_mask, paste_masks


def _boxes(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """Boxes inside the image (detections are clipped to it), from sub-pixel to large."""
    x1 = rng.uniform(0, width - 0.5, n)
    y1 = rng.uniform(0, height - 0.5, n)
    x2 = np.minimum(x1 + rng.uniform(0.2, 1.5 * width, n), width)
    y2 = np.minimum(y1 + rng.uniform(0.2, 1.5 * height, n), height)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
def test_paste_masks_equals_torchvision(seed: int) -> None:
    """Same probabilities to 1e-5 (cv2 and torch interpolate in float32), so the same
    binary masks but for pixels within 1e-5 of the threshold."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        height, width = (int(v) for v in rng.integers(8, 240, 2))
        boxes = _boxes(rng, 10, height, width)
        probs = rng.random((10, 28, 28)).astype(np.float32)
        expected = paste_masks_in_image(
            torch.from_numpy(probs)[:, None], torch.from_numpy(boxes), (height, width)
        )[:, 0].numpy()
        pasted = np.zeros_like(expected)
        for image, prob, box in zip(pasted, probs, boxes, strict=True):
            crop, x0, y0 = paste_mask(prob, box, height, width)
            image[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
        np.testing.assert_allclose(pasted, expected, atol=1e-5)
        binary = paste_masks(probs, boxes, height, width)
        differ = binary != (expected > 0.5)
        assert not differ.any() or (np.abs(expected[differ] - 0.5) < 1e-5).all()


def test_paste_mask_crop_is_the_pasted_region() -> None:
    probs = np.ones((28, 28), np.float32)
    crop, x0, y0 = paste_mask(probs, np.array([10.0, 20.0, 38.0, 48.0]), 100, 100)
    full = paste_masks(probs[None], np.array([[10.0, 20.0, 38.0, 48.0]]), 100, 100)[0]
    pasted = np.zeros((100, 100), bool)
    pasted[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop > 0.5
    np.testing.assert_array_equal(pasted, full)


def test_box_on_the_image_border_is_clipped() -> None:
    probs = np.ones((28, 28), np.float32)
    crop, x0, y0 = paste_mask(probs, np.array([0.0, 0.0, 30.0, 30.0]), 20, 25)
    assert (x0, y0) == (0, 0)
    assert crop.shape == (20, 25)
    assert (crop > 0.5).all()

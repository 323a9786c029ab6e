"""What torchvision's detectors take as an image: one conversion for training, validation,
parity and benchmarks (torch only; the exported graph does the same inside, see
`detect.export.trace.DetectorGraph`)."""

from __future__ import annotations

import numpy as np
import torch


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(H, W, 3) uint8`` RGB -> ``(3, H, W) float32`` in [0, 1], what torchvision's detectors
    take (their transform normalises and resizes it)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255)

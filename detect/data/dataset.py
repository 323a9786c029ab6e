"""Torch dataset over validated COCO records, with optional albumentations augmentation.

Each item is `(image, target)`: image (3, H, W) float32 RGB in [0, 1]; target holds `boxes`
(N, 4) float32 xyxy pixels, `labels` (N,) int64 1..K, `image_id`, and `masks` (N, H, W) uint8
when masks are requested. An image that fails to decode yields `BadImage` instead of raising
inside a worker, so the training loop can report it cleanly (or skip it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from detect.data.coco import ImageRecord
from detect.models.inputs import image_tensor

if TYPE_CHECKING:  # albumentations is slow to import: only a run that augments loads it
    import albumentations as A


@dataclass
class BadImage:
    """An image that could not be decoded at load time."""

    path: str
    reason: str


def read_rgb(path: str) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB, or None when OpenCV cannot decode the file."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class DetectionDataset(Dataset):
    """Records -> model inputs. `transform` is an albumentations pipeline or None."""

    def __init__(
        self,
        records: list[ImageRecord],
        with_masks: bool,
        transform: A.Compose | None = None,
    ) -> None:
        self.records = records
        self.with_masks = with_masks
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | BadImage:
        record = self.records[index]
        image = read_rgb(str(record.path))
        if image is None:
            return BadImage(str(record.path), "cannot be decoded (corrupt or truncated?)")
        if image.shape[:2] != (record.height, record.width):
            return BadImage(
                str(record.path),
                f"decoded as {image.shape[1]}x{image.shape[0]}, "
                f"the JSON says {record.width}x{record.height}",
            )
        boxes, labels = record.boxes, record.labels
        masks = record.masks() if self.with_masks else None
        if self.transform is not None:
            from detect.data.augment import apply_transform

            image, boxes, labels, masks = apply_transform(
                self.transform, image, boxes, labels, masks
            )
        target: dict[str, torch.Tensor] = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
            "image_id": torch.tensor(record.image_id),
        }
        if masks is not None:
            target["masks"] = torch.as_tensor(masks, dtype=torch.uint8)
        return image_tensor(image), target


def collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict], list[BadImage]]:
    """Lists of images and targets (sizes may differ), plus the images that failed."""
    images, targets, bad = [], [], []
    for item in batch:
        if isinstance(item, BadImage):
            bad.append(item)
        else:
            images.append(item[0])
            targets.append(item[1])
    return images, targets, bad

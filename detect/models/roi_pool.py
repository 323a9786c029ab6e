"""Multi-scale RoI max pooling over FPN levels: the Fast R-CNN operation on a feature pyramid.

Same level mapping as torchvision's `MultiScaleRoIAlign` (FPN paper eq. 1, canonical 224 px at
level 4), but each RoI is max-pooled with `torchvision.ops.roi_pool` (quantised bins) instead of
bilinearly sampled. Exports to ONNX (MaxRoiPool) through the same tracing merge as RoIAlign.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_pool
from torchvision.ops.poolers import (
    LevelMapper,
    _convert_to_roi_format,
    _filter_input,
    _onnx_merge_levels,
    _setup_scales,
)


def multiscale_roi_pool(
    features: list[Tensor],
    boxes: list[Tensor],
    output_size: tuple[int, int],
    scales: list[float],
    mapper: LevelMapper,
) -> Tensor:
    """Pool each box from the FPN level its size maps to.

    Args:
        features: L maps, each (B, C, H_l, W_l), finest first.
        boxes: B tensors (N_b, 4), xyxy in the (resized) input image's pixels.
        output_size: (h, w) of each pooled feature.
        scales: L feature/image scale factors (1/4, 1/8, ...).
        mapper: assigns each box a level index in [0, L).

    Returns:
        (sum N_b, C, h, w) pooled features in the order of the concatenated boxes.
    """
    rois = _convert_to_roi_format(boxes)
    if len(features) == 1:
        return roi_pool(features[0], rois, output_size, spatial_scale=scales[0])

    levels = mapper(boxes)
    first = features[0]
    result = torch.zeros(
        (len(rois), first.shape[1], *output_size), dtype=first.dtype, device=first.device
    )
    tracing_results = []
    for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
        index = torch.where(levels == level)[0]
        pooled = roi_pool(feature, rois[index], output_size, spatial_scale=scale)
        if torchvision._is_tracing():
            tracing_results.append(pooled.to(first.dtype))
        else:
            result[index] = pooled.to(first.dtype)
    if torchvision._is_tracing():
        result = _onnx_merge_levels(levels, tracing_results)
    return result


class MultiScaleRoIPool(MultiScaleRoIAlign):
    """Drop-in replacement for `MultiScaleRoIAlign` (same constructor, same forward)."""

    def forward(
        self,
        x: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> Tensor:
        """x: named FPN maps; boxes: per-image (N, 4) xyxy; image_shapes: per-image (h, w)."""
        features = _filter_input(x, self.featmap_names)
        scales, mapper = _setup_scales(
            features, image_shapes, self.canonical_scale, self.canonical_level
        )
        return multiscale_roi_pool(features, boxes, self.output_size, scales, mapper)

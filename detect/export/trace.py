"""Tracing a torchvision Faster/Mask R-CNN into an ONNX file: the modules the file computes
(`DetectorGraph`, `BatchGraph`), the ``batched_nms`` patch that keeps the graph free of ``If``
branches, and `export_graph`, ``torch.onnx.export`` with the TorchScript tracer
(``dynamo=False``) and dynamic height and width.

The wrappers do everything torchvision's ``GeneralizedRCNN.forward`` does in eval mode except
pasting masks: mask models return each detection's low-resolution ``(M, M)`` mask probabilities,
and the runtime pastes only the detections that survive its thresholds (`detect.runtime.masks`).
``full_masks=True`` keeps torchvision's in-graph paste (``(N, H, W)`` probabilities); it exists
for the benchmark that compares the two.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from detect.errors import ModelError


def _detections(model: nn.Module, xs: list[torch.Tensor], full_masks: bool) -> list[dict]:
    """torchvision's eval forward on ``(3, H, W) float`` 0-1 images, up to the mask paste: per
    image ``boxes`` (xyxy pixels of that image), ``labels``, ``scores`` and, for mask models,
    ``masks`` ``(N, 1, M, M)`` (``(N, 1, H, W)`` pasted with ``full_masks``)."""
    originals = [(x.shape[-2], x.shape[-1]) for x in xs]
    images, _ = model.transform(xs)
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    detections, _ = model.roi_heads(features, proposals, images.image_sizes)
    if full_masks:
        return model.transform.postprocess(detections, images.image_sizes, originals)
    for det, size, original in zip(detections, images.image_sizes, originals, strict=True):
        det["boxes"] = resize_boxes(det["boxes"], size, original)
    return detections


def _outputs(det: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    outputs = (det["boxes"], det["labels"], det["scores"])
    if "masks" in det:
        outputs += (det["masks"][:, 0],)
    return outputs


def _to_float(image: torch.Tensor) -> torch.Tensor:
    """``(H, W, 3) uint8`` -> ``(3, H, W) float32`` in 0-1."""
    return image.permute(2, 0, 1).to(torch.float32).div(255.0)


class DetectorGraph(nn.Module):
    """What the ONNX file computes, around a torchvision Faster/Mask R-CNN in eval mode.

    forward(image): ``image`` ``(H, W, 3) uint8`` RGB -> ``boxes (N, 4) float32`` xyxy pixels of
    ``image``, ``labels (N,) int64``, ``scores (N,) float32`` and, for mask models,
    ``mask_probs (N, M, M) float32`` (or ``(N, H, W)`` with ``full_masks``).
    """

    def __init__(self, model: nn.Module, full_masks: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.full_masks = full_masks

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _outputs(_detections(self.model, [_to_float(image)], self.full_masks)[0])


class BatchGraph(nn.Module):
    """`DetectorGraph` for a fixed number of images of one size, in one graph.

    forward(images): ``images`` ``(B, H, W, 3) uint8`` RGB -> the outputs of `DetectorGraph`
    for all B images, rows in image order, then ``counts (B,) int64``, each image's rows.
    torchvision batches the B images itself (one backbone pass over a ``(B, 3, h, w)`` tensor,
    the heads over every image's proposals at once); the tracer unrolls the loop over images,
    so B is fixed in the file.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detections = _detections(self.model, [_to_float(x) for x in images.unbind(0)], False)
        per_image = [_outputs(det) for det in detections]
        counts = torch.stack([torch.ones_like(det["labels"]).sum() for det in detections])
        return (*(torch.cat(column) for column in zip(*per_image, strict=True)), counts)


def _batched_nms_without_branch(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """torchvision's coordinate-trick ``batched_nms`` without its empty-input ``If`` branch.

    The same result for boxes with non-negative coordinates (detections are clipped to the
    image); the zero appended to the maximum makes an empty input safe. A graph without ``If``
    subgraphs converts to float16 cleanly and is simpler for ONNX Runtime to place.
    """
    max_coordinate = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return torchvision.ops.nms(boxes + offsets[:, None], scores, iou_threshold)


PATCHED_NMS_CALLERS = ("torchvision.models.detection.rpn", "torchvision.models.detection.roi_heads")
"""The torchvision modules whose ``box_ops.batched_nms`` calls `_plain_batched_nms` replaces."""


@contextlib.contextmanager
def _plain_batched_nms(
    expected_callers: tuple[str, ...] = PATCHED_NMS_CALLERS,
) -> Iterator[Counter[str]]:
    """Make torchvision's RPN and RoI heads use `_batched_nms_without_branch` while tracing.

    Patches ``torchvision.ops.boxes.batched_nms``, the name those heads call it through
    (``box_ops.batched_nms``), and restores the original on exit. Yields a count of the calls
    the patch took, by the calling module. On a clean exit, raises `ModelError` naming each
    module of `expected_callers` that never called it: a torchvision that reaches
    ``batched_nms`` some other way would otherwise trace its ``If`` branch into the graph without
    a word (the same check as Detectron2's ``export/patcher.py``).
    """
    original = box_ops.batched_nms
    calls: Counter[str] = Counter()

    def counted(
        boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
    ) -> torch.Tensor:
        calls[sys._getframe(1).f_globals.get("__name__", "?")] += 1
        return _batched_nms_without_branch(boxes, scores, idxs, iou_threshold)

    box_ops.batched_nms = counted
    try:
        yield calls
    finally:
        box_ops.batched_nms = original
    bypassed = [module for module in expected_callers if not calls[module]]
    if bypassed:
        raise ModelError(
            f"export: torchvision {torchvision.__version__}'s {' and '.join(bypassed)} never "
            "called torchvision.ops.boxes.batched_nms through the patched name while tracing; "
            "the export patch was bypassed — pin torchvision to requirements.lock's version or "
            "update detect/export/trace.py"
        )


def output_names(has_masks: bool) -> list[str]:
    return ["boxes", "labels", "scores"] + (["mask_probs"] if has_masks else [])


def export_graph(
    model: nn.Module, path: Path, opset: int = 17, full_masks: bool = False, batch: int = 1
) -> None:
    """Trace `model` (eval mode) into an ONNX file at `path` with dynamic height and width:
    `DetectorGraph`, or with ``batch`` > 1 `BatchGraph` for that many images."""
    has_masks = model.roi_heads.has_mask()
    names = output_names(has_masks)
    side = int(model.transform.min_size[0])
    # a textured sample so that every branch (proposals, detections, masks) is traced with data
    shape = (side, side * 4 // 3, 3) if batch == 1 else (batch, side, side * 4 // 3, 3)
    sample = torch.from_numpy(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    dynamic = {name: {0: "detections"} for name in names}
    if batch == 1:
        graph, inputs = DetectorGraph(model, full_masks), {"image": {0: "height", 1: "width"}}
    else:
        graph, inputs = BatchGraph(model), {"images": {1: "height", 2: "width"}}
        names = [*names, "counts"]
    if full_masks and has_masks:
        dynamic["mask_probs"] = {0: "detections", 1: "height", 2: "width"}
    with warnings.catch_warnings(), _plain_batched_nms():
        warnings.simplefilter("ignore")  # tracer warnings about Python scalars in torchvision
        torch.onnx.export(
            graph,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=names,
            dynamic_axes=inputs | dynamic,
        )

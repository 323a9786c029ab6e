"""`EagerModel`: a torchvision detector in eager mode as a `detect.runtime.backend.Backend`.

What the exported graph is checked against (parity), compared with (bench) and validated by
(training, ``detect eval --checkpoint``). Images are prepared exactly as the ONNX Runtime
`Detector` prepares them (same decoding, ``(H, W, 3) uint8`` RGB), run as a list through the model
on its device, and postprocessed by the same `detect.runtime.postprocess` with the model's
labels; masks come out pasted over the whole image (``RawDetections.masks``). The RPN's proposals
(xyxy pixels of the original image) ride along in ``RawDetections.proposals``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from detect.models.inputs import image_tensor
from detect.runtime.image import DEFAULT_MAX_PIXELS, to_rgb
from detect.runtime.model_card import DEFAULT_SCORE
from detect.runtime.postprocess import postprocess
from detect.runtime.shrink import boxes_to_original, shrink_for_model
from detect.structures import Detection, DetectOptions, ModelInfo, RawDetections


class EagerModel:
    """A torchvision Faster/Mask R-CNN ``model`` with its labels (``labels[k - 1]`` names label
    ``k``, ``category_ids[k - 1]`` is its category id)."""

    def __init__(
        self,
        model: nn.Module,
        labels: list[str],
        category_ids: list[int],
        name: str = "eager",
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.model = model.eval()
        self.max_pixels = max_pixels
        self.info = ModelInfo(
            name=name,
            version="eager",
            labels=list(labels),
            category_ids=[int(c) for c in category_ids],
            has_masks=bool(model.roi_heads.has_mask()),
            score_threshold=DEFAULT_SCORE,
        )

    @classmethod
    def from_checkpoint(cls, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> EagerModel:
        """The model of a `detect train` checkpoint, on the CPU."""
        from detect.models.checkpoint import load_checkpoint, model_from_checkpoint

        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt)
        return cls(
            model, list(ckpt["labels"]), list(ckpt["category_ids"]), Path(path).stem, max_pixels
        )

    def prepare(self, image: bytes | np.ndarray, color: str | None = None) -> np.ndarray:
        """``(H, W, 3) uint8`` RGB, as `detect.runtime.detector.Detector.prepare` makes it."""
        return to_rgb(image, color, self.max_pixels)

    @torch.inference_mode()
    def infer_batch(
        self, images: list[np.ndarray], options: DetectOptions | None = None
    ) -> list[RawDetections]:
        """One forward pass of the model over the list of ``(H, W, 3) uint8`` RGB images (each
        more than twice the model's input size shrunk first, as `Detector` does)."""
        device = next(self.model.parameters()).device
        transform = self.model.transform
        inputs = [
            shrink_for_model(rgb, int(transform.min_size[0]), int(transform.max_size))
            for rgb in images
        ]
        tensors = [image_tensor(small).to(device) for small, _, _ in inputs]
        captured: dict[str, Any] = {}
        hooks = [
            self.model.transform.register_forward_hook(
                lambda m, i, o: captured.update(sizes=o[0].image_sizes)
            ),
            self.model.rpn.register_forward_hook(lambda m, i, o: captured.update(proposals=o[0])),
        ]
        try:
            outputs = self.model(tensors)
        finally:
            for hook in hooks:
                hook.remove()
        raws = []
        for k, (rgb, out) in enumerate(zip(images, outputs, strict=True)):
            height, width = rgb.shape[:2]
            small, sx, sy = inputs[k]
            resized_h, resized_w = captured["sizes"][k]  # after the model's own resize
            scale = np.array([width / resized_w, height / resized_h] * 2, np.float32)
            masks = out["masks"][:, 0].float().cpu().numpy() if "masks" in out else None
            if masks is not None and small is not rgb:  # pasted on the shrunk image
                full = np.empty((len(masks), height, width), masks.dtype)
                for mask, into in zip(masks, full, strict=True):
                    into[:] = cv2.resize(mask, (width, height))
                masks = full
            raws.append(
                RawDetections(
                    boxes_to_original(out["boxes"].float().cpu().numpy(), sx, sy),
                    out["scores"].float().cpu().numpy(),
                    out["labels"].cpu().numpy().astype(np.int64),
                    (height, width),
                    masks=masks,
                    proposals=captured["proposals"][k].float().cpu().numpy() * scale,
                )
            )
        return raws

    def postprocess(
        self, raw: RawDetections, options: DetectOptions | None = None
    ) -> list[Detection]:
        """`detect.runtime.postprocess.postprocess` with this model's labels."""
        return postprocess(raw, options or DetectOptions(), self.info)

    def close(self) -> None:
        """Nothing to release."""

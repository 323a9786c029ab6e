"""`Detector`: an exported model on ONNX Runtime or OpenVINO, images in, `Detection`s out.

No torch on this path. It is a `detect.runtime.backend.Backend`, and its steps are public so that
servers can time and schedule them: `Detector.prepare` (bytes, or pixels with their color order
-> ``(H, W, 3) uint8`` RGB), `Detector.infer_batch` (the ONNX graph: raw xyxy detections and
low-resolution mask probabilities) and `Detector.postprocess` (`detect.runtime.postprocess`:
thresholds, class filter, optional class-agnostic NMS, pasted masks traced to polygons);
`Detector.detect` runs all three. The model is checked once, when it is loaded: its card, the
file's sha256 against the card, and (for exports that record it) the graph's class count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detect.errors import ModelError
from detect.runtime.engines import open_engine
from detect.runtime.image import DEFAULT_MAX_PIXELS, to_rgb
from detect.runtime.model_card import ModelCard, card_path
from detect.runtime.postprocess import postprocess
from detect.structures import Detection, DetectOptions, ModelInfo, RawDetections


def check_model(model_path: Path) -> ModelCard:
    """The model's card, once the file exists and its sha256 matches the card's."""
    if not model_path.is_file():
        raise ModelError(f"model {model_path} not found; export one with `detect export`")
    card = ModelCard.read(card_path(model_path))
    card.check_file(model_path)
    return card


class Detector:
    """An exported model loaded for inference.

    Args:
        model_path: ``NAME.onnx``; its model card ``NAME.json`` must sit next to it and its
            sha256 must match.
        device: "auto" (CUDA when ONNX Runtime has it, else CPU), "cpu" or "cuda".
        backend: the engine, "auto", "onnxruntime" or "openvino" (`detect.runtime.engines`).
        max_pixels: images with more pixels are refused before decoding.
        threads: intra-op threads for the CPU provider (0: ONNX Runtime's default).
        warmup_runs: graph runs on a gray ``min_size`` square before the first real image
            (CUDA picks its kernels and ONNX Runtime sizes its memory arena on the first ones).
        card: the model's card as `check_model` returned it, when the caller has checked the
            file already (the server does, before it listens); None: checked here.
    """

    def __init__(
        self,
        model_path: Path | str,
        device: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int = 0,
        warmup_runs: int = 1,
        card: ModelCard | None = None,
        backend: str = "onnxruntime",
    ) -> None:
        self.model_path = Path(model_path)
        self.card = card if card is not None else check_model(self.model_path)
        self.max_pixels = max_pixels
        self.engine = open_engine(self.model_path, backend, device, threads)
        self.provider = self.engine.provider
        self._check_classes()
        card = self.card
        self.info = ModelInfo(
            name=self.name,
            version=self.version,
            labels=card.labels,
            category_ids=card.category_ids,
            has_masks=card.has_masks,
            score_threshold=float(card.thresholds["score"]),
            mask_threshold=float(card.thresholds["mask"]),
            agnostic_nms=card.agnostic_nms,
            agnostic_nms_iou=card.agnostic_nms_iou,
        )
        self._warm_up(warmup_runs)

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    @property
    def name(self) -> str:
        """The model's name: its file name without ``.onnx``."""
        return self.model_path.stem

    @property
    def version(self) -> str:
        """The model's version: the first 12 hex digits of the ONNX file's sha256."""
        return self.card.sha256[:12]

    def _check_classes(self) -> None:
        """The graph's class count (recorded by `detect export`) against the card's labels."""
        recorded = self.engine.num_classes
        if recorded is not None and recorded != len(self.card.labels):
            raise ModelError(
                f"{self.model_path} predicts {recorded} classes but its model card "
                f"{card_path(self.model_path)} names {len(self.card.labels)}; restore the card "
                "that came with it"
            )

    def _warm_up(self, runs: int) -> None:
        side = int(self.card.input["min_size"])
        gray = np.full((side, side, 3), 114, np.uint8)
        for _ in range(runs):
            self.infer(gray)

    def prepare(self, image: bytes | np.ndarray, color: str | None = None) -> np.ndarray:
        """``(H, W, 3) uint8`` RGB from encoded bytes, or from ``(H, W)``, ``(H, W, 3)`` or
        ``(H, W, 4)`` uint8 pixels with ``color`` "RGB" or "BGR" (their channel order).

        Raises `detect.runtime.image.ImageError` for anything that is not a usable image.
        """
        return to_rgb(image, color, self.max_pixels)

    def infer(self, rgb: np.ndarray) -> RawDetections:
        """Run the graph on one ``(H, W, 3) uint8`` RGB image; all its detections."""
        values = self.engine.run(rgb)
        return RawDetections(
            values["boxes"].astype(np.float32, copy=False),
            values["scores"].astype(np.float32, copy=False),
            values["labels"].astype(np.int64, copy=False),
            (rgb.shape[0], rgb.shape[1]),
            values.get("mask_probs"),
        )

    def infer_batch(
        self, images: list[np.ndarray], options: DetectOptions | None = None
    ) -> list[RawDetections]:
        """`infer` for several ``(H, W, 3) uint8`` RGB images, results in the same order.

        The exported graph takes one image (see `detect.export`), so the images run one after
        another in this call; ONNX Runtime's intra-op threads already use every core for each.
        ``options`` are not needed before `postprocess`.
        """
        return [self.infer(rgb) for rgb in images]

    def postprocess(
        self, raw: RawDetections, options: DetectOptions | None = None, **fields: Any
    ) -> list[Detection]:
        """`detect.runtime.postprocess.postprocess` with this model's defaults. ``options``, or
        the `DetectOptions` fields as keywords."""
        return postprocess(raw, DetectOptions.of(options, **fields), self.info)

    def detect(
        self,
        image: bytes | np.ndarray,
        color: str | None = None,
        options: DetectOptions | None = None,
        **fields: Any,
    ) -> list[Detection]:
        """Detections in one image (encoded bytes, or pixels with ``color``), best first;
        ``options``, or the `DetectOptions` fields as keywords."""
        return self.postprocess(self.infer(self.prepare(image, color)), options, **fields)

    def close(self) -> None:
        """Nothing to release beyond what garbage collection does (the session)."""

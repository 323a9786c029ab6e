"""`Detector`: an exported model on ONNX Runtime, images in, TLWH + label + polygons out.

No torch on this path. The steps are public so that servers can time and schedule them:
`Detector.prepare` (bytes or array -> ``(H, W, 3) uint8`` RGB), `Detector.infer` (the ONNX graph:
raw xyxy detections and low-resolution mask probabilities) and `Detector.postprocess`
(thresholds, class filter, optional class-agnostic NMS, TLWH boxes, pasted masks traced to
polygons); `Detector.detect` runs all three.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detect.errors import ConfigError, ModelError
from detect.ops.nms import nms
from detect.runtime.image import DEFAULT_MAX_PIXELS, array_to_rgb, decode_image
from detect.runtime.masks import paste_mask
from detect.runtime.model_card import ModelCard, card_path
from detect.runtime.polygons import Polygon, mask_to_polygons

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Detection:
    """One detected object in original-image pixels.

    ``top = y1``, ``left = x1``, ``width = x2 - x1``, ``height = y2 - y1`` of the xyxy box;
    ``label`` is the class name and ``class_id`` its category id in the training annotations.
    ``polygons`` (mask models, when asked for) are the object's parts, largest first.
    """

    top: float
    left: float
    width: float
    height: float
    label: str
    class_id: int
    score: float
    polygons: list[Polygon] = field(default_factory=list)

    def line(self) -> str:
        """``top,left,width,height,label,score`` (pixels to 0.1, score to 0.001)."""
        return (
            f"{self.top:.1f},{self.left:.1f},{self.width:.1f},{self.height:.1f},"
            f"{self.label},{self.score:.3f}"
        )


@dataclass
class RawDetections:
    """The graph's outputs for one image: ``boxes (N, 4)`` xyxy float32 pixels, ``scores
    (N,)``, ``labels (N,)`` model labels ``1..K``, ``mask_probs (N, M, M)`` or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    mask_probs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> RawDetections:
        probs = None if self.mask_probs is None else self.mask_probs[keep]
        return RawDetections(self.boxes[keep], self.scores[keep], self.labels[keep], probs)


def _providers(device: str) -> list[str]:
    if device not in DEVICES:
        raise ConfigError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):  # finds CUDA/cuDNN installed as pip packages or by torch
        try:
            ort.preload_dlls()
        except Exception as exc:  # missing libraries show up as no CUDA below
            log.debug("onnxruntime.preload_dlls: %s", exc)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(
            "device cuda: this onnxruntime has no CUDAExecutionProvider; install the `gpu` extra "
            "(onnxruntime-gpu) on a machine with an NVIDIA driver, or use --device cpu"
        )
    return ["CPUExecutionProvider"]


class Detector:
    """An exported model loaded for inference.

    Args:
        model_path: ``NAME.onnx``; its model card ``NAME.json`` must sit next to it and its
            sha256 must match.
        device: "auto" (CUDA when ONNX Runtime has it, else CPU), "cpu" or "cuda".
        max_pixels: images with more pixels are refused before decoding.
        threads: intra-op threads for the CPU provider (0: ONNX Runtime's default).
        warmup_runs: graph runs on a gray ``min_size`` square before the first real image
            (CUDA picks its kernels and ONNX Runtime sizes its memory arena on the first ones).
    """

    def __init__(
        self,
        model_path: Path | str,
        device: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int = 0,
        warmup_runs: int = 1,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"model {self.model_path} not found; export one with `detect export`")
        self.card = ModelCard.read(card_path(self.model_path))
        self.card.check_file(self.model_path)
        self.max_pixels = max_pixels
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # no warnings about nodes placed on the CPU
        providers = _providers(device)
        try:
            self.session = ort.InferenceSession(str(self.model_path), options, providers=providers)
        except Exception as exc:  # ORT raises its own types for bad files
            first = str(exc).splitlines()[0][:300]
            raise ModelError(f"ONNX Runtime cannot load {self.model_path}: {first}") from None
        self.provider = self.session.get_providers()[0]
        self._outputs = [o.name for o in self.session.get_outputs()]
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

    def _warm_up(self, runs: int) -> None:
        side = int(self.card.input["min_size"])
        gray = np.full((side, side, 3), 114, np.uint8)
        for _ in range(runs):
            self.infer(gray)

    def prepare(self, image: bytes | np.ndarray, color: str | None = None) -> np.ndarray:
        """``(H, W, 3) uint8`` RGB from encoded bytes, or from an array with ``color`` "RGB"/"BGR".

        Raises `detect.runtime.image.ImageError` for anything that is not a usable image.
        """
        if isinstance(image, bytes | bytearray | memoryview):
            return decode_image(bytes(image), self.max_pixels)
        if color is None:
            raise ConfigError("an image array needs color='RGB' or color='BGR'")
        return array_to_rgb(np.asarray(image), color, self.max_pixels)

    def infer(self, rgb: np.ndarray) -> RawDetections:
        """Run the graph on one ``(H, W, 3) uint8`` RGB image; all its detections."""
        values = dict(zip(self._outputs, self.session.run(None, {"image": rgb}), strict=True))
        return RawDetections(
            values["boxes"].astype(np.float32, copy=False),
            values["scores"].astype(np.float32, copy=False),
            values["labels"].astype(np.int64, copy=False),
            values.get("mask_probs"),
        )

    def infer_batch(self, images: list[np.ndarray]) -> list[RawDetections]:
        """`infer` for several ``(H, W, 3) uint8`` RGB images, results in the same order.

        The exported graph takes one image (see `detect.export`), so the images run one after
        another in this call; ONNX Runtime's intra-op threads already use every core for each.
        """
        return [self.infer(rgb) for rgb in images]

    def class_labels(self, classes: Iterable[str | int]) -> set[int]:
        """Model labels (1..K) for class names or category ids (ints or digit strings)."""
        wanted = set()
        for c in classes:
            if isinstance(c, str) and c in self.card.labels:
                wanted.add(self.card.labels.index(c) + 1)
            elif str(c).isdigit() and int(c) in self.card.category_ids:
                wanted.add(self.card.category_ids.index(int(c)) + 1)
            else:
                raise ConfigError(
                    f"unknown class {c!r}: this model has {', '.join(self.card.labels)} "
                    f"(category ids {self.card.category_ids})"
                )
        return wanted

    def postprocess(
        self,
        raw: RawDetections,
        height: int,
        width: int,
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        classes: Iterable[str | int] | None = None,
        agnostic_nms: bool | None = None,
        polygons: bool = True,
        polygon_tolerance: float = 1.0,
        min_polygon_area: float = 4.0,
    ) -> list[Detection]:
        """Threshold, filter and convert `raw` for an image of ``height x width`` pixels.

        In this order: ``score_threshold`` (default: the card's ``thresholds.score``) drops
        lower scores; ``classes`` (names or category ids) keeps those classes; ``agnostic_nms``
        (default: the card's ``thresholds.agnostic_nms``, false for older cards) runs greedy NMS
        over the remaining xyxy boxes regardless of class (`detect.ops.nms.nms`, the same as
        ``torchvision.ops.nms``): of boxes overlapping with IoU above the card's
        ``thresholds.agnostic_nms_iou`` (default 0.7) only the highest-scoring one stays, so one
        object labelled as two classes gets one box (the graph's NMS works within each class
        only); ``max_detections`` then keeps the highest-scoring ones. Masks are pasted (at
        ``thresholds.mask``) and traced only for the detections kept.
        """
        if polygon_tolerance < 0:
            raise ConfigError(f"polygon tolerance {polygon_tolerance}: use 0 or more pixels")
        threshold = self.card.thresholds["score"] if score_threshold is None else score_threshold
        agnostic = self.card.agnostic_nms if agnostic_nms is None else agnostic_nms
        keep = raw.scores >= threshold
        if classes is not None:
            keep &= np.isin(raw.labels, list(self.class_labels(classes)))
        index = np.flatnonzero(keep)
        if agnostic:
            # nms returns its kept boxes by decreasing score, equal scores by index, like below
            index = index[nms(raw.boxes[index], raw.scores[index], self.card.agnostic_nms_iou)]
        else:
            index = index[np.argsort(-raw.scores[index], kind="stable")]
        if max_detections is not None:
            index = index[:max_detections]
        kept = raw.select(index)
        if len(kept) and kept.labels.max() > len(self.card.labels):
            raise ModelError(
                f"{self.model_path} predicted label {kept.labels.max()} but its model card names "
                f"only {len(self.card.labels)} classes; restore the card that came with it"
            )
        mask_threshold = self.card.thresholds["mask"]
        detections = []
        for i in range(len(kept)):
            x1, y1, x2, y2 = (float(v) for v in kept.boxes[i])
            label = int(kept.labels[i])
            parts: list[Polygon] = []
            if polygons and kept.mask_probs is not None:
                crop, x0, y0 = paste_mask(kept.mask_probs[i], kept.boxes[i], height, width)
                if crop.size:
                    parts = mask_to_polygons(
                        crop > mask_threshold,
                        polygon_tolerance,
                        min_polygon_area,
                        offset=(float(x0), float(y0)),
                    )
            detections.append(
                Detection(
                    top=y1,
                    left=x1,
                    width=x2 - x1,
                    height=y2 - y1,
                    label=self.card.labels[label - 1],
                    class_id=self.card.category_ids[label - 1],
                    score=float(kept.scores[i]),
                    polygons=parts,
                )
            )
        return detections

    def detect(
        self,
        image: bytes | np.ndarray,
        color: str | None = None,
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        classes: Iterable[str | int] | None = None,
        agnostic_nms: bool | None = None,
        polygons: bool = True,
        polygon_tolerance: float = 1.0,
        min_polygon_area: float = 4.0,
    ) -> list[Detection]:
        """Detections in one image (encoded bytes, or an array with ``color``), best first;
        the keyword options are `postprocess`'s."""
        rgb = self.prepare(image, color)
        raw = self.infer(rgb)
        return self.postprocess(
            raw,
            rgb.shape[0],
            rgb.shape[1],
            score_threshold=score_threshold,
            max_detections=max_detections,
            classes=classes,
            agnostic_nms=agnostic_nms,
            polygons=polygons,
            polygon_tolerance=polygon_tolerance,
            min_polygon_area=min_polygon_area,
        )

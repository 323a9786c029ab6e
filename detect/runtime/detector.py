"""`Detector`: an exported model on ONNX Runtime or OpenVINO, images in, `Detection`s out.

No torch on this path. It is a `detect.runtime.backend.Backend`, and its steps are public so that
servers can time and schedule them: `Detector.prepare` (bytes, or pixels with their color order
-> ``(H, W, 3) uint8`` RGB), `Detector.infer_batch` (the ONNX graph: raw xyxy detections and
low-resolution mask probabilities) and `Detector.postprocess` (`detect.runtime.postprocess`:
thresholds, class filter, optional class-agnostic NMS, pasted masks traced to polygons);
`Detector.detect` runs all three. The model is checked once, when it is loaded: its card, the
file's sha256 against the card, and (for exports that record it) the graph's class count.

A model exported with batch graphs (``--batch-sizes``) runs each group of same-sized images of an
`infer_batch` call through them: as few graph calls as its batch sizes allow (7 images with
graphs for 2 and 4: one call of 4, one of 2, one single), with the results of single images
(to float rounding: 1e-5 in scores on the tests' model).
On ONNX Runtime only: OpenVINO runs them wrongly (see `Detector.__init__`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from detect.errors import ModelError, UsageError
from detect.runtime.engines import Engine, open_engine
from detect.runtime.image import DEFAULT_MAX_PIXELS, to_rgb
from detect.runtime.model_card import ModelCard, batch_graph_path, card_path
from detect.runtime.postprocess import postprocess
from detect.runtime.shrink import boxes_to_original, shrink_for_model
from detect.structures import Detection, DetectOptions, ModelInfo, RawDetections

log = logging.getLogger(__name__)


def plan_batches(count: int, batch_sizes: list[int]) -> list[int]:
    """How ``count`` same-sized images run: the largest batch graph that fits, again, until the
    rest is smaller than every batch size, then one at a time. ``plan_batches(7, [2, 4])`` is
    ``[4, 2, 1]``."""
    plan = []
    for size in sorted(batch_sizes, reverse=True):
        while count >= size:
            plan.append(size)
            count -= size
    return plan + [1] * count


def _not_a_model(model_path: Path) -> str | None:
    """What ``model_path`` is when it is something else than an exported ``NAME.onnx`` that a
    verb is often given by mistake (its model card, a folder, a training checkpoint), with the
    fix; None otherwise."""
    if model_path.is_dir():
        return (
            f"{model_path} is a folder: pass a .onnx file "
            f"(or serve a model repository with --models {model_path})"
        )
    suffix = model_path.suffix.lower()
    if suffix == ".json":
        return f"{model_path} is a model card: pass its model, {model_path.with_suffix('.onnx')}"
    if suffix in (".pt", ".pth"):
        return (
            f"{model_path} is a training checkpoint: export it first with "
            f"`detect export --checkpoint {model_path} --out models/{model_path.stem}.onnx`"
        )
    return None


def check_model(model_path: Path) -> ModelCard:
    """The model's card, once the file exists and its sha256 matches the card's."""
    problem = _not_a_model(model_path)
    if problem is not None:  # a bad value for --model (a site's model:): usage, exit 2
        raise UsageError(problem)
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
        backend: the engine, "auto" (OpenVINO on the CPU when installed, else ONNX Runtime),
            "onnxruntime" or "openvino" (`detect.runtime.engines`).
        max_pixels: images with more pixels are refused before decoding.
        threads: intra-op threads on the CPU (0: the engine's default, one per core).
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
        backend: str = "auto",
    ) -> None:
        self.model_path = Path(model_path)
        self.card = card if card is not None else check_model(self.model_path)
        self.max_pixels = max_pixels
        self.engine = open_engine(self.model_path, backend, device, threads)
        self.provider = self.engine.provider
        self._check_classes()
        self.batch_engines: dict[int, Engine] = {}
        for batch in self.card.batch_sizes:  # on the engine chosen for single images
            self.card.check_file(self.model_path, batch)
            if self.engine.name == "openvino":
                # OpenVINO 2026.4 returns wrong mask_probs for the images after one without
                # detections in a batch graph, and runs batches no faster on a CPU than singles
                log.info("openvino: batch graphs are not used; images run one at a time")
                continue
            path = batch_graph_path(self.model_path, batch)
            self.batch_engines[batch] = open_engine(path, self.engine.name, device, threads)
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
        """``runs`` calls of the graph and of each batch graph on gray ``min_size`` squares."""
        side = int(self.card.input["min_size"])
        gray = np.full((side, side, 3), 114, np.uint8)
        for _ in range(runs):
            self.infer(gray)
            for size, engine in self.batch_engines.items():
                engine.run({"images": np.stack([gray] * size)})

    def prepare(self, image: bytes | np.ndarray, color: str | None = None) -> np.ndarray:
        """``(H, W, 3) uint8`` RGB from encoded bytes, or from ``(H, W)``, ``(H, W, 3)`` or
        ``(H, W, 4)`` uint8 pixels with ``color`` "RGB" or "BGR" (their channel order).

        Raises `detect.runtime.image.ImageError` for anything that is not a usable image.
        """
        return to_rgb(image, color, self.max_pixels)

    def infer(self, rgb: np.ndarray) -> RawDetections:
        """Run the graph on one ``(H, W, 3) uint8`` RGB image; all its detections."""
        return self.infer_batch([rgb])[0]

    def _shrink(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float]:
        spec = self.card.input
        return shrink_for_model(rgb, int(spec["min_size"]), int(spec["max_size"]))

    @staticmethod
    def _raw(
        values: dict[str, np.ndarray], size: tuple[int, int], sx: float, sy: float
    ) -> RawDetections:
        boxes = values["boxes"].astype(np.float32, copy=False)
        return RawDetections(
            boxes_to_original(boxes, sx, sy),
            values["scores"].astype(np.float32, copy=False),
            values["labels"].astype(np.int64, copy=False),
            size,
            values.get("mask_probs"),
        )

    def infer_batch(
        self, images: list[np.ndarray], options: DetectOptions | None = None
    ) -> list[RawDetections]:
        """`infer` for several ``(H, W, 3) uint8`` RGB images, results in the same order.

        An image more than twice the model's input size is shrunk to it first
        (`detect.runtime.shrink`); boxes come back in the original image's pixels. Images of the
        same size then run through the model's batch graphs, largest batch first
        (`plan_batches`); the rest one at a time (intra-op threads use every core for each).
        ``options`` are not needed before `postprocess`.
        """
        results: list[RawDetections | None] = [None] * len(images)
        inputs = [self._shrink(rgb) for rgb in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (small, _, _) in enumerate(inputs):
            groups.setdefault(small.shape, []).append(index)
        for indices in groups.values():
            start = 0
            for size in plan_batches(len(indices), list(self.batch_engines)):
                chunk = indices[start : start + size]
                start += size
                if size == 1:
                    small, sx, sy = inputs[chunk[0]]
                    values = self.engine.run({"image": small})
                    results[chunk[0]] = self._raw(values, images[chunk[0]].shape[:2], sx, sy)
                    continue
                stacked = np.stack([inputs[i][0] for i in chunk])
                values = self.batch_engines[size].run({"images": stacked})
                counts = values.pop("counts")
                ends = np.cumsum(counts)
                for i, begin, end in zip(chunk, ends - counts, ends, strict=True):
                    rows = {name: value[begin:end] for name, value in values.items()}
                    _, sx, sy = inputs[i]
                    results[i] = self._raw(rows, images[i].shape[:2], sx, sy)
        return results  # type: ignore[return-value]

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

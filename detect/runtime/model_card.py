"""The sidecar JSON (model card) that travels with every exported ONNX file.

`models/NAME.onnx` + `models/NAME.json` is the whole hand-off from training to serving. The card
says what the graph is (arch, backbone, RoI op, precision), what goes in and comes out, the
labels, the default thresholds, how it was trained and scored, and the sha256 of the ONNX file,
which the runtime checks before loading it.

Graph contract (``format`` = "detect-model/1"):

- input ``image``: ``(H, W, 3) uint8`` RGB, any size; the graph converts to float, divides by
  255, normalises with ``input.mean``/``input.std`` and resizes so the short side is
  ``input.min_size`` (long side at most ``input.max_size``), as torchvision's transform does.
- outputs ``boxes`` ``(N, 4) float32`` xyxy pixels of the input image, ``labels`` ``(N,) int64``
  model labels ``1..K`` (``labels[k - 1]`` is the name), ``scores`` ``(N,) float32`` sorted
  descending per class; mask models add ``mask_probs`` ``(N, M, M) float32``, the mask
  probabilities of each detection's class over its box, pasted by `detect.runtime.masks`.
  ``N <= thresholds.max_detections``, all with ``score >= thresholds.graph_score``.

Thresholds the runtime applies after the graph (defaults for every request): ``score`` (keep
detections scoring at least this), ``mask`` (mask probability traced to polygons),
``agnostic_nms`` (bool: also suppress overlapping boxes of *different* classes, keeping the
highest-scoring one; the graph's own NMS, at ``nms_iou``, works within each class) and
``agnostic_nms_iou`` (the xyxy box IoU above which that cross-class suppression removes a box).
Cards written before the last two existed load with ``agnostic_nms`` false and
``agnostic_nms_iou`` `AGNOSTIC_NMS_IOU`.

Batch graphs (``batch_graphs``, from ``detect export --batch-sizes``): for each batch size B,
``NAME.bB.onnx`` beside ``NAME.onnx`` (`batch_graph_path`) and its sha256. Input ``images``
``(B, H, W, 3) uint8`` RGB, B images of one size; outputs as above for all B images, rows in
image order, plus ``counts`` ``(B,) int64``, each image's number of rows. An int8 model
(``precision`` "int8") records its calibration and measured AP cost in ``quantization``.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from detect.errors import ModelError
from detect.runtime.sources import sha256_file

MODEL_FORMAT = "detect-model/1"

AGNOSTIC_NMS_IOU = 0.7
"""Default ``thresholds.agnostic_nms_iou``: the IoU above which class-agnostic NMS suppresses a
box of another class. Higher than torchvision's per-class 0.5 (``nms_iou``) so that two objects
of different classes that merely overlap (a person on a bicycle) both survive, while one object
labelled twice (nearly the same box) keeps one label; Ultralytics' default NMS IoU is 0.7 too."""

DEFAULT_SCORE = 0.5
"""The score threshold `detect export` writes to a card by default, and the operating threshold
where there is no card (a checkpoint, a predictions file)."""

NUM_CLASSES_KEY = "detect.num_classes"
"""ONNX metadata key under which `detect export` records the graph's class count (without
background), checked against the card's labels when the model is loaded."""


def card_path(model_path: Path) -> Path:
    """`models/NAME.json` for `models/NAME.onnx`."""
    return Path(model_path).with_suffix(".json")


def card_fields(model_path: Path) -> dict[str, Any]:
    """The card of ``model_path`` as raw JSON fields, empty when it cannot be read: for a
    glance that must not fail (which file to run, a version's name); `ModelCard.read` checks
    a card and says what is wrong."""
    try:
        data = json.loads(card_path(model_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def batch_graph_path(model_path: Path, batch: int) -> Path:
    """`models/NAME.bB.onnx`, the graph of `models/NAME.onnx` that takes ``batch`` images."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.b{batch}.onnx")


@dataclass
class ModelCard:
    """Everything serving needs to know about an exported model (see the module docstring)."""

    name: str
    arch: str
    backbone: str
    roi: str
    labels: list[str]
    category_ids: list[int]
    input: dict[str, Any]
    outputs: dict[str, str]
    precision: str
    thresholds: dict[str, float]
    sha256: str
    opset: int
    detect_version: str
    exported_at: str
    source: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    batch_graphs: dict[str, str] = field(default_factory=dict)  # batch size -> sha256
    quantization: dict[str, Any] = field(default_factory=dict)
    format: str = MODEL_FORMAT

    @property
    def has_masks(self) -> bool:
        return self.arch == "mask_rcnn"

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes that have a graph of their own (``batch_graphs``), ascending."""
        return sorted(int(b) for b in self.batch_graphs)

    @property
    def agnostic_nms(self) -> bool:
        """Whether the runtime suppresses overlapping boxes across classes by default
        (``thresholds.agnostic_nms``; false when the card predates it)."""
        return bool(self.thresholds.get("agnostic_nms", False))

    @property
    def agnostic_nms_iou(self) -> float:
        """IoU of xyxy boxes above which class-agnostic NMS suppresses the lower-scoring box
        (``thresholds.agnostic_nms_iou``; `AGNOSTIC_NMS_IOU` when the card predates it)."""
        return float(self.thresholds.get("agnostic_nms_iou", AGNOSTIC_NMS_IOU))

    def write(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """Load and validate a card; ModelError naming the file and the fix otherwise."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(
                f"model card {path} not found; it is written next to the .onnx by `detect export`"
            )
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"model card {path} is not valid JSON ({exc}); re-export") from None
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path} is not a `detect export` model card ({MODEL_FORMAT})")
        fields = cls.__dataclass_fields__
        required = [
            k
            for k, f in fields.items()
            if f.default is MISSING and f.default_factory is MISSING and k not in data
        ]
        if required:
            raise ModelError(f"model card {path} lacks {', '.join(required)}; re-export")
        card = cls(**{k: v for k, v in data.items() if k in fields})
        problem = card._problem()
        if problem:
            raise ModelError(f"model card {path}: {problem}; re-export or restore it")
        return card

    def _problem(self) -> str | None:
        """What is inconsistent in the card's contents, or None."""
        if not isinstance(self.labels, list) or not self.labels:
            return "labels must be a non-empty list of class names"
        if not isinstance(self.category_ids, list) or len(self.category_ids) != len(self.labels):
            return "category_ids must list one id per label"
        for key in ("min_size", "max_size"):
            if not isinstance(self.input, dict) or not isinstance(self.input.get(key), int):
                return f"input.{key} must be an integer"
        for key in ("score", "mask"):
            value = self.thresholds.get(key) if isinstance(self.thresholds, dict) else None
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                return f"thresholds.{key} must be a number in [0, 1]"
        if not isinstance(self.thresholds.get("agnostic_nms", False), bool):
            return "thresholds.agnostic_nms must be true or false"
        iou = self.thresholds.get("agnostic_nms_iou", AGNOSTIC_NMS_IOU)
        if isinstance(iou, bool) or not isinstance(iou, int | float) or not 0 <= iou <= 1:
            return "thresholds.agnostic_nms_iou must be a number in [0, 1]"
        if not isinstance(self.batch_graphs, dict) or not all(
            isinstance(b, str)
            and b.isdecimal()
            and b == str(int(b))
            and int(b) >= 2
            and isinstance(h, str)
            for b, h in self.batch_graphs.items()
        ):
            return "batch_graphs must map batch sizes of 2 or more to sha256 digests"
        return None

    def check_file(self, model_path: Path, batch: int = 1) -> None:
        """ModelError unless `model_path` (``NAME.onnx``) is the file this card was written for;
        ``batch`` > 1: the same for its batch graph of that size (`batch_graph_path`)."""
        path = Path(model_path) if batch == 1 else batch_graph_path(model_path, batch)
        expected = self.sha256 if batch == 1 else self.batch_graphs[str(batch)]
        if not path.is_file():
            raise ModelError(
                f"{path} not found; its model card {card_path(model_path)} lists it; put back "
                "the files that `detect export` wrote together, or re-export"
            )
        actual = sha256_file(path)
        if actual != expected:
            raise ModelError(
                f"{path} does not match its model card {card_path(model_path)} "
                f"(sha256 {actual[:12]}… vs {expected[:12]}…); put back the .onnx and .json "
                "that `detect export` wrote together, or re-export"
            )

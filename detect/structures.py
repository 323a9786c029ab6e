"""What a detector returns and what a caller asks of it: NumPy only (no ONNX Runtime, no torch).

Every module that makes, sends, draws or scores detections speaks these types: the ONNX Runtime
`Detector`, the torch eager model, the gRPC server and client, drawing, video, predict and eval.

Coordinates are pixels of the original image, x to the right and y down. Boxes are xyxy inside
(``[x1, y1, x2, y2]``, torchvision's format); TLWH (``[top, left, width, height]``) exists only at
the edges (the proto, text lines, JSONL), converted by `detect.ops.boxes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from detect.errors import ConfigError, UsageError
from detect.ops.boxes import tlwh_to_xyxy, xyxy_to_tlwh
from detect.rounding import BOX_DECIMALS, SCORE_DECIMALS


def _shoelace(ring: np.ndarray) -> float:
    """Signed area of a ``(K, 2)`` ring (positive when counter-clockwise in the x, y axes)."""
    x, y = ring.astype(np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@dataclass(frozen=True, eq=False)
class Polygon:
    """One connected part of an object, in image pixel coordinates.

    ``exterior`` is a ``(K, 2) float32`` ring of ``(x, y)`` points and each of ``holes`` a
    ``(K_i, 2) float32`` ring; rings are not closed. Exteriors run counter-clockwise and holes
    clockwise in the ``x, y`` axes (see `detect.runtime.polygons` for how they are traced).
    Compared by identity (arrays have no ``==``).
    """

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    def rings(self) -> list[np.ndarray]:
        """The exterior ring first, then the holes."""
        return [self.exterior, *self.holes]

    @property
    def area(self) -> float:
        """Area in square pixels: the exterior's minus the holes'."""
        return abs(_shoelace(self.exterior)) - sum(abs(_shoelace(h)) for h in self.holes)


@dataclass(frozen=True)
class Detection:
    """One detected object in original-image pixels.

    ``box`` is ``(x1, y1, x2, y2)``; ``top``, ``left``, ``width``, ``height`` are its TLWH view
    (``top = y1``, ``left = x1``, ``width = x2 - x1``, ``height = y2 - y1``). ``label`` is the
    class name and ``class_id`` its category id in the training annotations. ``polygons`` (mask
    models, when asked for) are the object's parts, largest first.
    """

    box: tuple[float, float, float, float]
    label: str
    class_id: int
    score: float
    polygons: list[Polygon] = field(default_factory=list)

    @classmethod
    def from_tlwh(
        cls,
        tlwh: Iterable[float],
        label: str,
        class_id: int,
        score: float,
        polygons: list[Polygon] | None = None,
    ) -> Detection:
        """A detection from a ``[top, left, width, height]`` box (as the proto carries it)."""
        x1, y1, x2, y2 = tlwh_to_xyxy(np.asarray(list(tlwh), np.float64)).tolist()
        return cls((x1, y1, x2, y2), label, class_id, score, polygons or [])

    @property
    def tlwh(self) -> tuple[float, float, float, float]:
        """``(top, left, width, height)`` of `box`."""
        top, left, width, height = xyxy_to_tlwh(np.asarray(self.box, np.float64)).tolist()
        return top, left, width, height

    top = property(lambda self: self.tlwh[0], doc="``y1``")
    left = property(lambda self: self.tlwh[1], doc="``x1``")
    width = property(lambda self: self.tlwh[2], doc="``x2 - x1``")
    height = property(lambda self: self.tlwh[3], doc="``y2 - y1``")

    def line(self) -> str:
        """``top,left,width,height,label,score``: pixels to 0.01, score to 0.0001 (the
        precision of every output, `detect.rounding`)."""
        box = ",".join(f"{v:.{BOX_DECIMALS}f}" for v in self.tlwh)
        return f"{box},{self.label},{self.score:.{SCORE_DECIMALS}f}"


@dataclass(frozen=True, eq=False)
class Detections:
    """One frame's objects as columns, row ``i`` being one object: the shape of supervision's
    ``Detections``, and the one detections object of the video path (the tracker, zones and
    lines, drawing and the JSONL writer take and return it).

    ``xyxy (N, 4)`` float64 pixels of the frame; ``labels (N,)`` class names (object array);
    ``class_ids (N,)`` int64 category ids of the training annotations; ``scores (N,)``
    float64; ``track_ids (N,)`` int64, -1 where no shown track owns the object; ``polygons``: N
    lists of `Polygon` (empty lists for box models or when polygons were not asked for).
    """

    xyxy: np.ndarray
    labels: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    polygons: tuple[list[Polygon], ...]

    @classmethod
    def of(
        cls,
        xyxy: Iterable[Iterable[float]] | np.ndarray,
        labels: Iterable[object],
        scores: Iterable[float] | None = None,
        class_ids: Iterable[int] | None = None,
        track_ids: Iterable[int] | None = None,
        polygons: Iterable[list[Polygon]] | None = None,
    ) -> Detections:
        """Columns from any sequences of one length N (scores: 1.0, class ids: -1, track ids:
        -1 and polygons: none where not given)."""
        boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
        n = len(boxes)
        names = np.empty(n, object)
        names[:] = list(labels)
        return cls(
            boxes,
            names,
            np.full(n, -1, np.int64) if class_ids is None else np.asarray(class_ids, np.int64),
            np.ones(n) if scores is None else np.asarray(scores, np.float64).reshape(n),
            np.full(n, -1, np.int64) if track_ids is None else np.asarray(track_ids, np.int64),
            tuple([] for _ in range(n)) if polygons is None else tuple(polygons),
        )

    @classmethod
    def from_list(cls, detections: Iterable[Detection]) -> Detections:
        """Columns of `Detection` rows (untracked)."""
        items = list(detections)
        return cls.of(
            [d.box for d in items],
            [d.label for d in items],
            [d.score for d in items],
            [d.class_id for d in items],
            polygons=[d.polygons for d in items],
        )

    def __len__(self) -> int:
        return len(self.scores)

    def tracked(self, track_ids: np.ndarray) -> Detections:
        """The same objects with ``track_ids (N,)``."""
        return replace(self, track_ids=np.asarray(track_ids, np.int64).reshape(len(self)))

    def tlwh(self) -> np.ndarray:
        """``(N, 4)`` ``[top, left, width, height]`` of the boxes (the edges' form)."""
        return xyxy_to_tlwh(self.xyxy)

    def rows(self) -> list[Detection]:
        """Each object as a `Detection` (for drawers that take rows)."""
        return [
            Detection(tuple(map(float, box)), str(label), int(cid), float(score), list(polys))
            for box, label, cid, score, polys in zip(
                self.xyxy, self.labels, self.class_ids, self.scores, self.polygons, strict=True
            )
        ]


@dataclass
class RawDetections:
    """A model's outputs for one image of ``image_size = (height, width)`` pixels, before
    thresholds: ``boxes (N, 4)`` xyxy float32 pixels, ``scores (N,)``, ``labels (N,)`` model
    labels ``1..K``, and for mask models either ``mask_probs (N, M, M)`` (the ONNX graph's
    low-resolution masks, pasted by `detect.runtime.masks`) or ``masks (N, H, W)`` (whole-image
    probabilities, as torchvision's eager model pastes them). ``proposals (P, 4)`` xyxy: the
    RPN's proposals, from models that expose them (the eager model), for proposal recall."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]
    mask_probs: np.ndarray | None = None
    masks: np.ndarray | None = None
    proposals: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> RawDetections:
        """The detections at ``keep`` (indices or a boolean mask), in that order."""
        return RawDetections(
            self.boxes[keep],
            self.scores[keep],
            self.labels[keep],
            self.image_size,
            None if self.mask_probs is None else self.mask_probs[keep],
            None if self.masks is None else self.masks[keep],
            self.proposals,
        )


@dataclass(frozen=True)
class ModelInfo:
    """What a caller of any backend knows of its model: ``labels[k - 1]`` is the name of model
    label ``k`` and ``category_ids[k - 1]`` its category id in the training annotations; the
    defaults that apply when `DetectOptions` leaves them unset."""

    name: str
    version: str
    labels: list[str]
    category_ids: list[int]
    has_masks: bool
    score_threshold: float
    mask_threshold: float = 0.5
    agnostic_nms: bool = False
    agnostic_nms_iou: float = 0.7

    def class_labels(self, classes: Iterable[str | int]) -> set[int]:
        """Model labels (1..K) for class names or category ids (ints or digit strings)."""
        wanted = set()
        for c in classes:
            if isinstance(c, str) and c in self.labels:
                wanted.add(self.labels.index(c) + 1)
            elif str(c).isdecimal() and int(c) in self.category_ids:
                wanted.add(self.category_ids.index(int(c)) + 1)
            else:
                raise UsageError(
                    f"unknown class {c!r}: this model has {', '.join(self.labels)} "
                    f"(category ids {self.category_ids})"
                )
        return wanted


class OptionError(ConfigError):
    """A `DetectOptions` field out of range. ``field`` is its name; the message is
    ``FIELD VALUE: FIX``, and each edge names the field as its users spell it (a flag:
    `detect.config.DetectSettings`' checks; the server: ``options.score_threshold``)."""

    def __init__(self, name: str, value: object, fix: str) -> None:
        super().__init__(f"{name} {value}: {fix}")
        self.field = name
        self.value = value
        self.fix = fix


@dataclass(frozen=True)
class DetectOptions:
    """What a caller asks of one detection call; checked when built, whoever builds it.

    ``score_threshold`` (0 to 1; None: the model card's) drops lower scores; ``classes`` (names
    or category ids, as strings; empty: all) keeps those classes; ``agnostic_nms`` (None: the
    model card's) suppresses overlapping boxes across classes; ``max_detections`` (1 or more;
    None: all) keeps the best; ``polygons`` traces masks to polygons with ``polygon_tolerance``
    pixels of simplification (0 or more), dropping parts under ``min_polygon_area`` square
    pixels. The class names are checked against a model by the backend that runs it.
    """

    score_threshold: float | None = None
    max_detections: int | None = None
    classes: tuple[str, ...] = ()
    agnostic_nms: bool | None = None
    polygons: bool = True
    polygon_tolerance: float = 1.0
    min_polygon_area: float = 4.0

    def __post_init__(self) -> None:
        score = self.score_threshold
        if score is not None and not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise OptionError("score_threshold", score, "use a value in [0, 1]")
        if self.max_detections is not None and self.max_detections < 1:
            raise OptionError("max_detections", self.max_detections, "use 1 or more")
        if not (math.isfinite(self.polygon_tolerance) and self.polygon_tolerance >= 0):
            raise OptionError("polygon_tolerance", self.polygon_tolerance, "use 0 or more pixels")
        if not (math.isfinite(self.min_polygon_area) and self.min_polygon_area >= 0):
            raise OptionError(
                "min_polygon_area", self.min_polygon_area, "use 0 or more square pixels"
            )
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes or ()))

    @classmethod
    def of(cls, options: DetectOptions | None = None, **fields: object) -> DetectOptions:
        """``options``, or one built from keyword fields (None: the default); not both. An
        unknown keyword is a `ConfigError` naming it."""
        if options is not None and fields:
            raise ConfigError("give DetectOptions or its fields as keywords, not both")
        if options is not None:
            return options
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown detect options: {', '.join(unknown)}")
        return cls(**{k: v for k, v in fields.items() if v is not None})  # type: ignore[arg-type]

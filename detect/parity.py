"""`detect parity`: the PyTorch checkpoint and its ONNX export on the same images, compared.

Both sides get the same decoded ``(H, W, 3) uint8`` RGB pixels. Per image, detections are paired
greedily (PyTorch detections by descending score, each to the unpaired ONNX detection of the
same label with the highest box IoU). Only detections scoring at least a stated floor on either
side are compared (`Tolerance.floor`, or the model card's default threshold for fp16): below it a
1e-7 difference decides whether a box survives the graph's own score cut, top-k or NMS, so those
are counted and reported apart, never judged. A compared pair *matches* when its box IoU and score
difference are within the precision's tolerances; the run passes when something was compared and
matches are at least `matched` of the compared detections (per image the larger of the two
counts, summed). Masks are compared as binary masks at 0.5: PyTorch's in-model paste against the
runtime's paste of the low-resolution output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from detect.config import Engine, exact_engine
from detect.errors import DataError, DetectError
from detect.models.eager import EagerModel
from detect.ops import box_iou
from detect.progress import StartProgress, silent
from detect.runtime.backend import Backend
from detect.runtime.detector import Detector
from detect.runtime.masks import binary_masks
from detect.runtime.sources import find_images, read_image
from detect.settings import FLAGS, Spelling, setting
from detect.structures import DetectOptions, RawDetections


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria: compared pairs with IoU >= `iou` and |Δscore| <= `score` match; the run
    passes when matches >= `matched` of the compared detections. Compared are the detections
    scoring at least `floor` on either side or, with `operating_point`, at least the model
    card's default threshold (the ones the runtime returns by default)."""

    iou: float
    score: float
    matched: float
    floor: float = 0.05  # torchvision's default box_score_thresh
    operating_point: bool = False


TOLERANCES = {
    "fp32": Tolerance(iou=0.99, score=1e-3, matched=0.99),
    # float16 moves the low-score tail (near-duplicates around NMS) by up to ~0.1: judged on the
    # detections that are returned by default
    "fp16": Tolerance(iou=0.95, score=1e-2, matched=0.99, operating_point=True),
}


@dataclass
class ParityReport:
    """Pairs and timings over all images of a run."""

    precision: str
    tolerance: Tolerance
    min_score: float  # detections below it on both sides are counted, not compared
    images: int = 0
    torch_detections: int = 0
    onnx_detections: int = 0
    torch_below: int = 0  # detections under `min_score`, each side
    onnx_below: int = 0
    expected: int = 0  # sum over images of max(torch, onnx) detections scoring >= min_score
    matched: int = 0
    box_ious: list[float] = field(default_factory=list)
    score_deltas: list[float] = field(default_factory=list)
    box_deltas: list[float] = field(default_factory=list)
    mask_ious: list[float] = field(default_factory=list)
    torch_ms: list[float] = field(default_factory=list)
    onnx_ms: list[float] = field(default_factory=list)

    @property
    def matched_fraction(self) -> float:
        return self.matched / self.expected if self.expected else 0.0

    @property
    def passed(self) -> bool:
        """At least one detection compared, and enough of the compared ones matched."""
        return self.expected > 0 and self.matched_fraction >= self.tolerance.matched

    def summary(self) -> dict:
        """The figures as a JSON-ready dict (also stored in the model card by `export --verify`)."""

        def stat(values: list[float], fn) -> float | None:
            return round(float(fn(values)), 6) if values else None

        return {
            "precision": self.precision,
            "passed": self.passed,
            "images": self.images,
            "torch_detections": self.torch_detections,
            "onnx_detections": self.onnx_detections,
            "compared": self.expected,
            "torch_below_floor": self.torch_below,
            "onnx_below_floor": self.onnx_below,
            "matched_percent": round(100 * self.matched_fraction, 2),
            "box_iou_mean": stat(self.box_ious, np.mean),
            "box_iou_min": stat(self.box_ious, np.min),
            "box_max_abs_diff_px": stat(self.box_deltas, np.max),
            "score_max_abs_diff": stat(self.score_deltas, np.max),
            "mask_iou_mean": stat(self.mask_ious, np.mean),
            "mask_iou_min": stat(self.mask_ious, np.min),
            "torch_ms_median": stat(self.torch_ms, np.median),
            "onnx_ms_median": stat(self.onnx_ms, np.median),
            "criteria": {
                "compared_score_at_least": self.min_score,
                "box_iou_at_least": self.tolerance.iou,
                "score_diff_at_most": self.tolerance.score,
                "matched_at_least_percent": 100 * self.tolerance.matched,
            },
        }

    def add(
        self,
        ours: RawDetections,
        theirs: RawDetections,
        our_masks: np.ndarray | None = None,
        their_masks: np.ndarray | None = None,
    ) -> None:
        """Count one image: PyTorch's and ONNX Runtime's detections, with their ``(N, H, W)
        bool`` masks for Mask R-CNN. Detections under `min_score` on both sides of a pair (or
        unpaired) are counted apart and never judged."""
        self.images += 1
        self.torch_detections += len(ours)
        self.onnx_detections += len(theirs)
        ours_above = int((ours.scores >= self.min_score).sum())
        theirs_above = int((theirs.scores >= self.min_score).sum())
        self.torch_below += len(ours) - ours_above
        self.onnx_below += len(theirs) - theirs_above
        self.expected += max(ours_above, theirs_above)
        for i, j, iou in _pairs(ours, theirs):
            if max(ours.scores[i], theirs.scores[j]) < self.min_score:
                continue
            score_delta = abs(float(ours.scores[i]) - float(theirs.scores[j]))
            self.box_ious.append(iou)
            self.score_deltas.append(score_delta)
            self.box_deltas.append(float(np.abs(ours.boxes[i] - theirs.boxes[j]).max()))
            if our_masks is not None and their_masks is not None:
                self.mask_ious.append(_mask_iou(our_masks[i], their_masks[j]))
            if iou >= self.tolerance.iou and score_delta <= self.tolerance.score:
                self.matched += 1

    def table(self) -> str:
        """A human-readable table of `summary`."""
        s = self.summary()

        def fmt(value: float | None, digits: int) -> str:
            return "n/a" if value is None else f"{value:.{digits}f}"

        verdict = "PASS" if s["passed"] else "FAIL"
        c = s["criteria"]
        floor = c["compared_score_at_least"]
        if not s["compared"]:
            verdict += f" (no detection scored >= {floor:g}: nothing to compare)"
        rows = [
            ("precision", s["precision"]),
            ("images", str(s["images"])),
            ("detections torch / onnx", f"{s['torch_detections']} / {s['onnx_detections']}"),
            ("compared", f"{s['compared']} scoring >= {floor:g}"),
            (
                f"below {floor:g} torch / onnx",
                f"{s['torch_below_floor']} / {s['onnx_below_floor']} (not compared)",
            ),
            ("matched", f"{s['matched_percent']:.2f} %"),
            ("box IoU mean / min", f"{fmt(s['box_iou_mean'], 6)} / {fmt(s['box_iou_min'], 6)}"),
            ("max |Δbox| px", fmt(s["box_max_abs_diff_px"], 6)),
            ("max |Δscore|", fmt(s["score_max_abs_diff"], 7)),
            (
                "mask IoU mean / min",
                f"{fmt(s['mask_iou_mean'], 6)} / {fmt(s['mask_iou_min'], 6)}",
            ),
            (
                "median ms torch / onnx",
                f"{fmt(s['torch_ms_median'], 1)} / {fmt(s['onnx_ms_median'], 1)}",
            ),
            (
                "result",
                f"{verdict} (needs >= {c['matched_at_least_percent']:g} % matched at "
                f"IoU >= {c['box_iou_at_least']} and |Δscore| <= {c['score_diff_at_most']})",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _pairs(ours: RawDetections, theirs: RawDetections) -> list[tuple[int, int, float]]:
    """Greedy same-label pairs ``(torch index, onnx index, box IoU)``, torch by score."""
    if not len(ours) or not len(theirs):
        return []
    iou = box_iou(ours.boxes, theirs.boxes)
    iou[ours.labels[:, None] != theirs.labels[None, :]] = -1.0
    pairs = []
    free = np.ones(len(theirs), bool)
    for i in np.argsort(-ours.scores, kind="stable"):
        candidates = np.where(free, iou[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] > 0:
            free[j] = False
            pairs.append((int(i), j, float(candidates[j])))
    return pairs


def _timed(backend: Backend, rgb: np.ndarray) -> tuple[RawDetections, float]:
    """One image through ``backend.infer_batch``, and the time it took in ms."""
    started = time.perf_counter()
    (raw,) = backend.infer_batch([rgb], DetectOptions())
    return raw, 1000 * (time.perf_counter() - started)


def compare(
    reference: Backend,
    candidate: Backend,
    images: list[Path],
    precision: str,
    progress: StartProgress = silent,
) -> ParityReport:
    """Run both backends (the PyTorch model, its export) on every image file and collect pairs
    and timings; ``precision`` ("fp32"/"fp16") of the export picks the tolerances. Each side's
    images done go to ``progress``.

    All reference runs come first, then all candidate runs, each after one untimed warm-up, so
    that neither side's threads compete with the other's. Both get the candidate's decoding of
    the files.
    """
    tolerance = TOLERANCES[precision]
    min_score = candidate.info.score_threshold if tolerance.operating_point else tolerance.floor
    report = ParityReport(precision, tolerance, min_score)
    pixels = [_decode(candidate, path) for path in images]
    sides = []
    for backend, side in ((reference, "PyTorch"), (candidate, "export")):
        _timed(backend, pixels[0])
        with progress(f"parity {side}", len(pixels), "images") as bar:
            sides.append([_timed(backend, rgb) for rgb in bar.each(pixels)])
    threshold = candidate.info.mask_threshold
    for (ours, torch_ms), (theirs, onnx_ms) in zip(*sides, strict=True):
        report.torch_ms.append(torch_ms)
        report.onnx_ms.append(onnx_ms)
        report.add(ours, theirs, binary_masks(ours, 0.5), binary_masks(theirs, threshold))
    return report


def _decode(backend: Backend, path: Path) -> np.ndarray:
    try:
        return backend.prepare(read_image(path))
    except DetectError as exc:
        raise DataError(f"parity image {path}: {exc}") from None


def parity_for_files(
    model: nn.Module,
    model_path: Path,
    inputs: list[Path],
    device: str = "cpu",
    backend: str = "auto",
    progress: StartProgress = silent,
) -> ParityReport:
    """`compare` the PyTorch ``model`` with its export at ``model_path``, run by ``backend`` on
    ``device``, on the images found in ``inputs`` (files or folders); each side's images done
    to ``progress``."""
    detector = Detector(model_path, device, backend=backend)
    info = detector.info
    reference = EagerModel(model, info.labels, info.category_ids)
    images = find_images(inputs)
    return compare(reference, detector, images, detector.card.precision, progress)


def parity(
    checkpoint: Path,
    model_path: Path,
    inputs: list[Path],
    device: str = "cpu",
    backend: str = "auto",
    progress: StartProgress = silent,
) -> ParityReport:
    """`detect parity`: load the checkpoint, compare it with the exported model (each side's
    images done to ``progress``)."""
    from detect.models.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(checkpoint))
    return parity_for_files(model, model_path, inputs, device, backend, progress)


@dataclass(frozen=True)
class ParitySettings:
    """`detect parity`'s settings: the checkpoint, its export, the images to compare them on,
    and where the export runs (the CPU unless told otherwise; the checkpoint runs on the CPU)."""

    images: tuple[str, ...] = setting((), "image files or folders", positional=True, required=True)
    checkpoint: Path | None = setting(
        None,
        "the checkpoint exported",
        required=True,
    )
    model: Path | None = setting(None, "the exported NAME.onnx", required=True)
    engine: Engine = exact_engine(defaults={"device": "cpu"}, skip=("threads",))

    def validate(self, spell: Spelling | None = None) -> None:
        spell = spell or Spelling(ParitySettings, FLAGS)
        if self.checkpoint is None or self.model is None:
            raise spell.problem(
                f"give {spell('checkpoint')} CKPT and {spell('model')} NAME.onnx, its export"
            )
        if not self.images:
            raise spell.problem(f"give the {spell('images')} to compare them on")

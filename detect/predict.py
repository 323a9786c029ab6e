"""`detect predict`: images through an exported model -> predictions.json, annotated images, lines.

Outputs in ``--out``: ``predictions.json`` (COCO results: ``image_id`` is the image's 1-based
position in the run, ``category_id`` the training category id, ``bbox`` ``[x, y, w, h]``,
``score``, ``segmentation`` as polygons, plus ``file_name`` and ``label``), and
``annotated/`` copies of the images. On stdout one ``image,top,left,width,height,label,score``
line per detection. An image that cannot be read is reported on one line and skipped; the
exit code is 1 at the end if any was.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from detect.errors import ConfigError, DataError
from detect.runtime.detector import Detection, Detector
from detect.runtime.draw import draw_detections
from detect.runtime.image import DEFAULT_MAX_PIXELS, ImageError
from detect.runtime.polygons import polygons_to_coco

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def list_images(inputs: list[Path]) -> list[Path]:
    """Files as given (whatever their suffix), and the image files under each folder
    (recursively, by suffix, sorted); each file once, in the order first met."""
    images: dict[Path, Path] = {}  # resolved -> as given
    for path in map(Path, inputs):
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            for p in sorted(p for p in found if p.is_file()):
                images.setdefault(p.resolve(), p)
        else:
            images.setdefault(path.resolve(), path)
    return list(images.values())


def _annotated_names(images: list[Path]) -> list[str]:
    """Output file names for annotated copies: the image's name, numbered when names repeat."""
    names, seen = [], set()
    for path in images:
        suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
        name, n = f"{path.stem}{suffix}", 1
        while name in seen:
            n += 1
            name = f"{path.stem}_{n}{suffix}"
        seen.add(name)
        names.append(name)
    return names


def coco_result(image_id: int, file_name: str, det: Detection) -> dict:
    """One COCO results entry (``bbox`` ``[x, y, w, h]`` = ``[left, top, width, height]``)."""
    result = {
        "image_id": image_id,
        "file_name": file_name,
        "category_id": det.class_id,
        "label": det.label,
        "bbox": [round(v, 3) for v in (det.left, det.top, det.width, det.height)],
        "score": round(det.score, 5),
    }
    if det.polygons:
        result["segmentation"] = polygons_to_coco(det.polygons)
    return result


@dataclass
class PredictConfig:
    """`detect predict` options."""

    inputs: list[Path]
    model: Path
    out: Path
    score: float | None = None
    device: str = "auto"
    max_detections: int = 100
    classes: list[str] | None = None
    agnostic_nms: bool | None = None  # None: the model card's default
    polygon_tolerance: float = 1.0
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class PredictResult:
    images: int = 0
    detections: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.images} images, {self.detections} detections"
        return text + (f", {len(self.failed)} failed" if self.failed else "")


def predict(config: PredictConfig) -> PredictResult:
    """Run the model over every input image; write outputs as it goes (see the module)."""
    if config.score is not None and not 0 <= config.score <= 1:
        raise ConfigError(f"--score {config.score}: use a value in [0, 1]")
    if config.max_detections < 1:
        raise ConfigError(f"--max-detections {config.max_detections}: use 1 or more")
    if config.polygon_tolerance < 0:
        raise ConfigError(f"--polygon-tolerance {config.polygon_tolerance}: use 0 or more")
    if config.max_pixels < 1:
        raise ConfigError("--max-mp must be above 0 (megapixels; default 50)")
    if config.out.exists() and not config.out.is_dir():
        raise ConfigError(f"--out {config.out} is a file; give a folder")
    images = list_images(config.inputs)
    if not images:
        raise DataError(f"no images found in {', '.join(map(str, config.inputs))}")
    detector = Detector(config.model, config.device, config.max_pixels)
    if config.classes:
        detector.class_labels(config.classes)  # unknown names fail before any work
    annotated = config.out / "annotated"
    annotated.mkdir(parents=True, exist_ok=True)
    result = PredictResult()
    results: list[dict] = []
    names = _annotated_names(images)
    try:
        with tqdm(
            images, desc="predict", unit="img", disable=None if len(images) > 1 else True
        ) as bar:
            for image_id, (path, name) in enumerate(zip(bar, names, strict=True), start=1):
                detections = _predict_one(detector, config, path, annotated / name, result)
                for det in detections:
                    tqdm.write(f"{path},{det.line()}", file=sys.stdout)
                    results.append(coco_result(image_id, str(path), det))
    finally:  # an interrupted run keeps what it has done
        tmp = config.out / ".predictions.json.tmp"
        tmp.write_text(json.dumps(results))
        tmp.replace(config.out / "predictions.json")
    return result


def _predict_one(
    detector: Detector, config: PredictConfig, path: Path, annotated: Path, result: PredictResult
) -> list[Detection]:
    """Detections in one image file, its annotated copy written; [] and a line on stderr when
    the file cannot be read as an image."""
    try:
        rgb = detector.prepare(path.read_bytes())
    except (OSError, ImageError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        result.failed.append(str(path))
        tqdm.write(f"error: {path}: {reason}", file=sys.stderr)
        return []
    detections = detector.postprocess(
        detector.infer(rgb),
        rgb.shape[0],
        rgb.shape[1],
        score_threshold=config.score,
        max_detections=config.max_detections,
        classes=config.classes,
        agnostic_nms=config.agnostic_nms,
        polygon_tolerance=config.polygon_tolerance,
    )
    result.images += 1
    result.detections += len(detections)
    canvas = draw_detections(rgb, detections)
    cv2.imwrite(str(annotated), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return detections

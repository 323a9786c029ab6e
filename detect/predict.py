"""`detect predict`: images through an exported model -> predictions.json, annotated images, lines.

Outputs in ``out``: ``predictions.json`` (COCO results: ``image_id`` is the image's 1-based
position in the run, ``category_id`` the training category id, ``bbox`` ``[x, y, w, h]``,
``score``, ``segmentation`` as polygons, plus ``file_name`` and ``label``), and
``annotated/`` copies of the images. Each image's outcome (its detections, or why it could not
be read) goes to the caller as it is done (`PredictedImage`); the command prints one
``image,top,left,width,height,label,score`` line per detection. An image that cannot be read
is skipped; the run goes on with the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from detect.config import DetectSettings, Engine
from detect.data.results import coco_result
from detect.errors import DetectError
from detect.runtime.backend import Backend, detect_each, open_backend
from detect.runtime.draw import draw_detections
from detect.runtime.image import DEFAULT_MAX_PIXELS, decode_image
from detect.runtime.sources import IMAGE_SUFFIXES, find_images, read_image
from detect.settings import FLAGS, Spelling, check, nested, output_folder, setting
from detect.structures import Detection, DetectOptions


def _megapixels(value: float) -> str | None:
    return None if round(value * 1_000_000) >= 1 else "use more than 0 (megapixels)"


@dataclass(frozen=True)
class PredictConfig:
    """The settings of `detect predict`. ``inputs``: image files or folders, as given;
    ``model`` and ``out`` must be given."""

    inputs: tuple[str, ...] = setting(
        (), "image files or folders (recursive)", positional=True, metavar="images", required=True
    )
    model: Path | None = setting(None, "exported NAME.onnx", required=True)
    out: Path | None = setting(None, "output folder", required=True, check=output_folder)
    detection: DetectSettings = nested(DetectSettings, defaults={"max_detections": 100})
    engine: Engine = nested(Engine)
    max_mp: float = setting(
        DEFAULT_MAX_PIXELS / 1_000_000, "refuse images over this many MP", check=_megapixels
    )

    @property
    def options(self) -> DetectOptions:
        return self.detection.options()

    @property
    def max_pixels(self) -> int:
        return round(self.max_mp * 1_000_000)

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks beyond each setting's own; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(PredictConfig, FLAGS)
        for name in ("inputs", "model", "out"):
            if not getattr(self, name):
                raise spell.problem(f"give {spell(name)}")
        assert self.out is not None
        if self.out.exists() and not self.out.is_dir():
            raise spell.problem(f"{spell('out')} {self.out} is a file; give a folder")


@dataclass(frozen=True)
class PredictedImage:
    """One image's outcome: its detections (best first), or the error that skipped it."""

    path: Path
    detections: list[Detection] = field(default_factory=list)
    error: DetectError | None = None


@dataclass
class PredictResult:
    images: int = 0
    detections: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.images} images, {self.detections} detections"
        return text + (f", {len(self.failed)} failed" if self.failed else "")


OnImage = Callable[[PredictedImage], None]


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


def predict(config: PredictConfig, on_image: OnImage | None = None) -> PredictResult:
    """Run the model over every input image; write outputs as it goes (see the module) and
    hand each image's outcome to ``on_image`` once its outputs are written."""
    check(config)
    assert config.model is not None and config.out is not None
    images = find_images([Path(p) for p in config.inputs])
    backend = open_backend(
        model=config.model,
        device=config.engine.device,
        engine=config.engine.backend,
        max_pixels=config.max_pixels,
    )
    try:
        return predict_images(backend, images, config.options, config.out, on_image)
    finally:
        backend.close()


def predict_images(
    backend: Backend,
    images: list[Path],
    options: DetectOptions,
    out: Path,
    on_image: OnImage | None = None,
) -> PredictResult:
    """Every image through ``backend``: annotated copies and predictions.json in ``out``,
    written as it goes (an interrupted run, even by an error ``on_image`` raises, keeps what it
    has done); each image's outcome to ``on_image``."""
    backend.info.class_labels(options.classes)  # unknown names fail before any work
    annotated = out / "annotated"
    annotated.mkdir(parents=True, exist_ok=True)
    result = PredictResult()
    results: list[dict] = []
    names = _annotated_names(images)
    items = list(enumerate(images, start=1))
    bar = tqdm(
        total=len(images), desc="predict", unit="img", disable=None if len(images) > 1 else True
    )
    try:
        with bar:
            for image_id, detected in detect_each(backend, items, options):
                path = images[image_id - 1]
                bar.update()
                if isinstance(detected, DetectError):
                    result.failed.append(str(path))
                    if on_image is not None:
                        on_image(PredictedImage(path, error=detected))
                    continue
                result.images += 1
                result.detections += len(detected.detections)
                rgb = detected.image
                if not hasattr(rgb, "shape"):  # a remote backend: drawn on the decoded file
                    rgb = decode_image(read_image(path))
                canvas = draw_detections(rgb, detected.detections)
                target = annotated / names[image_id - 1]
                cv2.imwrite(str(target), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
                for det in detected.detections:
                    results.append(
                        coco_result(
                            image_id,
                            det,
                            detected.image_size,
                            "polygons",
                            file_name=str(path),
                            label=det.label,
                        )
                    )
                if on_image is not None:
                    on_image(PredictedImage(path, list(detected.detections)))
    finally:
        tmp = out / ".predictions.json.tmp"
        tmp.write_text(json.dumps(results))
        tmp.replace(out / "predictions.json")
    return result

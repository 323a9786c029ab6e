"""`detect predict`: images through an exported model -> predictions.json, annotated images, lines.

Outputs in ``--out``: ``predictions.json`` (COCO results: ``image_id`` is the image's 1-based
position in the run, ``category_id`` the training category id, ``bbox`` ``[x, y, w, h]``,
``score``, ``segmentation`` as polygons, plus ``file_name`` and ``label``), and
``annotated/`` copies of the images. On stdout one ``image,top,left,width,height,label,score``
line per detection. An image that cannot be read is reported on one line and skipped; the
exit code is 1 at the end if any was.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from detect.config import Engine, add_agnostic_nms_flag, detect_options, from_namespace
from detect.data.results import coco_result
from detect.errors import ConfigError, DetectError
from detect.runtime.backend import Backend, detect_each, open_backend
from detect.runtime.draw import draw_detections
from detect.runtime.image import DEFAULT_MAX_PIXELS, decode_image
from detect.runtime.sources import IMAGE_SUFFIXES, find_images, read_image
from detect.settings import add_flags
from detect.structures import DetectOptions


@dataclass
class PredictConfig:
    """`detect predict` options."""

    inputs: list[Path]
    model: Path
    out: Path
    options: DetectOptions = field(default_factory=lambda: DetectOptions(max_detections=100))
    device: str = "auto"
    backend: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "inputs",
            type=Path,
            nargs="+",
            metavar="images",
            help="image files or folders (recursive)",
        )
        p.add_argument("--model", type=Path, required=True, help="exported NAME.onnx")
        p.add_argument("--out", type=Path, required=True, help="output folder")
        p.add_argument(
            "--score", type=float, help="score threshold (default: the model card's, 0.5)"
        )
        add_flags(p, Engine)
        p.add_argument("--max-detections", type=int, default=100, help="per image, best first")
        p.add_argument("--classes", nargs="+", help="keep only these class names or category ids")
        add_agnostic_nms_flag(p)
        p.add_argument(
            "--polygon-tolerance", type=float, default=1.0, help="polygon simplification, pixels"
        )
        p.add_argument("--max-mp", type=float, default=50.0, help="refuse images over this many MP")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PredictConfig:
        return from_namespace(
            cls, args, options=detect_options(args), max_pixels=round(args.max_mp * 1_000_000)
        )

    def validate(self) -> None:
        if self.max_pixels < 1:
            raise ConfigError("--max-mp must be above 0 (megapixels; default 50)")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")


@dataclass
class PredictResult:
    images: int = 0
    detections: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.images} images, {self.detections} detections"
        return text + (f", {len(self.failed)} failed" if self.failed else "")


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


def predict(config: PredictConfig) -> PredictResult:
    """Run the model over every input image; write outputs as it goes (see the module)."""
    config.validate()
    images = find_images(config.inputs)
    backend = open_backend(
        model=config.model,
        device=config.device,
        engine=config.backend,
        max_pixels=config.max_pixels,
    )
    try:
        return predict_images(backend, images, config.options, config.out)
    finally:
        backend.close()


def predict_images(
    backend: Backend, images: list[Path], options: DetectOptions, out: Path
) -> PredictResult:
    """Every image through ``backend``: lines on stdout, annotated copies and predictions.json
    in ``out``, written as it goes (an interrupted run keeps what it has done)."""
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
                    tqdm.write(f"error: {path}: {detected}", file=sys.stderr)
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
                    tqdm.write(f"{path},{det.line()}", file=sys.stdout)
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
    finally:
        tmp = out / ".predictions.json.tmp"
        tmp.write_text(json.dumps(results))
        tmp.replace(out / "predictions.json")
    return result


add_arguments = PredictConfig.add_arguments


def run(args: argparse.Namespace) -> int:
    """`detect predict` from parsed flags; exit 1 if an image failed."""
    config = PredictConfig.from_args(args)
    result = predict(config)
    print(result.summary(), file=sys.stderr)
    print(f"outputs in {config.out}", file=sys.stderr)
    return 1 if result.failed else 0

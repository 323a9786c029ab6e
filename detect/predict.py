"""`detect predict`: images through an exported model -> predictions.json, annotated images, lines.

Outputs in ``out``: ``predictions.json`` (COCO results: ``image_id`` is the image's 1-based
position in the run, ``category_id`` the training category id, ``bbox`` ``[x, y, w, h]``,
``score``, ``segmentation`` as polygons, plus ``file_name``, the image's path as found from the
inputs given, by which `detect eval --predictions` matches them to a ground truth's images, and
``label``; boxes to 0.01 pixel, polygons to 0.1 pixel, scores to 0.0001: `detect.rounding`),
``predict.json`` (`detect.data.predict_record`: the model, its sha256, the score threshold and
polygon simplification that applied), ``annotated/`` copies of the images and ``manifest.jsonl``
(`detect.resume`: the images finished, each line appended as soon as the image's outputs are
written). Each image's outcome (its detections, or why it could not be read) goes to the caller
as it is done (`PredictedImage`); the command prints one
``image,top,left,width,height,label,score`` line per detection. An image that cannot be read is
skipped; the run goes on with the others.

A run again with the same ``out`` and settings (an interrupted one, started again) skips the
images its manifest lists as finished with the same bytes and annotated copy, and writes the
predictions.json of a run never interrupted, its finished images' results taken from the
manifest; with other settings it is refused (a `UsageError` naming what changed).

With ``--ray`` (`PredictConfig.cluster`) the per-image step (`annotate_each`: detections and the
annotated copy, encoded) runs on a Ray actor pool (`detect.cluster`) instead of in this process;
this process writes the same files from its outcomes, in the same order; only the images left to
run go to the pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2

from detect.config import Cluster, DetectSettings, Engine, exact_engine
from detect.data.predict_record import PredictRecord
from detect.data.results import coco_result
from detect.errors import DetectError
from detect.progress import StartProgress, silent
from detect.resume import Manifest, OnResume, Resumed, results_of
from detect.runtime.backend import Backend, detect_each, open_backend
from detect.runtime.draw import draw_detections
from detect.runtime.image import DEFAULT_MAX_PIXELS, decode_image
from detect.runtime.model_card import ModelCard, card_path
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
    out: Path | None = setting(
        None,
        "output folder; a run again with it skips the images finished (manifest.jsonl)",
        required=True,
        check=output_folder,
    )
    detection: DetectSettings = nested(DetectSettings, defaults={"max_detections": 100})
    engine: Engine = exact_engine()
    max_mp: float = setting(
        DEFAULT_MAX_PIXELS / 1_000_000, "refuse images over this many MP", check=_megapixels
    )
    cluster: Cluster = nested(Cluster)

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


@dataclass(frozen=True)
class Annotated:
    """One image done: its detections (xyxy pixels, best first), its size ``(height, width)``
    and its annotated copy, encoded in the format of its output file (`_annotated_suffix`)."""

    detections: list[Detection]
    image_size: tuple[int, int]
    encoded: bytes


Outcomes = Iterable[tuple[int, Annotated | DetectError]]
"""``(image id, outcome)`` per image, in image order."""

RunImages = Callable[[list[tuple[int, Path]]], Outcomes]
"""Runs ``(image id, path)`` items (`annotate_each`, here or on Ray): their `Outcomes`."""


def _annotated_suffix(path: Path) -> str:
    """The annotated copy's file format: the image's own when it is one, else PNG."""
    return path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"


def annotate_each(
    backend: Backend, items: Iterable[tuple[int, Path]], options: DetectOptions
) -> Iterator[tuple[int, Annotated | DetectError]]:
    """Each ``(image id, path)`` through ``backend`` (`detect_each`) and drawn: its `Annotated`,
    or the `DetectError` that skips it; in item order."""
    paths = dict(items)
    for image_id, detected in detect_each(backend, paths.items(), options):
        if isinstance(detected, DetectError):
            yield image_id, detected
            continue
        path = paths[image_id]
        rgb = detected.image
        if not hasattr(rgb, "shape"):  # a remote backend: drawn on the decoded file
            rgb = decode_image(read_image(path))
        canvas = draw_detections(rgb, detected.detections)
        bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        encoded = cv2.imencode(_annotated_suffix(path), bgr)[1].tobytes()
        yield image_id, Annotated(list(detected.detections), detected.image_size, encoded)


def _annotated_names(images: list[Path]) -> list[str]:
    """Output file names for annotated copies: the image's name, numbered when names repeat."""
    names, seen = [], set()
    for path in images:
        suffix = _annotated_suffix(path)
        name, n = f"{path.stem}{suffix}", 1
        while name in seen:
            n += 1
            name = f"{path.stem}_{n}{suffix}"
        seen.add(name)
        names.append(name)
    return names


def predict(
    config: PredictConfig,
    on_image: OnImage | None = None,
    progress: StartProgress = silent,
    on_resume: OnResume | None = None,
) -> PredictResult:
    """Run the model over every input image that an earlier run into ``config.out`` did not
    finish (how many it did to ``on_resume``); write outputs as it goes (see the module) and
    hand each image's outcome to ``on_image`` once its outputs are written; the images run
    to ``progress``."""
    check(config)
    assert config.model is not None and config.out is not None
    images = find_images([Path(p) for p in config.inputs])
    opened = {
        "model": config.model,
        "device": config.engine.device,
        "engine": config.engine.backend,
        "threads": config.engine.threads,
        "max_pixels": config.max_pixels,
    }
    with ExitStack() as stack:
        run: RunImages | None = None
        shown = progress
        if config.cluster.ray is None:
            backend = stack.enter_context(closing(open_backend(**opened)))
        else:
            from detect.cluster import RayPool

            # the actors run the model; here it only tells its facts (classes, masks, threshold)
            backend = stack.enter_context(closing(open_backend(**opened | {"device": "cpu"})))
            pool = stack.enter_context(closing(RayPool(config.cluster, opened)))
            shown = pool.progress(progress)

            def run(items: list[tuple[int, Path]]) -> Outcomes:
                absolute = [(image_id, path.absolute()) for image_id, path in items]
                return pool.each(absolute, annotate_each, config.options)

        record = _record(config, backend)
        return predict_images(
            backend, images, config.options, config.out, record, on_image, shown, run, on_resume
        )


def _record(config: PredictConfig, backend: Backend) -> PredictRecord:
    """What this run uses: the model (its card's sha256) and the options as they apply (the
    card's defaults where the settings leave them unset)."""
    assert config.model is not None
    info, options = backend.info, config.options
    polygons = options.polygons and info.has_masks
    return PredictRecord(
        model={
            "name": info.name,
            "file": str(config.model),
            "sha256": ModelCard.read(card_path(config.model)).sha256,
        },
        score_threshold=(
            options.score_threshold if options.score_threshold is not None else info.score_threshold
        ),
        max_detections=options.max_detections,
        classes=list(options.classes),
        agnostic_nms=(
            options.agnostic_nms if options.agnostic_nms is not None else info.agnostic_nms
        ),
        polygons=polygons,
        polygon_tolerance=options.polygon_tolerance if polygons else None,
    )


def _settings(record: PredictRecord) -> dict[str, Any]:
    """What decides the outputs (the manifest's settings): ``record`` with the model as its
    sha256 (where it is or what it is called does not matter)."""
    settings = record.as_dict()
    model = settings.pop("model")
    return {"model_sha256": model["sha256"], **settings}


def _spell(name: str) -> str:
    """A manifest setting (`_settings`) as the user spells it."""
    return Spelling(PredictConfig, FLAGS)({"score_threshold": "score"}.get(name, name))


def predict_images(
    backend: Backend,
    images: list[Path],
    options: DetectOptions,
    out: Path,
    record: PredictRecord,
    on_image: OnImage | None = None,
    progress: StartProgress = silent,
    run: RunImages | None = None,
    on_resume: OnResume | None = None,
) -> PredictResult:
    """Every image through ``backend``: annotated copies, predictions.json and manifest.jsonl in
    ``out``, written as it goes (an interrupted run, even by an error ``on_image`` raises, keeps
    what it has done), and ``record`` as predict.json; each image's outcome to ``on_image``, the
    images run to ``progress``. The images an earlier run into ``out`` finished (the manifest's)
    are not run again: their number to ``on_resume``, their results from the manifest. ``run``:
    makes the images' outcomes elsewhere (on Ray, by `annotate_each` with the same backend and
    options); None: here."""
    backend.info.class_labels(options.classes)  # unknown names fail before any work
    manifest = Manifest(out, _settings(record), _spell)
    annotated = out / "annotated"
    annotated.mkdir(parents=True, exist_ok=True)
    record.write(out)
    result = PredictResult()
    results: list[dict] = []
    names = _annotated_names(images)
    items = list(enumerate(images, start=1))
    finished = {
        image_id: line
        for image_id, line in manifest.finished(dict(items)).items()
        if line.get("annotated") == names[image_id - 1]
        and (annotated / names[image_id - 1]).is_file()
    }
    if finished and on_resume is not None:
        on_resume(Resumed(len(finished), len(images), out))
    for image_id, line in finished.items():
        results += results_of(line, image_id)
        result.images += 1
        result.detections += len(line["results"])
    todo = [(image_id, path) for image_id, path in items if image_id not in finished]
    if run is None:
        run = partial(annotate_each, backend, options=options)
    outcomes = run(todo) if todo else []
    bar = (progress if todo else silent)("predict", len(todo), "images")  # none: no line
    try:
        with bar, closing(manifest):
            for image_id, detected in outcomes:
                path = images[image_id - 1]
                bar.update()
                if isinstance(detected, DetectError):
                    result.failed.append(str(path))
                    if on_image is not None:
                        on_image(PredictedImage(path, error=detected))
                    continue
                result.images += 1
                result.detections += len(detected.detections)
                name = names[image_id - 1]
                (annotated / name).write_bytes(detected.encoded)
                found = [
                    coco_result(
                        image_id,
                        det,
                        detected.image_size,
                        "polygons",
                        file_name=str(path),
                        label=det.label,
                    )
                    for det in detected.detections
                ]
                results += found
                manifest.add(path, found, annotated=name)
                if on_image is not None:
                    on_image(PredictedImage(path, list(detected.detections)))
    finally:
        results.sort(key=lambda r: r["image_id"])  # stable: each image's results keep their order
        tmp = out / ".predictions.json.tmp"
        tmp.write_text(json.dumps(results))
        tmp.replace(out / "predictions.json")
    return result

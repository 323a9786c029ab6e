"""`detect eval`: score predictions against COCO ground truth and write the report.

Exactly one source of predictions: a COCO results file, or a backend (`detect.runtime.backend`):
an exported model (local ONNX Runtime), a training checkpoint (torch eager; also gives the RPN's
proposal recall) or a running server (the gRPC API). Backend predictions are written to
``OUT/predictions.json`` before any scoring, so a run can be re-scored with ``--predictions``.

Where predictions come from is kept apart from how they are scored (Detectron2's split):
`detect.metrics.evaluator` runs the backend over the images and scores with pycocotools'
COCOeval, wrapped, plus the project's own figures; `detect.metrics.report` writes the report.
The backends are asked for every detection the graph keeps (down to its own score threshold, at
most 100 per image) so that AP sees the low-score tail; ``score`` is the operating threshold of
the P/R/F1 figures and the confusion matrix. Masks are compared as RLE of the polygons' pixels
(holes kept), traced without simplification.

A video run (``--video CLIP.json --jsonl RUN.jsonl``): `detect.metrics.video.score_video`, box AP
over the run's frames and the tracking figures (MOTA, MOTP, IDF1, HOTA, ID switches) by TrackEval.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycocotools.coco import COCO
from tqdm import tqdm

from detect.config import Connection, Engine, from_namespace
from detect.data.coco import read_json
from detect.data.results import read_results
from detect.errors import ConfigError, DataError
from detect.metrics.coco import load_gt
from detect.metrics.evaluator import CocoEvaluator, inference_on_dataset, scoring_options
from detect.metrics.plots import Plotter
from detect.metrics.report import stdout_table, write_report
from detect.runtime.backend import Backend, open_backend
from detect.runtime.model_card import DEFAULT_SCORE
from detect.settings import add_flags, from_flags
from detect.structures import ModelInfo

IOU_TYPES = ("bbox", "segm", "both")
SOURCES = ("predictions", "model", "checkpoint", "server")


@dataclass
class EvalConfig:
    """Settings of `detect eval` (see the module docstring).

    ``iou_type`` None: "both" when the predictions have masks, else "bbox". ``score`` None: the
    model card's default threshold for model and server sources, else 0.5. ``agnostic_nms``
    (model and server sources) None: the model card's default.
    """

    gt: Path
    out: Path
    predictions: Path | None = None
    model: Path | None = None
    checkpoint: Path | None = None
    server: str | None = None
    images: Path | None = None
    iou_type: str | None = None
    score: float | None = None
    agnostic_nms: bool | None = None
    device: str = "auto"
    backend: str = "auto"
    connection: Connection = field(default_factory=Connection)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """`detect eval`'s flags."""
        p.add_argument("--gt", type=Path, help="COCO ground-truth JSON of images")
        p.add_argument("--images", type=Path, help="image folder (default: the GT file's folder)")
        p.add_argument("--out", type=Path, help="report folder (--video: optional)")
        p.add_argument("--video", type=Path, help="a clip's ground truth (`detect synth --video`)")
        p.add_argument("--jsonl", type=Path, help="--video: the JSONL of a `detect video` run")
        source = p.add_mutually_exclusive_group()
        source.add_argument("--predictions", type=Path, help="COCO results JSON")
        source.add_argument("--model", type=Path, help="exported NAME.onnx (local ONNX Runtime)")
        source.add_argument("--checkpoint", type=Path, help="training checkpoint (PyTorch)")
        source.add_argument("--server", help="HOST:PORT of a running `detect serve`")
        p.add_argument(
            "--iou-type",
            choices=["bbox", "segm", "both"],
            help="default: both when the predictions have masks, else bbox",
        )
        p.add_argument(
            "--score", type=float, help="operating threshold for P/R/F1 (default: the card's, 0.5)"
        )
        p.add_argument(
            "--agnostic-nms",
            action=argparse.BooleanOptionalAction,
            help="--model/--server: suppress overlapping boxes across classes, keeping the "
            "highest-scoring one (default: the model card's)",
        )
        add_flags(p, Engine)
        add_flags(p, Connection)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalConfig:
        return from_namespace(cls, args, connection=from_flags(Connection, args))

    def source(self) -> str:
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of --predictions, --model, --checkpoint, --server "
                f"(got {', '.join('--' + g for g in given) or 'none'})"
            )
        return given[0]

    def validate(self) -> str:
        """Check the flags; the source's name."""
        source = self.source()
        if self.iou_type is not None and self.iou_type not in IOU_TYPES:
            raise ConfigError(f"--iou-type {self.iou_type}: use bbox, segm or both")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise ConfigError(f"--score {self.score}: use a threshold from 0 to 1")
        if self.agnostic_nms and source not in ("model", "server"):
            raise ConfigError(
                f"--agnostic-nms with --{source}: it is the runtime's postprocessing, so it "
                "applies to --model and --server only; leave it out"
            )
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")
        for name in ("predictions", "model", "checkpoint"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"--{name} {path}: no such file")
        return source


@dataclass
class Predicted:
    """A source's results, the images that failed, and how long predicting took."""

    evaluator: CocoEvaluator
    has_masks: bool
    default_score: float
    seconds: float = 0.0
    images: int = 0

    @property
    def failed(self) -> dict[int, str]:
        return self.evaluator.failed


@dataclass
class EvalResult:
    """What `evaluate` measured (``metrics`` is what metrics.json holds) and where it wrote."""

    metrics: dict[str, Any]
    out: Path
    failed: dict[int, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- ground truth


def read_gt(path: Path) -> tuple[dict[str, Any], COCO]:
    """A COCO ground-truth file with annotations to score against: its JSON and pycocotools'
    index, or a `DataError` naming the file."""
    data = read_json(path)
    if not data["annotations"]:
        raise DataError(
            f"{path} has no annotations: there is nothing to evaluate against; "
            "point it at the annotated split"
        )
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= ann.keys():
            raise DataError(f"{path}: every annotation needs image_id, category_id and bbox")
    return data, load_gt(path, data=data)


def gt_has_masks(gt: COCO) -> bool:
    """Whether every annotation has a segmentation (mask AP can be scored)."""
    return all(a.get("segmentation") for a in gt.dataset["annotations"])


def _image_paths(config: EvalConfig, data: dict[str, Any]) -> dict[int, Path]:
    root = config.images if config.images is not None else config.gt.parent
    return {int(img["id"]): root / img["file_name"] for img in data["images"]}


def check_categories(info: ModelInfo, gt: COCO, what: str) -> None:
    """A `DataError` unless every class of the model is a ground-truth category, same id."""
    gt_names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    wrong = [
        f"{name} (id {cid})"
        for cid, name in zip(info.category_ids, info.labels, strict=True)
        if gt_names.get(cid) != name
    ]
    if wrong:
        raise DataError(
            f"{what} predicts {', '.join(wrong)}, which the ground truth does not have under "
            f"the same id (it has {', '.join(f'{n} (id {i})' for i, n in gt_names.items())}); "
            "evaluate on data with the model's categories"
        )


# --------------------------------------------------------------------------- sources


def predict_with(
    backend: Backend,
    config: EvalConfig,
    paths: dict[int, Path],
    gt: COCO,
    what: str,
    batch_size: int = 1,
) -> Predicted:
    """Every image through ``backend`` into a `CocoEvaluator`, after checking its classes;
    ``batch_size`` images at a time (a server answers them concurrently)."""
    info = backend.info
    check_categories(info, gt, what)
    evaluator = CocoEvaluator(gt, masks=info.has_masks)
    predicted = Predicted(evaluator, info.has_masks, info.score_threshold)
    bar = tqdm(total=len(paths), desc="predicting", unit="img", disable=not sys.stderr.isatty())
    with bar:
        options = scoring_options(info.has_masks, config.agnostic_nms)
        predicted.seconds = inference_on_dataset(
            backend, paths, evaluator, options, batch_size, bar.update
        )
    predicted.images = len(paths) - len(evaluator.failed)
    return predicted


def _from_backend(config: EvalConfig, source: str, paths: dict[int, Path], gt: COCO) -> Predicted:
    what = {
        "model": f"model {config.model}",
        "checkpoint": f"checkpoint {config.checkpoint}",
        "server": f"the model served at {config.server}",
    }[source]
    backend = open_backend(
        model=config.model,
        server=config.server,
        checkpoint=config.checkpoint,
        device=config.device,
        engine=config.backend,
        connection={**config.connection.client_kwargs(), "timeout": 300},
    )
    with closing(backend):
        return predict_with(backend, config, paths, gt, what, 8 if source == "server" else 1)


def _from_file(config: EvalConfig, gt: COCO) -> Predicted:
    started = time.perf_counter()
    results = read_results(config.predictions, gt)
    has_masks = bool(results) and all("segmentation" in r for r in results)
    evaluator = CocoEvaluator(gt, masks=has_masks)
    evaluator.results = results
    seconds = time.perf_counter() - started
    return Predicted(evaluator, has_masks, DEFAULT_SCORE, seconds, len(gt.getImgIds()))


# --------------------------------------------------------------------------- scoring


def _iou_types(config: EvalConfig, has_masks: bool, gt: COCO) -> list[str]:
    gt_masks = gt_has_masks(gt)
    wanted = config.iou_type or ("both" if has_masks and gt_masks else "bbox")
    if wanted != "bbox" and not has_masks:
        raise ConfigError(
            f"--iou-type {wanted}: these predictions have no masks (segmentation); use bbox"
        )
    if wanted != "bbox" and not gt_masks:
        raise ConfigError(
            f"--iou-type {wanted}: some ground-truth annotations of {config.gt} have no "
            "segmentation; use bbox"
        )
    return ["bbox", "segm"] if wanted == "both" else [wanted]


def evaluate(config: EvalConfig) -> EvalResult:
    """Predict (unless given predictions), score, and write the report into ``config.out``."""
    source = config.validate()
    data, gt = read_gt(config.gt)
    if source == "predictions":
        predicted = _from_file(config, gt)
    else:
        predicted = _from_backend(config, source, _image_paths(config, data), gt)
    evaluator = predicted.evaluator
    iou_types = _iou_types(config, predicted.has_masks, gt)
    threshold = config.score if config.score is not None else predicted.default_score
    config.out.mkdir(parents=True, exist_ok=True)
    if source != "predictions":
        (config.out / "predictions.json").write_text(json.dumps(evaluator.results))
    for reason in predicted.failed.values():
        print(f"error: {reason}", file=sys.stderr)
    if predicted.failed:
        kept = set(gt.getImgIds()) - set(predicted.failed)
        if not kept:
            raise DataError("no image could be predicted; see the errors above")
        evaluator.gt = load_gt(config.gt, kept, data)
    started = time.perf_counter()
    plotter = Plotter()  # imports matplotlib in a helper process while COCOeval runs
    try:
        metrics = evaluator.evaluate(iou_types, threshold, plotter, config.out)
        metrics["speed"] = {
            "source": source,
            "images": predicted.images,
            "predict_seconds": predicted.seconds,
            "images_per_second": (
                predicted.images / predicted.seconds if predicted.seconds else None
            ),
            "ms_per_image": (
                1000 * predicted.seconds / predicted.images if predicted.images else None
            ),
            "eval_seconds": time.perf_counter() - started,
        }
        metrics["images"] = {
            "evaluated": len(evaluator.gt.getImgIds()),
            "failed": sorted(predicted.failed),
        }
        named = config.predictions or config.model or config.checkpoint or config.server
        write_report(config.out, metrics, f"Evaluation of {named} against {config.gt}")
        plotter.finish()
    finally:
        plotter.close()
    return EvalResult(metrics, config.out, predicted.failed)


add_arguments = EvalConfig.add_arguments


def run(args: argparse.Namespace) -> int:
    """`detect eval` from parsed flags: the table on stdout, exit 1 if an image failed."""
    if args.video is not None or args.jsonl is not None:
        return run_video_eval(args)
    if args.gt is None or args.out is None:
        raise ConfigError(
            "give --gt GT.json --out DIR and a source of predictions (images), or --video "
            "CLIP.json --jsonl RUN.jsonl (a video run)"
        )
    config = EvalConfig.from_args(args)
    result = evaluate(config)
    print(stdout_table(result.metrics))
    print(f"report in {config.out} (metrics.json, report.md, pr_curves.png, confusion_matrix.png)")
    if result.failed:
        print(f"{len(result.failed)} images could not be predicted; see above", file=sys.stderr)
        return 1
    return 0


def run_video_eval(args: argparse.Namespace) -> int:
    """``detect eval --video CLIP.json --jsonl RUN.jsonl [--out DIR]``: the figures on stdout
    and in ``DIR/video_metrics.json``."""
    from detect.metrics.video import score_video, video_table

    if args.video is None or args.jsonl is None:
        raise ConfigError("a video run is scored with both --video CLIP.json and --jsonl RUN.jsonl")
    others = [name for name in ("gt", *SOURCES) if getattr(args, name) is not None]
    if others:
        raise ConfigError(f"--video scores a JSONL; leave out --{others[0]}")
    for flag, path in (("--video", args.video), ("--jsonl", args.jsonl)):
        if not path.is_file():
            raise ConfigError(f"{flag} {path}: no such file")
    scores = score_video(args.video, args.jsonl)
    print(video_table(scores))
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise ConfigError(f"--out {args.out} is a file; give a folder")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "video_metrics.json").write_text(json.dumps(scores, indent=2))
        print(f"figures in {args.out / 'video_metrics.json'}")
    return 0

"""`detect eval`: score predictions against COCO ground truth and write the report.

Exactly one source of predictions: a COCO results file, or a backend (`detect.runtime.backend`):
an exported model (local ONNX Runtime; with ``--ray`` on a Ray actor pool, `detect.cluster`), a
training checkpoint (torch eager; also gives the RPN's proposal recall) or a running server (the
gRPC API). Backend predictions are written to
``OUT/predictions.json`` before any scoring, so a run can be re-scored with ``--predictions``.

With ``--model`` each image's results also go to ``OUT/manifest.jsonl`` as it is done
(`detect.resume`), so that a run again with the same OUT and model (an interrupted one, started
again) skips the images finished and writes the same predictions.json and metrics.json as a run
never interrupted (but ``speed``, which counts the images this run predicted); a run again with
other scoring options (``--agnostic-nms``, another model) is refused.

Where predictions come from is kept apart from how they are scored (Detectron2's split):
`detect.metrics.evaluator` runs the backend over the images and scores with pycocotools'
COCOeval, wrapped, plus the project's own figures; `detect.metrics.report` writes the report.
The backends are asked for every detection the graph keeps (down to its own score threshold, at
most 100 per image) so that AP sees the low-score tail; ``score`` is the operating threshold of
the P/R/F1 figures and the confusion matrix. Masks are compared as RLE of the polygons' pixels
(holes kept), traced without simplification.

A video run (``--video CLIP.json --jsonl RUN.jsonl``): `detect.metrics.video.score_video`, box AP
over the run's frames and the tracking figures (MOTA, MOTP, IDF1, HOTA, ID switches) by TrackEval;
with zones or lines (``--zones``/``--line``, or a camera's of ``--site``) also how right its zone
and line counts are (`detect.metrics.counting`), from its JSONL's events or ``--events``.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pycocotools.coco import COCO

from detect.config import SERVER_HELP, Cluster, Connection, Engine, exact_engine, host_port
from detect.data.coco import read_json
from detect.data.predict_record import RECORD_NAME, PredictRecord, read_predict_record
from detect.data.results import read_results
from detect.errors import ConfigError, DataError, UsageError
from detect.metrics.coco import load_gt
from detect.metrics.counting import WINDOW
from detect.metrics.evaluator import (
    CocoEvaluator,
    inference_on_dataset,
    process_outcomes,
    scoring_options,
)
from detect.metrics.plots import Plotter
from detect.metrics.report import write_report
from detect.progress import StartProgress, silent
from detect.resume import Manifest, OnResume, Resumed, results_of
from detect.runtime.backend import Backend, Detected, open_backend
from detect.runtime.model_card import DEFAULT_SCORE, ModelCard, card_path
from detect.settings import FLAGS, Spelling, at_least, check, nested, output_folder, setting
from detect.structures import DetectOptions, ModelInfo
from detect.zones import CountingSettings

if TYPE_CHECKING:
    from detect.cluster import RayPool

IOU_TYPES = ("bbox", "segm", "both")
SOURCES = ("predictions", "model", "checkpoint", "server")
COUNTING = ("events", "site", "camera")
"""The settings of a video run's counting beyond the zones and lines themselves."""


def _threshold(value: float | None) -> str | None:
    return None if value is None or 0.0 <= value <= 1.0 else "use a threshold from 0 to 1"


@dataclass(frozen=True)
class EvalConfig:
    """Settings of `detect eval` (see the module docstring): images (``gt``, ``out`` and
    exactly one source of predictions) or a video run (``video`` and ``jsonl``, ``out``
    optional).

    ``iou_type`` None: "both" when the predictions have masks, else "bbox". ``score`` None: the
    model card's default threshold for model and server sources; for ``predictions``, the
    threshold `detect predict` recorded beside them (predict.json), else 0.5. ``agnostic_nms``
    (model and server sources) None: the model card's default.
    """

    gt: Path | None = setting(None, "COCO ground-truth JSON of images")
    images: Path | None = setting(None, "image folder (default: the GT file's folder)")
    out: Path | None = setting(
        None,
        "report folder (--video: optional); with --model a run again with it skips the images "
        "finished (manifest.jsonl)",
        check=output_folder,
    )
    video: Path | None = setting(None, "a clip's ground truth (`detect synth --video`)")
    jsonl: Path | None = setting(None, "--video: the JSONL of a `detect video` run")
    events: Path | None = setting(
        None, "--video: the run's events from this `detect watch` event log (default: the JSONL's)"
    )
    site: Path | None = setting(
        None, "--video: count with the zones, lines, anchor and min_frames of a camera of this site"
    )
    camera: str | None = setting(None, "--video: the camera of --site and of --events")
    counting: CountingSettings = nested(CountingSettings)
    count_window: int = setting(
        WINDOW,
        "--video: frames a counted zone or line event may be from the true one it matches",
        check=at_least(0),
    )
    predictions: Path | None = setting(None, "COCO results JSON", group="source")
    model: Path | None = setting(None, "exported NAME.onnx (local ONNX Runtime)", group="source")
    checkpoint: Path | None = setting(None, "training checkpoint (PyTorch)", group="source")
    server: str | None = setting(
        None,
        SERVER_HELP,
        group="source",
        check=host_port,
    )
    iou_type: str | None = setting(
        None,
        "default: both when the predictions have masks, else bbox",
        choices=IOU_TYPES,
    )
    score: float | None = setting(
        None,
        "operating threshold for P/R/F1 (default: the card's; --predictions: predict.json's, "
        "else 0.5)",
        check=_threshold,
    )
    agnostic_nms: bool | None = setting(
        None,
        "--model/--server: suppress overlapping boxes across classes, keeping the "
        "highest-scoring one (default: the model card's)",
    )
    engine: Engine = exact_engine()
    cluster: Cluster = nested(Cluster)
    connection: Connection = nested(Connection)

    @property
    def is_video(self) -> bool:
        """A video run (``--video``/``--jsonl``) rather than images."""
        return self.video is not None or self.jsonl is not None

    @property
    def source(self) -> str | None:
        """The source of predictions given (`SOURCES`); `validate` makes it exactly one."""
        given = [name for name in SOURCES if getattr(self, name) is not None]
        return given[0] if len(given) == 1 else None

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks beyond each setting's own; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(EvalConfig, FLAGS)
        if self.is_video:
            self._validate_video(spell)
            return
        counted = [name for name in COUNTING if getattr(self, name) is not None]
        counted += self._counting_given()
        if counted:
            raise spell.problem(f"{spell(counted[0])} scores counts: it goes with {spell('video')}")
        if self.gt is None or self.out is None:
            raise spell.problem(
                f"give {spell('gt')} GT.json {spell('out')} DIR and a source of predictions "
                f"(images), or {spell('video')} CLIP.json {spell('jsonl')} RUN.jsonl (a video run)"
            )
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise spell.problem(
                f"give exactly one of {', '.join(map(spell, SOURCES))} "
                f"(got {', '.join(map(spell, given)) or 'none'})"
            )
        source = given[0]
        if self.agnostic_nms and source not in ("model", "server"):
            raise spell.problem(
                f"{spell('agnostic_nms')} with {spell(source)}: it is the runtime's "
                f"postprocessing, so it applies to {spell('model')} and {spell('server')} only; "
                "leave it out"
            )
        if self.cluster.ray is not None and source != "model":
            raise spell.problem(
                f"{spell('ray')} runs an exported {spell('model')} on Ray; with "
                f"{spell(source)} leave it out"
            )
        self._validate_files(spell, ("predictions", "checkpoint"))  # a model: `check_model`

    def _validate_video(self, spell: Spelling) -> None:
        if self.video is None or self.jsonl is None:
            raise spell.problem(
                f"a video run is scored with both {spell('video')} CLIP.json and "
                f"{spell('jsonl')} RUN.jsonl"
            )
        others = [name for name in ("gt", *SOURCES) if getattr(self, name) is not None]
        others += ["ray"] if self.cluster.ray is not None else []
        if others:
            raise spell.problem(f"{spell('video')} scores a JSONL; leave out {spell(others[0])}")
        self._validate_files(spell, ("video", "jsonl", "events", "site"))
        flagged = [name for name in self._counting_given() if name != "count_window"]
        if self.site is not None and flagged:
            raise spell.problem(
                f"{spell(flagged[0])} with {spell('site')}: the site's camera gives the zones, "
                f"lines, anchor and min_frames; leave out {spell(flagged[0])}"
            )
        if self.camera is not None and self.site is None and self.events is None:
            raise spell.problem(
                f"{spell('camera')} names a camera of {spell('site')} or {spell('events')}; "
                "give one of them"
            )
        counts = self.counting.zones or self.counting.lines
        unused = ([] if self.events is None else ["events"]) + self._counting_given()
        if unused and self.site is None and not counts:
            raise spell.problem(
                f"{spell(unused[0])} scores zone and line counts: give {spell('site')} with "
                f"{spell('camera')}, or {spell('zones')} / {spell('lines')}"
            )

    def _counting_given(self) -> list[str]:
        """The counting settings given away from their defaults: zones, lines, anchor,
        min_frames, count_window."""
        default = CountingSettings()
        given = [n for n in ("zones", "lines") if getattr(self.counting, n)]
        given += [
            n for n in ("anchor", "min_frames") if getattr(self.counting, n) != getattr(default, n)
        ]
        return given + (["count_window"] if self.count_window != WINDOW else [])

    def _validate_files(self, spell: Spelling, names: tuple[str, ...]) -> None:
        for name in names:
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise spell.problem(f"{spell(name)} {path}: no such file")


@dataclass
class Predicted:
    """A source's results, the images that failed, and how long predicting took."""

    evaluator: CocoEvaluator
    has_masks: bool
    default_score: float
    seconds: float = 0.0
    images: int = 0
    notes: dict[str, Any] | None = None  # --predictions: `predict_notes`

    @property
    def failed(self) -> dict[int, str]:
        return self.evaluator.failed


@dataclass
class EvalResult:
    """What `evaluate` measured (``metrics`` is what metrics.json holds), where it wrote, and
    the images that could not be predicted (image id -> reason), for the caller to report."""

    metrics: dict[str, Any]
    out: Path
    failed: dict[int, str] = field(default_factory=dict)


class NoImagePredictedError(DataError):
    """No image of the ground truth could be predicted; ``failed``: image id -> reason."""

    def __init__(self, failed: dict[int, str]) -> None:
        super().__init__("no image could be predicted; see the errors above")
        self.failed = failed


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
    """Each ground-truth image's file by image id; a `DataError` when some are not there (the
    images moved, or the folder is another one), rather than one failure per image."""
    root = config.images if config.images is not None else config.gt.parent
    paths = {int(img["id"]): root / img["file_name"] for img in data["images"]}
    missing = [path for path in paths.values() if not path.is_file()]
    if missing:
        images = Spelling(EvalConfig, FLAGS)("images")
        raise DataError(
            f"{len(missing)} of the {len(paths)} images of {config.gt} are missing "
            f"(the first: {missing[0]}); point {images} at the folder that holds them"
        )
    return paths


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


class _RecordingEvaluator(CocoEvaluator):
    """A `CocoEvaluator` that also records each image's results in ``manifest`` as it takes
    them (``paths``: each image's file by id)."""

    def __init__(self, gt: COCO, masks: bool, manifest: Manifest, paths: dict[int, Path]) -> None:
        super().__init__(gt, masks)
        self.manifest = manifest
        self.paths = paths

    def process(self, image_id: int, detected: Detected) -> None:
        before = len(self.results)
        super().process(image_id, detected)
        self.manifest.add(self.paths[image_id], self.results[before:])


def _settings(config: EvalConfig, info: ModelInfo, options: DetectOptions) -> dict[str, Any]:
    """What decides an image's results (the manifest's settings): the model's sha256 and the
    scoring options, the card's ``agnostic_nms`` where the settings leave it unset."""
    assert config.model is not None
    agnostic = options.agnostic_nms if options.agnostic_nms is not None else info.agnostic_nms
    return {
        "model_sha256": ModelCard.read(card_path(config.model)).sha256,
        "score_threshold": options.score_threshold,
        "max_detections": options.max_detections,
        "agnostic_nms": agnostic,
        "polygons": options.polygons,
        "polygon_tolerance": options.polygon_tolerance,
    }


def predict_with(
    backend: Backend,
    config: EvalConfig,
    paths: dict[int, Path],
    gt: COCO,
    what: str,
    batch_size: int = 1,
    progress: StartProgress = silent,
    pool: RayPool | None = None,
    resume: bool = False,
    on_resume: OnResume | None = None,
) -> Predicted:
    """Every image through ``backend`` into a `CocoEvaluator`, after checking its classes;
    ``batch_size`` images at a time (a server answers them concurrently); the images run to
    ``progress``. With ``pool`` the images run on its Ray actors, each holding the same model as
    ``backend`` (then used only for its facts). ``resume`` (``config.model``'s run): each image's
    results recorded in ``config.out``'s manifest.jsonl, and the images it lists as finished by
    an earlier run not run again (their number to ``on_resume``), their results from it."""
    info = backend.info
    check_categories(info, gt, what)
    options = scoring_options(info.has_masks, config.agnostic_nms)
    evaluator = CocoEvaluator(gt, masks=info.has_masks)
    todo = paths
    with ExitStack() as stack:
        if resume:
            assert config.out is not None
            spell = Spelling(EvalConfig, FLAGS)
            manifest = Manifest(config.out, _settings(config, info, options), spell)
            stack.enter_context(closing(manifest))
            evaluator = _RecordingEvaluator(gt, info.has_masks, manifest, paths)
            finished = manifest.finished(paths)
            if finished and on_resume is not None:
                on_resume(Resumed(len(finished), len(paths), config.out))
            for image_id, line in finished.items():
                evaluator.results += results_of(line, image_id)
            todo = {i: path for i, path in paths.items() if i not in finished}
        predicted = Predicted(evaluator, info.has_masks, info.score_threshold)
        with (progress if todo else silent)("eval", len(todo), "images") as bar:
            if pool is None:
                predicted.seconds = inference_on_dataset(
                    backend, todo, evaluator, options, batch_size, bar.update
                )
            elif todo:
                from detect.cluster import detected_each

                started = time.perf_counter()
                items = [(image_id, path.absolute()) for image_id, path in todo.items()]
                outcomes = pool.each(items, detected_each, options)
                process_outcomes(evaluator, todo, outcomes, bar.update)
                predicted.seconds = time.perf_counter() - started
    position = {image_id: i for i, image_id in enumerate(paths)}
    evaluator.results.sort(key=lambda r: position[r["image_id"]])  # stable: each image's order
    predicted.images = len(todo) - len(evaluator.failed)
    return predicted


def _from_backend(
    config: EvalConfig,
    source: str,
    paths: dict[int, Path],
    gt: COCO,
    progress: StartProgress,
    on_resume: OnResume | None,
) -> Predicted:
    what = {
        "model": f"model {config.model}",
        "checkpoint": f"checkpoint {config.checkpoint}",
        "server": f"the model served at {config.server}",
    }[source]
    if config.cluster.ray is not None:
        from detect.cluster import RayPool

        opened = {"model": config.model, "device": config.engine.device}
        opened |= {"engine": config.engine.backend, "threads": config.engine.threads}
        # the actors run the model; here it only tells its facts (classes, masks, threshold)
        here = closing(open_backend(**opened | {"device": "cpu"}))
        with here as backend, closing(RayPool(config.cluster, opened)) as pool:
            shown = pool.progress(progress)
            return predict_with(backend, config, paths, gt, what, 1, shown, pool, True, on_resume)
    backend = open_backend(
        model=config.model,
        server=config.server,
        checkpoint=config.checkpoint,
        device=config.engine.device,
        engine=config.engine.backend,
        threads=config.engine.threads,
        connection={**config.connection.client_kwargs(), "timeout": 300},
    )
    with closing(backend):
        batch_size = 8 if source == "server" else 1
        resume = source == "model"
        return predict_with(
            backend, config, paths, gt, what, batch_size, progress, None, resume, on_resume
        )


def _from_file(config: EvalConfig, gt: COCO) -> Predicted:
    """The results of ``config.predictions``, matched to the ground-truth images, with what
    `predict_notes` says of them; the operating threshold defaults to the one `detect predict`
    recorded (predict.json), else `DEFAULT_SCORE`."""
    assert config.predictions is not None
    started = time.perf_counter()
    results, matched_by = read_results(config.predictions, gt)
    record = read_predict_record(config.predictions)
    has_masks = bool(results) and all("segmentation" in r for r in results)
    evaluator = CocoEvaluator(gt, masks=has_masks)
    evaluator.results = results
    seconds = time.perf_counter() - started
    default_score = record.score_threshold if record is not None else DEFAULT_SCORE
    predicted = Predicted(evaluator, has_masks, default_score, seconds, len(gt.getImgIds()))
    predicted.notes = predict_notes(config.predictions, matched_by, record)
    return predicted


def predict_notes(path: Path, matched_by: str, record: PredictRecord | None) -> dict[str, Any]:
    """metrics.json's ``predictions``: the file, how its results were matched to the ground
    truth's images, and, for a `detect predict` file, its record and a ``note`` saying why its AP
    is not that of ``detect eval --model`` (None where nothing was dropped or simplified)."""
    notes: dict[str, Any] = {"file": str(path), "matched_by": matched_by, "note": None}
    if record is None:
        return notes
    notes["predict"] = record.as_dict()
    cuts = []
    if record.score_threshold > 0:
        cuts.append(f"at score >= {record.score_threshold:g}")
    if record.polygon_tolerance:
        cuts.append(f"with polygons simplified by {record.polygon_tolerance:g} px")
    if cuts:
        notes["note"] = (
            f"these predictions were made by detect predict {' '.join(cuts)} ({RECORD_NAME}): "
            "AP from them is lower than detect eval --model's, which scores every detection "
            "with unsimplified masks, and not comparable with it"
        )
    return notes


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


def evaluate(
    config: EvalConfig, progress: StartProgress = silent, on_resume: OnResume | None = None
) -> EvalResult:
    """Predict (unless given predictions; the images run to ``progress``; with a model those
    an earlier run into ``config.out`` finished are not, their number to ``on_resume``), score,
    and write the report into ``config.out``; `NoImagePredictedError` when no image could be."""
    check(config)
    if config.is_video:
        raise ValueError("a video run's settings: score them with evaluate_video")
    source, gt_path, out = config.source, config.gt, config.out
    assert source is not None and gt_path is not None and out is not None  # validated
    data, gt = read_gt(gt_path)
    if source == "predictions":
        predicted = _from_file(config, gt)
    else:
        paths = _image_paths(config, data)
        predicted = _from_backend(config, source, paths, gt, progress, on_resume)
    evaluator = predicted.evaluator
    iou_types = _iou_types(config, predicted.has_masks, gt)
    threshold = config.score if config.score is not None else predicted.default_score
    out.mkdir(parents=True, exist_ok=True)
    if source != "predictions":
        (out / "predictions.json").write_text(json.dumps(evaluator.results))
    if predicted.failed:
        kept = set(gt.getImgIds()) - set(predicted.failed)
        if not kept:
            raise NoImagePredictedError(predicted.failed)
        evaluator.gt = load_gt(gt_path, kept, data)
    started = time.perf_counter()
    plotter = Plotter()  # imports matplotlib in a helper process while COCOeval runs
    try:
        metrics = evaluator.evaluate(iou_types, threshold, plotter, out)
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
        if predicted.notes is not None:
            metrics["predictions"] = predicted.notes
        named = config.predictions or config.model or config.checkpoint or config.server
        write_report(out, metrics, f"Evaluation of {named} against {gt_path}")
        plotter.finish()
    finally:
        plotter.close()
    return EvalResult(metrics, out, predicted.failed)


def _site_counting(config: EvalConfig) -> tuple[CountingSettings, str, frozenset[str]]:
    """The counting settings and name of ``config.camera`` in the site file ``config.site`` (its
    only camera when None), and the names of the site's cameras; `UsageError` naming the flag
    otherwise."""
    from detect.watch.site import read_site

    assert config.site is not None
    cameras = {camera.name: camera for camera in read_site(config.site).cameras}
    names = ", ".join(cameras)
    if config.camera is None and len(cameras) > 1:
        raise UsageError(f"--site {config.site} has cameras {names}: name one with --camera")
    name = config.camera if config.camera is not None else next(iter(cameras))
    if name not in cameras:
        raise UsageError(f"--camera {name}: {config.site} has no such camera (it has {names})")
    settings = cameras[name].counting
    if not settings.counter():
        raise UsageError(f"--camera {name}: it has no zones or lines in {config.site}")
    return settings, name, frozenset(cameras)


def evaluate_video(config: EvalConfig) -> dict[str, Any]:
    """A video run's figures (`detect.metrics.video.score_video`) and, with zones or lines (given,
    or a camera's of ``site``), its counting figures under ``counting``
    (`detect.metrics.counting.score_counting`); also written to
    ``config.out / "video_metrics.json"`` when ``out`` is set."""
    from detect.metrics.clip import ClipRun
    from detect.metrics.counting import read_event_log, score_counting
    from detect.metrics.video import score_video

    check(config)
    if config.video is None or config.jsonl is None:
        raise ValueError("an image evaluation's settings: score them with evaluate")
    settings, camera, site = config.counting, config.camera, frozenset[str]()
    if config.site is not None:
        settings, camera, site = _site_counting(config)
    run = ClipRun.read(config.video, config.jsonl)
    scores = score_video(run)
    if settings.counter():
        events = None if config.events is None else read_event_log(config.events, camera, site)
        scores["counting"] = score_counting(run, settings, config.count_window, events)
    if config.out is not None:
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "video_metrics.json").write_text(json.dumps(scores, indent=2))
    return scores

"""`detect export`: a `detect train` checkpoint -> `NAME.onnx` + `NAME.json` model card.

The graph (see `detect.runtime.model_card` for its contract) takes one ``(H, W, 3) uint8`` RGB
image of any size and does everything torchvision's ``GeneralizedRCNN.forward`` does in eval mode
except pasting masks: mask models return each detection's low-resolution ``(M, M)`` mask
probabilities, and the runtime pastes only the detections that survive its thresholds
(`detect.runtime.masks`). `full_masks=True` keeps torchvision's in-graph paste (``(N, H, W)``
probabilities); it exists for the benchmark that compares the two.

Exported with the TorchScript tracer (``dynamo=False``), opset 17 by default. ``--fp16`` converts
the weights and activations to float16 with ONNX Runtime's converter; the input and outputs stay
uint8/float32/int64, and ops without float16 kernels (NonMaxSuppression, RoiAlign, Resize, TopK,
…) stay float32.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import logging
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torchvision
from torch import nn
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import boxes as box_ops

from detect import __version__
from detect.config import from_namespace
from detect.errors import ConfigError, ModelError
from detect.models.checkpoint import load_checkpoint, model_from_checkpoint
from detect.models.spec import ModelSpec
from detect.runtime.model_card import (
    AGNOSTIC_NMS_IOU,
    DEFAULT_SCORE,
    NUM_CLASSES_KEY,
    ModelCard,
    batch_graph_path,
    card_path,
    sha256_file,
)
from detect.runtime.sources import list_images

log = logging.getLogger(__name__)


def _detections(model: nn.Module, xs: list[torch.Tensor], full_masks: bool) -> list[dict]:
    """torchvision's eval forward on ``(3, H, W) float`` 0-1 images, up to the mask paste: per
    image ``boxes`` (xyxy pixels of that image), ``labels``, ``scores`` and, for mask models,
    ``masks`` ``(N, 1, M, M)`` (``(N, 1, H, W)`` pasted with ``full_masks``)."""
    originals = [(x.shape[-2], x.shape[-1]) for x in xs]
    images, _ = model.transform(xs)
    features = model.backbone(images.tensors)
    proposals, _ = model.rpn(images, features)
    detections, _ = model.roi_heads(features, proposals, images.image_sizes)
    if full_masks:
        return model.transform.postprocess(detections, images.image_sizes, originals)
    for det, size, original in zip(detections, images.image_sizes, originals, strict=True):
        det["boxes"] = resize_boxes(det["boxes"], size, original)
    return detections


def _outputs(det: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    outputs = (det["boxes"], det["labels"], det["scores"])
    if "masks" in det:
        outputs += (det["masks"][:, 0],)
    return outputs


def _to_float(image: torch.Tensor) -> torch.Tensor:
    """``(H, W, 3) uint8`` -> ``(3, H, W) float32`` in 0-1."""
    return image.permute(2, 0, 1).to(torch.float32).div(255.0)


class DetectorGraph(nn.Module):
    """What the ONNX file computes, around a torchvision Faster/Mask R-CNN in eval mode.

    forward(image): ``image`` ``(H, W, 3) uint8`` RGB -> ``boxes (N, 4) float32`` xyxy pixels of
    ``image``, ``labels (N,) int64``, ``scores (N,) float32`` and, for mask models,
    ``mask_probs (N, M, M) float32`` (or ``(N, H, W)`` with ``full_masks``).
    """

    def __init__(self, model: nn.Module, full_masks: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.full_masks = full_masks

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _outputs(_detections(self.model, [_to_float(image)], self.full_masks)[0])


class BatchGraph(nn.Module):
    """`DetectorGraph` for a fixed number of images of one size, in one graph.

    forward(images): ``images`` ``(B, H, W, 3) uint8`` RGB -> the outputs of `DetectorGraph`
    for all B images, rows in image order, then ``counts (B,) int64``, each image's rows.
    torchvision batches the B images itself (one backbone pass over a ``(B, 3, h, w)`` tensor,
    the heads over every image's proposals at once); the tracer unrolls the loop over images,
    so B is fixed in the file.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        detections = _detections(self.model, [_to_float(x) for x in images.unbind(0)], False)
        per_image = [_outputs(det) for det in detections]
        counts = torch.stack([torch.ones_like(det["labels"]).sum() for det in detections])
        return (*(torch.cat(column) for column in zip(*per_image, strict=True)), counts)


def _batched_nms_without_branch(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """torchvision's coordinate-trick ``batched_nms`` without its empty-input ``If`` branch.

    The same result for boxes with non-negative coordinates (detections are clipped to the
    image); the zero appended to the maximum makes an empty input safe. A graph without ``If``
    subgraphs converts to float16 cleanly and is simpler for ONNX Runtime to place.
    """
    max_coordinate = torch.cat([boxes.flatten(), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return torchvision.ops.nms(boxes + offsets[:, None], scores, iou_threshold)


PATCHED_NMS_CALLERS = ("torchvision.models.detection.rpn", "torchvision.models.detection.roi_heads")
"""The torchvision modules whose ``box_ops.batched_nms`` calls `_plain_batched_nms` replaces."""


@contextlib.contextmanager
def _plain_batched_nms(
    expected_callers: tuple[str, ...] = PATCHED_NMS_CALLERS,
) -> Iterator[Counter[str]]:
    """Make torchvision's RPN and RoI heads use `_batched_nms_without_branch` while tracing.

    Patches ``torchvision.ops.boxes.batched_nms``, the name those heads call it through
    (``box_ops.batched_nms``), and restores the original on exit. Yields a count of the calls
    the patch took, by the calling module. On a clean exit, raises `ModelError` naming each
    module of `expected_callers` that never called it: a torchvision that reaches
    ``batched_nms`` some other way would otherwise trace its ``If`` branch into the graph without
    a word (the same check as Detectron2's ``export/patcher.py``).
    """
    original = box_ops.batched_nms
    calls: Counter[str] = Counter()

    def counted(
        boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
    ) -> torch.Tensor:
        calls[sys._getframe(1).f_globals.get("__name__", "?")] += 1
        return _batched_nms_without_branch(boxes, scores, idxs, iou_threshold)

    box_ops.batched_nms = counted
    try:
        yield calls
    finally:
        box_ops.batched_nms = original
    bypassed = [module for module in expected_callers if not calls[module]]
    if bypassed:
        raise ModelError(
            f"export: torchvision {torchvision.__version__}'s {' and '.join(bypassed)} never "
            "called torchvision.ops.boxes.batched_nms through the patched name while tracing; "
            "the export patch was bypassed — pin torchvision to requirements.lock's version or "
            "update detect/export.py"
        )


def output_names(has_masks: bool) -> list[str]:
    return ["boxes", "labels", "scores"] + (["mask_probs"] if has_masks else [])


def export_graph(
    model: nn.Module, path: Path, opset: int = 17, full_masks: bool = False, batch: int = 1
) -> None:
    """Trace `model` (eval mode) into an ONNX file at `path` with dynamic height and width:
    `DetectorGraph`, or with ``batch`` > 1 `BatchGraph` for that many images."""
    has_masks = model.roi_heads.has_mask()
    names = output_names(has_masks)
    side = int(model.transform.min_size[0])
    # a textured sample so that every branch (proposals, detections, masks) is traced with data
    shape = (side, side * 4 // 3, 3) if batch == 1 else (batch, side, side * 4 // 3, 3)
    sample = torch.from_numpy(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    dynamic = {name: {0: "detections"} for name in names}
    if batch == 1:
        graph, inputs = DetectorGraph(model, full_masks), {"image": {0: "height", 1: "width"}}
    else:
        graph, inputs = BatchGraph(model), {"images": {1: "height", 2: "width"}}
        names = [*names, "counts"]
    if full_masks and has_masks:
        dynamic["mask_probs"] = {0: "detections", 1: "height", 2: "width"}
    with warnings.catch_warnings(), _plain_batched_nms():
        warnings.simplefilter("ignore")  # tracer warnings about Python scalars in torchvision
        torch.onnx.export(
            graph,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=names,
            dynamic_axes=inputs | dynamic,
        )


def record_num_classes(path: Path, num_classes: int) -> None:
    """Write the graph's class count (without background) into the ONNX file's metadata, where
    `detect.runtime.detector.Detector` checks it against the card's labels at load."""
    graph = onnx.load(str(path))
    entry = graph.metadata_props.add()
    entry.key, entry.value = NUM_CLASSES_KEY, str(num_classes)
    onnx.save(graph, str(path))


def convert_fp16(path: Path) -> None:
    """Rewrite the ONNX file at `path` in float16, keeping float32 inputs/outputs."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the model's float values were truncated" notices
        model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    graph = OnnxModel(model)
    graph.topological_sort()  # the converter appends its Cast nodes at the end
    onnx.save(graph.model, str(path))


def _card(
    name: str,
    ckpt: dict[str, Any],
    model: nn.Module,
    path: Path,
    opset: int,
    fp16: bool,
    source: dict[str, Any],
    score: float,
    agnostic_nms: bool = False,
    agnostic_nms_iou: float = AGNOSTIC_NMS_IOU,
) -> ModelCard:
    spec = ModelSpec.from_checkpoint(ckpt)
    transform = model.transform
    roi_heads = model.roi_heads
    outputs = {
        "boxes": "(N, 4) float32, xyxy pixels of the input image",
        "labels": "(N,) int64, model labels 1..K; the name is labels[k - 1]",
        "scores": "(N,) float32, 0..1",
    }
    if roi_heads.has_mask():
        side = 2 * roi_heads.mask_roi_pool.output_size[0]  # the head upsamples the RoI 2x
        outputs["mask_probs"] = (
            f"(N, {side}, {side}) float32, mask probabilities of the detection's class over "
            "its box; paste with detect.runtime.masks"
        )
    return ModelCard(
        name=name,
        arch=spec.arch,
        backbone=spec.backbone,
        roi=spec.roi,
        labels=list(ckpt["labels"]),
        category_ids=[int(c) for c in ckpt["category_ids"]],
        input={
            "name": "image",
            "dtype": "uint8",
            "shape": ["height", "width", 3],
            "color": "RGB",
            "in_graph": "float, /255, (x - mean) / std, resize short side to min_size "
            "(long side <= max_size), bilinear",
            "mean": [float(v) for v in transform.image_mean],
            "std": [float(v) for v in transform.image_std],
            "min_size": int(transform.min_size[0]),
            "max_size": int(transform.max_size),
        },
        outputs=outputs,
        precision="fp16" if fp16 else "fp32",
        thresholds={
            "score": score,
            "mask": 0.5,
            "agnostic_nms": agnostic_nms,
            "agnostic_nms_iou": agnostic_nms_iou,
            "graph_score": float(roi_heads.score_thresh),
            "nms_iou": float(roi_heads.nms_thresh),
            "max_detections": int(roi_heads.detections_per_img),
        },
        sha256=sha256_file(path),
        opset=opset,
        detect_version=__version__,
        exported_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        source=source,
        recipe=dict(ckpt.get("config", {})),
        metrics=dict(ckpt.get("metrics", {})),
    )


@dataclass
class ExportConfig:
    """`detect export` options."""

    out: Path
    checkpoint: Path | None = None
    pretrained: str | None = None  # a zoo name (`detect models`) instead of a checkpoint
    weights: str = "DEFAULT"  # the zoo model's weights: DEFAULT or COCO_V1
    opset: int = 17
    fp16: bool = False
    verify: Path | None = None
    score: float = DEFAULT_SCORE  # the card's default score threshold (runtime, server, video)
    agnostic_nms: bool = False  # the card's default for class-agnostic NMS in the runtime
    agnostic_nms_iou: float = AGNOSTIC_NMS_IOU  # the IoU (xyxy boxes) it suppresses above
    batch_sizes: list[int] = field(default_factory=list)  # batch graphs beside the model
    int8: Path | None = None  # calibration images: write an int8 model (`detect.quantize`)
    int8_val: Path | None = None  # COCO JSON of held-out images for its AP cost
    max_ap_drop: float = 1.0  # AP points int8 may lose on any engine
    force: bool = False  # write the int8 model whatever it loses

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """`detect export`'s flags."""
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--checkpoint", type=Path, help="best.pt, last.pt or ckpt_e*.pt")
        source.add_argument(
            "--pretrained", metavar="NAME", help="a torchvision COCO model (`detect models`)"
        )
        p.add_argument(
            "--weights", default="DEFAULT", help="--pretrained: its weights, DEFAULT or COCO_V1"
        )
        p.add_argument("--out", type=Path, required=True, help="output NAME.onnx (card: NAME.json)")
        p.add_argument("--opset", type=int, default=17, help="ONNX opset")
        p.add_argument("--fp16", action="store_true", help="float16 weights and activations")
        p.add_argument(
            "--score",
            type=float,
            default=DEFAULT_SCORE,
            help="default score threshold written to the card (clients may ask for another)",
        )
        p.add_argument(
            "--agnostic-nms",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="card default: also suppress overlapping boxes of different classes, keeping "
            "the best (clients may ask otherwise)",
        )
        p.add_argument(
            "--agnostic-nms-iou",
            type=float,
            default=AGNOSTIC_NMS_IOU,
            help="IoU above which class-agnostic NMS suppresses a box, written to the card",
        )
        p.add_argument(
            "--verify",
            type=Path,
            metavar="IMAGES_DIR",
            help="run the parity check on these images; exit 1 if it fails",
        )
        p.add_argument(
            "--batch-sizes",
            type=_batch_sizes,
            default=[],
            metavar="B,B,...",
            help="also write graphs taking B images of one size in one call (NAME.bB.onnx), "
            "e.g. 2,4,8; for GPUs (on a CPU they are no faster)",
        )
        p.add_argument(
            "--int8",
            type=Path,
            metavar="CALIB_IMAGES",
            help="write an int8 model, calibrated on these images (the model's own training "
            "images; 32-128 are enough)",
        )
        p.add_argument(
            "--int8-val",
            type=Path,
            metavar="GT_JSON",
            help="--int8: COCO JSON of held-out images (beside it) to measure its AP against fp32",
        )
        p.add_argument(
            "--max-ap-drop",
            type=float,
            default=1.0,
            help="--int8: refuse a model losing more AP points than this on any engine",
        )
        p.add_argument("--force", action="store_true", help="--int8: write it whatever AP it loses")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportConfig:
        return from_namespace(cls, args)


def _pretrained(name: str, tag: str) -> tuple[dict[str, Any], nn.Module]:
    """A zoo model with its COCO weights, and what its card needs (a checkpoint's fields):
    COCO's 80 names and ids, the published metrics, where the weights came from."""
    from detect.models.zoo import cache_file, coco_categories, zoo_model

    entry = zoo_model(name)
    weights = entry.enum(tag)
    labels, category_ids = coco_categories(weights)
    spec = ModelSpec(
        arch=entry.arch, backbone=entry.backbone, roi="align", num_classes=len(labels) + 1, zoo=name
    )
    model = spec.build(tag, coco_classes=True).eval()
    published = weights.meta.get("_metrics", {})
    ckpt = {
        "model_spec": spec.as_dict(),
        "labels": labels,
        "category_ids": category_ids,
        "config": {"pretrained": name, "weights": str(weights)},
        "metrics": {"published": published},
        "source": {
            "pretrained": name,
            "weights": str(weights),
            "url": weights.url,
            "file": str(cache_file(weights)),
        },
    }
    return ckpt, model


@dataclass
class ExportResult:
    model: Path
    card: Path
    size_mb: float
    passed: bool = True


def _check(config: ExportConfig) -> None:
    """A `ConfigError` for flags that cannot work, before anything is traced."""
    out = Path(config.out)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out} must end in .onnx (the model card goes next to it)")
    if not 0.0 <= config.score <= 1.0:
        raise ConfigError(f"--score {config.score}: use a threshold from 0 to 1")
    if not 0.0 <= config.agnostic_nms_iou <= 1.0:
        raise ConfigError(f"--agnostic-nms-iou {config.agnostic_nms_iou}: use an IoU from 0 to 1")
    if not 11 <= config.opset <= 21:
        raise ConfigError(f"--opset {config.opset}: use 17 (tested) or another of 11..21")
    if (config.checkpoint is None) == (config.pretrained is None):
        raise ConfigError(
            "give --checkpoint CKPT or --pretrained NAME (`detect models` lists them)"
        )
    if any(b < 2 for b in config.batch_sizes):
        raise ConfigError(f"--batch-sizes {config.batch_sizes}: give sizes of 2 or more")
    if config.int8 is None:
        if config.int8_val is not None or config.force:
            raise ConfigError("--int8-val and --force go with --int8 CALIB_IMAGES")
        return
    if importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError(
            "--int8 runs the model on ONNX Runtime to calibrate and score it: install the serve "
            "extra too"
        )
    if not config.int8.exists():
        raise ConfigError(f"--int8 {config.int8}: no such folder or file of calibration images")
    if not list_images([config.int8]):
        raise ConfigError(f"--int8 {config.int8}: no images in it; give the model's own images")
    if config.int8_val is None:
        raise ConfigError(
            "--int8 needs --int8-val GT_JSON: annotated held-out images to measure what int8 "
            "costs in AP"
        )
    if not config.int8_val.is_file():
        raise ConfigError(f"--int8-val {config.int8_val}: no such file")
    if config.fp16 or config.batch_sizes or config.verify is not None:
        raise ConfigError(
            "--int8 goes without --fp16, --batch-sizes and --verify (its check is the AP "
            "measured on --int8-val); leave those out"
        )
    if config.max_ap_drop < 0:
        raise ConfigError(f"--max-ap-drop {config.max_ap_drop}: give AP points, 0 or more")
    from detect.evaluate import read_gt

    read_gt(config.int8_val)  # annotations to score against, before anything is traced


def _source(config: ExportConfig) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    """The checkpoint's fields (or a zoo model's), the model, and the card's ``source``."""
    if config.pretrained is not None:
        ckpt, model = _pretrained(config.pretrained, config.weights)
        return ckpt, model, ckpt["source"]
    ckpt = load_checkpoint(config.checkpoint)
    source = {"checkpoint": str(config.checkpoint), "epoch": ckpt.get("epoch")}
    return ckpt, model_from_checkpoint(ckpt), source


def _write_graph(
    model: nn.Module, path: Path, config: ExportConfig, num_classes: int, batch: int = 1
) -> None:
    try:
        export_graph(model, path, config.opset, batch=batch)
        if config.fp16:
            convert_fp16(path)
        record_num_classes(path, num_classes)
        onnx.checker.check_model(str(path))
    except Exception as exc:
        what = config.checkpoint or config.pretrained
        raise ModelError(f"export of {what} failed: {exc}") from exc


def _quantize(model_path: Path, card: ModelCard, config: ExportConfig) -> tuple[Path, ModelCard]:
    """The int8 model beside ``model_path`` (fp32, its card written) and its card, once its AP
    on ``--int8-val`` is within ``--max-ap-drop`` of fp32's on every installed engine."""
    from detect.quantize import held_out_ap, quantization_record, quantize_int8
    from detect.runtime.engines import installed_engines

    calibration = list_images([config.int8])
    int8_path = model_path.with_name("int8.onnx")
    log.info("int8: calibrating on %d images of %s", len(calibration), config.int8)
    quantize_int8(model_path, int8_path, calibration)
    int8_card = ModelCard(**{**card.__dict__, "precision": "int8"})
    int8_card.sha256 = sha256_file(int8_path)
    int8_card.write(card_path(int8_path))
    engines = installed_engines()
    fp32 = {e: held_out_ap(model_path, config.int8_val, e) for e in engines}
    int8 = {e: held_out_ap(int8_path, config.int8_val, e) for e in engines}
    record = quantization_record(
        calibration, config.int8, config.int8_val, fp32, int8, config.max_ap_drop, config.force
    )
    for engine in engines:
        figures = "  ".join(
            f"{kind} AP {fp32[engine][kind]:.4f} -> {int8[engine][kind]:.4f}"
            for kind in fp32[engine]
        )
        print(f"int8 on {engine}: {figures}")
    drop = record["ap_drop_points"]
    if drop > config.max_ap_drop and not config.force:
        raise ModelError(
            f"int8 loses {drop:.2f} AP points on {config.int8_val} (--max-ap-drop "
            f"{config.max_ap_drop:g}); nothing written: calibrate on more of the model's own "
            "images, raise --max-ap-drop, or --force"
        )
    int8_card.quantization = record
    return int8_path, int8_card


def export(config: ExportConfig) -> ExportResult:
    """Export, write the card, and with `verify` run the parity check into the card.

    Everything is written in a work folder beside ``out`` and moved into place at the end, so
    a failed export leaves nothing (and an earlier model at ``out`` intact).
    """
    _check(config)
    ckpt, model, source = _source(config)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    num_classes = len(ckpt["labels"])
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}-export-") as work:
        path = Path(work) / "model.onnx"
        _write_graph(model, path, config, num_classes)
        card = _card(
            out.stem,
            ckpt,
            model,
            path,
            config.opset,
            config.fp16,
            source,
            config.score,
            agnostic_nms=config.agnostic_nms,
            agnostic_nms_iou=config.agnostic_nms_iou,
        )
        for batch in config.batch_sizes:
            batch_path = batch_graph_path(path, batch)
            _write_graph(model, batch_path, config, num_classes, batch)
            card.batch_graphs[str(batch)] = sha256_file(batch_path)
        if config.int8 is not None:
            card.write(card_path(path))
            path, card = _quantize(path, card, config)
        card.write(card_path(path))  # moved in right after the model: no time with a stale card
        for batch in config.batch_sizes:
            batch_graph_path(path, batch).replace(batch_graph_path(out, batch))
        path.replace(out)
        card_path(path).replace(card_path(out))
    result = ExportResult(out, card_path(out), out.stat().st_size / 2**20)
    if config.verify is not None:
        from detect.parity import parity_for_files

        report = parity_for_files(model, out, [config.verify])
        card.parity = report.summary()
        card.write(card_path(out))
        print(report.table())
        result.passed = report.passed
    return result


def _batch_sizes(text: str) -> list[int]:
    """``--batch-sizes`` "2,4,8" -> [2, 4, 8]: distinct integers of 2 or more."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give batch sizes like 2,4,8") from None
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give batch sizes of 2 or more, like 2,4,8")
    return sizes


add_arguments = ExportConfig.add_arguments


def run(args: argparse.Namespace) -> int:
    """`detect export` from parsed flags; exit 1 if the parity check failed."""
    result = export(ExportConfig.from_args(args))
    print(f"wrote {result.model} ({result.size_mb:.1f} MB) and {result.card}")
    if not result.passed:
        print("error: parity check FAILED (see the table above)", file=sys.stderr)
        return 1
    return 0

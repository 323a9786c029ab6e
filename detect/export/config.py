"""`ExportConfig`: the settings of `detect export`, each declared once (`detect.settings`); from
them come its flags, their ``--help`` lines and the errors that name them."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.errors import ConfigError, ModelError, install_extra
from detect.models.spec import check_checkpoint_file, check_zoo_name
from detect.runtime.model_card import AGNOSTIC_NMS_IOU, DEFAULT_SCORE
from detect.runtime.precision import int8_sibling
from detect.runtime.sources import list_images
from detect.settings import FLAGS, Check, Spelling, check, output_file, setting


def _batch_sizes(value: Any, root: Path, what: str) -> list[int]:
    """``2,4,8`` (the flag) or a list of whole numbers -> the distinct sizes, sorted; each 2 or
    more."""
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list | tuple):
        raise ConfigError(f"{what} {value!r}: give batch sizes like 2,4,8")
    sizes: set[int] = set()
    for part in parts:
        if isinstance(part, str) and not part.strip():
            continue  # "2,4,"
        if isinstance(part, bool) or not str(part).strip().isdecimal():
            raise ConfigError(f"{what} {value!r}: give batch sizes like 2,4,8")
        sizes.add(int(part))
    if not sizes or min(sizes) < 2:
        raise ConfigError(f"{what} {value!r}: give batch sizes of 2 or more, like 2,4,8")
    return sorted(sizes)


def _onnx_file(path: Path | None) -> str | None:
    if path is None or path.suffix == ".onnx":
        return output_file(path)
    return "name an .onnx file (the model card goes next to it)"


def _exported_file(path: Path | None) -> str | None:
    if path is None:
        return None
    if path.suffix != ".onnx":
        return "name an exported NAME.onnx (its card NAME.json beside it)"
    return None if path.is_file() else "no such file"


def _from_0_to_1(what: str) -> Check:
    return lambda v: None if v is None or 0.0 <= v <= 1.0 else f"use {what} from 0 to 1"


def _calibration_images(path: Path | None) -> str | None:
    if path is None:
        return None
    if not path.exists():
        return "no such folder or file of calibration images"
    if not list_images([path]):
        return "no images in it; give the model's own images"
    return None


@dataclass(kw_only=True)
class ExportConfig:
    """`detect export`'s settings: what to export (``checkpoint`` or the zoo model
    ``pretrained``; or ``model``, an exported file to make only the int8 model of), where
    (``out``), how (opset, precision, batch graphs, int8), the card's default thresholds, and
    the checks to run (parity on ``verify``'s images, int8's AP on ``int8_val``)."""

    checkpoint: Path | None = setting(None, "best.pt, last.pt or ckpt_e*.pt", group="source")
    pretrained: str | None = setting(
        None, "a torchvision COCO model (`detect models`)", metavar="NAME", group="source"
    )
    model: Path | None = setting(
        None,
        "an exported fp32 NAME.onnx: with --int8, write only its int8 model NAME.int8.onnx "
        "beside it",
        check=_exported_file,
        metavar="NAME.onnx",
        group="source",
    )
    weights: str = setting("DEFAULT", "--pretrained: its weights, DEFAULT or COCO_V1")
    out: Path | None = setting(
        None,
        "output NAME.onnx (card: NAME.json; with --int8 also NAME.int8.onnx and its card "
        "NAME.int8.json)",
        check=_onnx_file,
    )
    opset: int = setting(
        17,
        "ONNX opset",
        check=lambda v: None if 11 <= v <= 21 else "use 17 (tested) or another of 11..21",
    )
    fp16: bool = setting(False, "float16 weights and activations")
    score: float = setting(
        DEFAULT_SCORE,
        "default score threshold written to the card (clients may ask for another)",
        check=_from_0_to_1("a threshold"),
    )
    agnostic_nms: bool = setting(
        False,
        "card default: also suppress overlapping boxes of different classes, keeping the best "
        "(clients may ask otherwise)",
    )
    agnostic_nms_iou: float = setting(
        AGNOSTIC_NMS_IOU,
        "IoU above which class-agnostic NMS suppresses a box, written to the card",
        check=_from_0_to_1("an IoU"),
    )
    verify: Path | None = setting(
        None,
        "run the parity check on these images; exit 1 if it fails",
        metavar="IMAGES_DIR",
    )
    batch_sizes: list[int] = setting(
        factory=list,
        help="also write graphs taking B images of one size in one call (NAME.bB.onnx), "
        "e.g. 2,4,8; for GPUs (on a CPU they are no faster)",
        parse=_batch_sizes,
        metavar="B,B,...",
    )
    int8: Path | None = setting(
        None,
        "also write the int8 model NAME.int8.onnx, calibrated on these images (the model's own "
        "training images; 32-128 are enough); serve, video and watch run it on the CPU",
        check=_calibration_images,
        metavar="CALIB_IMAGES",
    )
    int8_val: Path | None = setting(
        None,
        "--int8: COCO JSON of held-out images (beside it) to measure its AP against fp32",
        check=lambda v: None if v is None or v.is_file() else "no such file",
        metavar="GT_JSON",
    )
    max_ap_drop: float = setting(
        1.0,
        "--int8: refuse a model losing more AP points than this on any engine",
        check=lambda v: None if v >= 0 else "give AP points, 0 or more",
    )
    force: bool = setting(False, "--int8: write it whatever AP it loses")

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks that involve several settings; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(ExportConfig, FLAGS)
        sources = [self.checkpoint, self.pretrained, self.model]
        if sum(source is not None for source in sources) != 1:
            raise spell.problem(
                f"give {spell('checkpoint')} CKPT, {spell('pretrained')} NAME (`detect models` "
                f"lists them) or {spell('model')} NAME.onnx (with {spell('int8')}: its int8 model)"
            )
        if self.model is not None:
            self._validate_int8_of_model(spell)
        elif self.out is None:
            raise spell.problem(f"give {spell('out')} NAME.onnx (the model card goes next to it)")
        if any(size < 2 for size in self.batch_sizes):
            raise spell.error("batch_sizes", self.batch_sizes, "give sizes of 2 or more")
        if self.int8 is None:
            if self.int8_val is not None or self.force:
                raise spell.problem(
                    f"{spell('int8_val')} and {spell('force')} go with {spell('int8')} CALIB_IMAGES"
                )
            return
        if self.int8_val is None:
            raise spell.problem(
                f"{spell('int8')} needs {spell('int8_val')} GT_JSON: annotated held-out images "
                "to measure what int8 costs in AP"
            )
        if self.fp16 or self.batch_sizes or self.verify is not None:
            raise spell.problem(
                f"{spell('int8')} goes without {spell('fp16')}, {spell('batch_sizes')} and "
                f"{spell('verify')} (its check is the AP measured on {spell('int8_val')}); "
                "leave those out"
            )

    def _validate_int8_of_model(self, spell: Spelling) -> None:
        """``--model``: only ``--int8`` and its settings, which make its int8 model."""
        model = f"{spell('model')} {self.model}"
        if self.int8 is None:
            raise spell.problem(
                f"{model}: an exported model is only made int8 here; give {spell('int8')} "
                f"CALIB_IMAGES and {spell('int8_val')} GT_JSON (or export a checkpoint with "
                f"{spell('checkpoint')})"
            )
        if self.out is not None:
            raise spell.problem(
                f"{model} writes its int8 model {int8_sibling(self.model)} beside it; leave "
                f"{spell('out')} out"
            )
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        of_export = ("weights", "opset", "score", "agnostic_nms", "agnostic_nms_iou")
        given = [spell(name) for name in of_export if getattr(self, name) != defaults[name]]
        if given:
            raise spell.problem(
                f"{model} keeps its graph and card as they are; leave {', '.join(given)} out"
            )


def check_export(config: ExportConfig) -> None:
    """Every mistake of ``config`` that needs no model, before torch is even loaded (`detect
    export` checks first): the settings (`detect.settings.check`), a checkpoint that is not there
    or not a torch file, a zoo name that is none, then what ``--int8`` needs."""
    check(config)
    if config.checkpoint is not None:
        check_checkpoint_file(config.checkpoint)
    if config.model is not None:
        _check_fp32_model(config.model)
    if config.pretrained is not None:
        check_zoo_name(config.pretrained)
    if config.int8 is not None:
        _check_int8_inputs(config)


def _check_fp32_model(path: Path) -> None:
    """`ModelError` unless ``path`` is an exported fp32 model whose card matches it."""
    from detect.runtime.detector import check_model

    precision = check_model(path).precision
    if precision != "fp32":
        raise ModelError(
            f"--model {path} is an {precision} model; give the fp32 NAME.onnx it was exported "
            "beside"
        )


def _check_int8_inputs(config: ExportConfig) -> None:
    """`ConfigError` for what ``--int8`` needs and lacks, before anything is traced: ONNX
    Runtime to run the model on, annotations in ``--int8-val`` to score against; the
    `DataError` of a calibration image that does not decode."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError(
            "--int8 runs the model on ONNX Runtime to calibrate and score it: install the `serve` "
            f"extra too: {install_extra('serve')}"
        )
    from detect.evaluate import read_gt
    from detect.quantize import calibration_image

    read_gt(config.int8_val)
    for path in list_images([config.int8]):
        calibration_image(path)

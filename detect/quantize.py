"""int8 models for `detect export --int8`: quantize an exported graph, then measure what it costs.

`quantize_int8` is OpenVINO's post-training quantizer, NNCF, on the ONNX file (its ONNX
backend): symmetric int8 weights per output channel and int8 activations with MinMax ranges
calibrated on the model's own images, written as QuantizeLinear/DequantizeLinear pairs with the
weights stored as int8, so the result is still one ONNX file. NNCF places the pairs where
OpenVINO's CPU plugin runs whole blocks in int8 (the residual adds and activations of the
backbone and FPN as well as their convolutions). Only the learned layers are quantized: the
backbone, FPN, RPN head and the RoI box and mask heads (`QUANTIZED_SCOPES`). The preprocessing,
anchors and box decoding, NMS, RoI Align, mask pasting and the outputs stay float32; left to
itself NNCF also quantizes the detections' own boxes, which cost the demo model 16 AP points.
Bias correction is off: on the demo model it lowered mask AP by a further 0.9 points.

Why NNCF and not ONNX Runtime's ``quantize_static``: on the demo model (100 held-out images,
`benchmarks/predict_latency.py --model`) ``quantize_static`` saved OpenVINO no time at all and
cost it 2.3 box AP points, while NNCF's file runs in 0.60x of OpenVINO fp32's time within half a
point of its AP. ONNX Runtime runs NNCF's file too, at about fp32's AP, but gains little or
nothing (it fuses fewer of the pairs): int8 is a model for OpenVINO, which ``--backend auto``
picks on the CPU.

`held_out_ap` is the accuracy side: COCO box (and mask) AP of an exported model on annotated
held-out images, through `detect eval`'s own path (every detection down to the graph's score
threshold, masks traced exactly). `detect export` measures fp32 and int8 on every installed
engine, writes the figures into the card (``quantization``) and refuses an int8 model whose AP
drops by more than ``--max-ap-drop`` points on any of them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from detect.data.coco import read_json
from detect.errors import DataError, InputError, ModelError
from detect.metrics.coco import coco_stats
from detect.metrics.evaluator import CocoEvaluator, inference_on_dataset, scoring_options
from detect.progress import StartProgress, silent
from detect.runtime.image import decode_image
from detect.runtime.sources import read_image

log = logging.getLogger(__name__)

# Node-name prefixes of torchvision's exported detectors whose nodes NNCF may quantize
QUANTIZED_SCOPES = (
    "/backbone/",
    "/rpn/head/",
    "/roi_heads/box_head/",
    "/roi_heads/box_predictor/",
    "/roi_heads/mask_head/",
    "/roi_heads/mask_predictor/",
)


def quantize_int8(
    src: Path, dst: Path, calibration: list[Path], progress: StartProgress = silent
) -> None:
    """Write ``dst``, the int8 QDQ version of the exported graph ``src``, calibrated on the
    encoded image files ``calibration`` (fed to the graph as ``(H, W, 3) uint8`` RGB), the
    images read to ``progress``."""
    # NNCF imports its torch backend, whose import warns that CUDA is missing on CPU machines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    outside = "^(?!" + "|".join(re.escape(scope) for scope in QUANTIZED_SCOPES) + ").*"
    nncf.set_log_level(logging.WARNING)  # it logs every node it leaves alone at INFO
    bar = progress("int8 calibration", len(calibration), "images")

    def graph_input(path: Path) -> dict[str, np.ndarray]:
        image = calibration_image(path)
        bar.update()
        return {"image": image}

    try:
        with bar, contextlib.redirect_stdout(io.StringIO()):  # its progress bars
            quantized = nncf.quantize(
                onnx.load(str(src)),
                nncf.Dataset(calibration, graph_input),
                preset=nncf.QuantizationPreset.PERFORMANCE,
                subset_size=len(calibration),
                ignored_scope=nncf.IgnoredScope(patterns=[outside], validate=False),
                advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True),
            )
    except DataError:
        raise
    except Exception as exc:  # NNCF's own exception types
        raise ModelError(f"int8: NNCF cannot quantize {src}: {exc}") from exc
    onnx.save(quantized, str(dst))


def calibration_image(path: Path) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB of one calibration image, or a `DataError` naming it."""
    try:
        return decode_image(read_image(path))
    except InputError as exc:
        raise DataError(f"--int8 calibration image {path}: {exc}; remove it") from None


def held_out_ap(
    model: Path, gt_path: Path, engine: str, progress: StartProgress = silent
) -> dict[str, float]:
    """COCO AP (0-1) of the exported ``model`` (its card beside it) on ``engine`` over the images
    of the COCO file ``gt_path`` (beside it): ``{"bbox": AP}``, plus ``"segm"`` for mask models;
    the images done to ``progress``. A `DataError` when an image cannot be predicted or the
    classes differ."""
    from detect.evaluate import check_categories, gt_has_masks, read_gt
    from detect.runtime.detector import Detector

    data, gt = read_gt(gt_path)
    paths = {int(image["id"]): gt_path.parent / image["file_name"] for image in data["images"]}
    with closing(Detector(model, device="cpu", backend=engine)) as detector:
        info = detector.info
        check_categories(info, gt, f"model {model}")
        evaluator = CocoEvaluator(gt, masks=info.has_masks)
        what = f"{detector.card.precision} AP on {engine}"
        with progress(what, len(paths), "images") as bar:
            options = scoring_options(info.has_masks)
            inference_on_dataset(detector, paths, evaluator, options, progress=bar.update)
    if evaluator.failed:
        raise DataError(
            f"--int8-val {gt_path}: {next(iter(evaluator.failed.values()))}; fix or remove it"
        )
    types = ["bbox", "segm"] if info.has_masks and gt_has_masks(gt) else ["bbox"]
    return {t: coco_stats(gt, evaluator.results, t)["AP"] for t in types}


def ap_cost(fp32: dict[str, dict[str, float]], int8: dict[str, dict[str, float]]) -> float:
    """The largest AP drop, in points (0-100), from fp32 to int8 over engines and AP types;
    both map engine -> `held_out_ap`."""
    return max(
        100 * (fp32[engine][kind] - int8[engine][kind]) for engine in fp32 for kind in fp32[engine]
    )


def quantization_record(
    calibration: list[Path],
    calibration_source: Path,
    gt_path: Path,
    fp32: dict[str, dict[str, float]],
    int8: dict[str, dict[str, float]],
    max_ap_drop: float,
    forced: bool,
) -> dict[str, Any]:
    """The card's ``quantization`` entry: how the model was quantized and what it cost."""
    return {
        "method": "NNCF post-training quantization (ONNX backend, performance preset: "
        "symmetric per-channel int8 weights, int8 activations, MinMax calibration, no bias "
        "correction), QDQ",
        "scopes": list(QUANTIZED_SCOPES),
        "calibration": str(calibration_source),
        "calibration_images": len(calibration),
        "held_out": str(gt_path),
        "held_out_images": len(read_json(gt_path)["images"]),
        "ap": {engine: {"fp32": fp32[engine], "int8": int8[engine]} for engine in fp32},
        "ap_drop_points": round(ap_cost(fp32, int8), 3),
        "max_ap_drop": max_ap_drop,
        "forced": forced,
    }

"""int8 models for `detect export --int8`: quantize an exported graph, then measure what it costs.

`quantize_int8` is ONNX Runtime's static quantization in QDQ form (``quantize_static``): int8
weights per output channel, uint8 activations with MinMax ranges calibrated on the model's own
images, for the Conv, Gemm and MatMul nodes (the backbone, FPN, RPN and the box and mask heads);
the preprocessing, NMS, RoI Align and the outputs stay float32. Both engines run the QDQ file as
it is: ONNX Runtime fuses QDQ pairs into int8 kernels, OpenVINO reads them as FakeQuantize.

`held_out_ap` is the accuracy side: COCO box (and mask) AP of an exported model on annotated
held-out images, through `detect eval`'s own path (every detection down to the graph's score
threshold, masks traced exactly). `detect export` measures fp32 and int8 on every installed
engine, writes the figures into the card (``quantization``) and refuses an int8 model whose AP
drops by more than ``--max-ap-drop`` points on any of them.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from detect.data.coco import read_json
from detect.errors import DataError, InputError, ModelError
from detect.metrics.coco import coco_stats
from detect.metrics.evaluator import CocoEvaluator, inference_on_dataset, scoring_options
from detect.runtime.image import decode_image
from detect.runtime.sources import read_image

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


def quantize_int8(src: Path, dst: Path, calibration: list[Path]) -> None:
    """Write ``dst``, the int8 QDQ version of the exported graph ``src``, calibrated on the
    encoded image files ``calibration`` (fed to the graph as ``(H, W, 3) uint8`` RGB)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.paths = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self.paths, None)
            return None if path is None else {"image": calibration_image(path)}

    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".quantize-") as work:
        prepared = Path(work) / "prepared.onnx"  # shapes inferred, graph optimised, as advised
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # ONNX Runtime's own exception types
            raise ModelError(f"int8: ONNX Runtime cannot prepare {src}: {exc}") from exc
        quantize_static(
            str(prepared),
            str(dst),
            Images(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
            # MinMax keeps only each tensor's running min and max (ReduceMin/ReduceMax nodes
            # added to the graph), so memory does not grow with the number of images; its
            # CalibMaxIntermediateOutputs option would drop all but the last chunk (ORT 1.32)
            calibrate_method=CalibrationMethod.MinMax,
        )


def calibration_image(path: Path) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB of one calibration image, or a `DataError` naming it."""
    try:
        return decode_image(read_image(path))
    except InputError as exc:
        raise DataError(f"--int8 calibration image {path}: {exc}; remove it") from None


def held_out_ap(model: Path, gt_path: Path, engine: str) -> dict[str, float]:
    """COCO AP (0-1) of the exported ``model`` (its card beside it) on ``engine`` over the images
    of the COCO file ``gt_path`` (beside it): ``{"bbox": AP}``, plus ``"segm"`` for mask models.
    A `DataError` when an image cannot be predicted or the classes differ."""
    from detect.evaluate import check_categories, gt_has_masks, read_gt
    from detect.runtime.detector import Detector

    data, gt = read_gt(gt_path)
    paths = {int(image["id"]): gt_path.parent / image["file_name"] for image in data["images"]}
    with closing(Detector(model, device="cpu", backend=engine)) as detector:
        info = detector.info
        check_categories(info, gt, f"model {model}")
        evaluator = CocoEvaluator(gt, masks=info.has_masks)
        inference_on_dataset(detector, paths, evaluator, scoring_options(info.has_masks))
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
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 "
        "activations, MinMax calibration",
        "ops": list(QUANTIZED_OPS),
        "calibration": str(calibration_source),
        "calibration_images": len(calibration),
        "held_out": str(gt_path),
        "held_out_images": len(read_json(gt_path)["images"]),
        "ap": {engine: {"fp32": fp32[engine], "int8": int8[engine]} for engine in fp32},
        "ap_drop_points": round(ap_cost(fp32, int8), 3),
        "max_ap_drop": max_ap_drop,
        "forced": forced,
    }

"""What `detect export` does to a traced ONNX file: float16 conversion (``--fp16``) and the
class count in its metadata.

``--fp16`` converts the weights and activations to float16 with ONNX Runtime's converter; the
input and outputs stay uint8/float32/int64, and ops without float16 kernels (NonMaxSuppression,
RoiAlign, Resize, TopK, …) stay float32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx

from detect.runtime.model_card import NUM_CLASSES_KEY


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

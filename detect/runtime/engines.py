"""Inference engines that run an exported ONNX graph: ONNX Runtime and OpenVINO.

An engine runs one ONNX file: inputs by name (``image``, ``(H, W, 3) uint8`` RGB, or for a
batch graph ``images``, ``(B, H, W, 3) uint8``) in, the graph's outputs by name out (``boxes``,
``labels``, ``scores``, for Mask R-CNN ``mask_probs``, for a batch graph ``counts``); everything
around it (the model card, preparing images, postprocessing) is
`detect.runtime.detector.Detector`'s.

- ``onnxruntime``: the CPU provider, or CUDA when ONNX Runtime has it (``device``), through IO
  binding (each input copied to the device once, outputs bound to host memory and copied out
  once).
- ``openvino``: OpenVINO's CPU plugin in f32 (``EXECUTION_MODE_HINT`` ACCURACY), reading the
  ONNX file as it is (the `openvino` extra). Its default here would be bf16: faster, but scores
  move by up to 0.23 on the demo model, so it is not used.
- Tuning kept by measurement: each engine's own thread count (one per core) and ONNX Runtime's
  full graph optimisation (its default); OpenVINO's LATENCY hint (its default) over THROUGHPUT,
  whose two streams ran a random-weight R50-FPN Mask R-CNN (480 px) at 841 ms per image with
  two images in flight against 757 ms for LATENCY's one stream (`benchmarks/openvino_hint.py`).
- ``auto``: OpenVINO on the CPU when it is installed, ONNX Runtime otherwise and on CUDA (where
  ONNX Runtime lists the CUDA provider: onnxruntime-gpu does so even without a GPU). A
  fixed rule, so that the same model gives the same numbers run after run (timing both at load
  picked differently from one run to the next on small models). Measured on this project's
  2-core AVX2 CPU, median ms per image ONNX Runtime vs OpenVINO: demo model (256 px) 49.5 vs
  50.6, Mask R-CNN R50-FPN at 800 px 1540 vs 1288, Faster R-CNN MobileNetV3-FPN at 800 px 433
  vs 227 (`make bench-predict` has the int8 figures).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from detect.config import BACKENDS, DEVICES
from detect.errors import ConfigError, ModelError, install_extra
from detect.runtime.model_card import NUM_CLASSES_KEY

log = logging.getLogger(__name__)

ENGINES = BACKENDS  # the choices of `--backend` and `--device`, declared once in detect.config


class Engine(Protocol):
    """Runs the graph. ``name`` is the engine, ``provider`` where it runs (recorded in
    GetModelInfo and the metrics), ``num_classes`` the class count `detect export` recorded in
    the file (None for older exports)."""

    name: str
    provider: str
    num_classes: int | None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def installed_engines() -> list[str]:
    """The engines this environment can run: ONNX Runtime, and OpenVINO when installed."""
    return ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


def check_engine(engine: str, device: str) -> None:
    """A `ConfigError` for an unknown engine or device, or OpenVINO asked to run on CUDA."""
    if engine not in ENGINES:
        raise ConfigError(f"backend {engine!r}: use one of {', '.join(ENGINES)}")
    if device not in DEVICES:
        raise ConfigError(f"device {device!r}: use one of {', '.join(DEVICES)}")
    if engine == "openvino" and device == "cuda":
        raise ConfigError("backend openvino runs on the CPU here; use --device cpu or auto")


def open_engine(path: Path, engine: str, device: str, threads: int) -> Engine:
    """The engine for ``path``: ``engine`` "auto", "onnxruntime" or "openvino" on ``device``
    ("auto", "cpu", "cuda"); ``threads`` intra-op threads on the CPU (0: the engine's default)."""
    check_engine(engine, device)
    if engine == "auto":
        cuda = device == "cuda" or (device == "auto" and _ort_has_cuda())
        engine = "openvino" if "openvino" in installed_engines() and not cuda else "onnxruntime"
    if engine == "openvino":
        return OpenVinoEngine(path, threads)
    return OrtEngine(path, device, threads)


def runs_on_cpu(device: str, engine: str) -> bool:
    """Whether `open_engine` runs a model on the CPU for ``device`` and ``engine``: OpenVINO
    and ``--device cpu`` always, ``--device auto`` when ONNX Runtime has no CUDA."""
    if engine == "openvino" or device == "cpu":
        return True
    return device == "auto" and not _ort_has_cuda()


def _ort_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class OrtEngine:
    """ONNX Runtime: the CPU provider, or CUDA (then the CPU for the nodes it lacks)."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: str, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # no warnings about nodes placed on the CPU
        providers = _providers(device)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own types for bad files
            first = str(exc).splitlines()[0][:300]
            raise ModelError(f"ONNX Runtime cannot load {path}: {first}") from None
        self.provider = self.session.get_providers()[0]
        self._outputs = [o.name for o in self.session.get_outputs()]
        recorded = self.session.get_modelmeta().custom_metadata_map.get(NUM_CLASSES_KEY)
        self.num_classes = None if recorded is None else int(recorded)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # IO binding (one per call: callers may be threads): on CUDA each input is copied to the
        # device once and the outputs come back into host memory without a staging copy
        binding = self.session.io_binding()
        for name, value in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self._outputs, binding.copy_outputs_to_cpu(), strict=True))


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):  # finds CUDA/cuDNN installed as pip packages or by torch
        try:
            ort.preload_dlls()
        except Exception as exc:  # missing libraries show up as no CUDA below
            log.debug("onnxruntime.preload_dlls: %s", exc)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(
            "device cuda: this onnxruntime has no CUDAExecutionProvider; install the `gpu` extra "
            "(onnxruntime-gpu) on a machine with an NVIDIA driver, or use --device cpu"
        )
    return ["CPUExecutionProvider"]


class OpenVinoEngine:
    """OpenVINO's CPU plugin on the ONNX file as it is (dynamic height and width)."""

    name = "openvino"
    provider = "OpenVINO CPU"

    def __init__(self, path: Path, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ConfigError(
                "backend openvino: OpenVINO is not installed; install the `openvino` extra "
                f"({install_extra('openvino')}) or use --backend onnxruntime"
            ) from None
        from openvino.frontend import FrontEndManager

        # asked first: on a file the ONNX frontend cannot read, Core.read_model tries every
        # other frontend, and TensorFlow's writes its own parse errors to stderr
        if not FrontEndManager().load_by_framework("onnx").supported(str(path)):
            raise ModelError(f"OpenVINO cannot load {path}: it is not a readable ONNX model")
        core = ov.Core()
        try:
            model = core.read_model(str(path))
            config: dict[str, object] = {"EXECUTION_MODE_HINT": "ACCURACY"}  # f32, not bf16
            if threads:  # a share of the machine: other processes (Ray workers) run beside it
                config["INFERENCE_NUM_THREADS"] = threads
                config["ENABLE_CPU_PINNING"] = False  # pinned, each would take core 0
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with long texts
            raise ModelError(f"OpenVINO cannot load {path}: {_openvino_reason(exc)}") from None
        # a compiled output may carry the names of tensors merged into it (an fp16 model's
        # "scores" is also "graph_output_cast_2"), and get_any_name picks any one of them
        onnx_names = {name for port in model.outputs for name in port.get_names()}
        self._outputs = [
            (o, min(o.get_names() & onnx_names, default=o.get_any_name()))
            for o in self.compiled.outputs
        ]
        key = ["framework", NUM_CLASSES_KEY]
        self.num_classes = (
            int(model.get_rt_info(key).astype(str)) if model.has_rt_info(key) else None
        )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = self.compiled.create_infer_request()  # one per call: callers may be threads
        request.infer({name: np.ascontiguousarray(value) for name, value in inputs.items()})
        return {name: request.get_tensor(port).data.copy() for port, name in self._outputs}


def _openvino_reason(exc: Exception) -> str:
    """The line of an OpenVINO exception that says what is wrong: its texts open with lines
    naming the C++ source that raised it ("Exception from src/...", "Check '...' failed at")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    sources = ("Exception from", "Check '", "FrontEnd API failed")
    said = [line for line in lines if not line.startswith(sources)]
    return (said or lines or [type(exc).__name__])[-1][:300]

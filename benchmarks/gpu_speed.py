"""GPU inference speed, same weights, same images, one run: torchvision eager vs ONNX Runtime CUDA
(fp32 and fp16, IO binding, through the runtime's `Detector`) vs, when it loads, ONNX Runtime's
TensorRT provider, each at batch 1 and batch 8; then `detect serve` on CUDA at concurrency 1, 8
and 32 without and with batch graphs.

    python benchmarks/gpu_speed.py [--backbone resnet50_fpn] [--size 640] [--duration 15]

Random weights made to behave like a trained model's (`random_weights.py`), R50-FPN Mask R-CNN
at torchvision's 800/1333 sizes by default, on synthetic ``--size`` px scenes. Times are the
median ms per image of the model call alone (decoded images in, raw detections out; CUDA
synchronised), over ``--runs`` calls after ``--warmup`` untimed ones. Batch 8 is eight images
of one size in one call (eager: a list of 8; ONNX Runtime: the exported 8-image graph); its
parity against the same images one at a time is printed beside it. `benchmarks/gpu_device.sh`
runs this on the offline device machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from random_weights import random_checkpoint
from serve_latency import serving

from detect.bench import BenchConfig, bench
from detect.data.synth import generate_image
from detect.export.config import ExportConfig
from detect.export.run import export
from detect.models.checkpoint import load_checkpoint, model_from_checkpoint
from detect.models.inputs import image_tensor
from detect.runtime.detector import Detector


def _median_ms(call: Callable[[], object], runs: int, warmup: int, per: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times) / per


def _row(name: str, batch: int, ms: float, note: str = "") -> None:
    print(f"{name:<28}{batch:>6}{ms:>12.1f}  {note}", flush=True)


def _versions() -> None:
    import onnxruntime as ort

    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    print(f"GPU: {smi.stdout.strip() or smi.stderr.strip()}")
    ort.preload_dlls()
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__} "
        f"({', '.join(ort.get_available_providers())})",
        flush=True,
    )


def _eager(checkpoint: Path, rgbs: list[np.ndarray], args: argparse.Namespace) -> None:
    model = model_from_checkpoint(load_checkpoint(checkpoint)).cuda().eval()
    tensors = [image_tensor(rgb).cuda() for rgb in rgbs]
    for amp in (False, True):
        name = "torch eager " + ("AMP fp16" if amp else "fp32")
        for batch in (1, 8):

            def call(batch: int = batch, amp: bool = amp) -> object:
                with torch.inference_mode(), torch.autocast("cuda", enabled=amp):
                    return model(tensors[:batch])

            _row(name, batch, _median_ms(call, args.runs, args.warmup, batch))


def _ort(model: Path, rgbs: list[np.ndarray], precision: str, args: argparse.Namespace) -> None:
    detector = Detector(model, device="cuda", backend="onnxruntime")
    name = f"ORT {detector.provider.removesuffix('ExecutionProvider')} {precision}"
    _row(name, 1, _median_ms(lambda: detector.infer(rgbs[0]), args.runs, args.warmup, 1))
    batched = detector.infer_batch(rgbs[:8])
    diffs = [
        float(np.abs(b.scores - detector.infer(rgb).scores).max()) if len(b) else 0.0
        for rgb, b in zip(rgbs[:8], batched, strict=True)
    ]
    counts = [len(b) for b in batched] == [len(detector.infer(rgb)) for rgb in rgbs[:8]]
    ms = _median_ms(lambda: detector.infer_batch(rgbs[:8]), args.runs, args.warmup, 8)
    _row(
        name, 8, ms, f"batched vs single: counts equal {counts}, max |score diff| {max(diffs):.1e}"
    )


def _tensorrt(model: Path, rgbs: list[np.ndarray], args: argparse.Namespace) -> None:
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        print("TensorRT EP: not in this onnxruntime build", flush=True)
        return
    with tempfile.TemporaryDirectory() as cache:
        options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True}
        options["trt_engine_cache_path"] = cache
        try:
            session = ort.InferenceSession(
                str(model),
                providers=[("TensorrtExecutionProvider", options), "CUDAExecutionProvider"],
            )
            if session.get_providers()[0] != "TensorrtExecutionProvider":
                raise RuntimeError(f"fell back to {session.get_providers()[0]}")
            ms = _median_ms(
                lambda: session.run(None, {"image": rgbs[0]}), args.runs, args.warmup, 1
            )
        except Exception as exc:  # missing TensorRT libraries, unsupported nodes
            print(f"TensorRT EP: unavailable ({str(exc).splitlines()[0][:200]})", flush=True)
            return
    _row("ORT TensorRT fp16", 1, ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet50_fpn")
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--size", type=int, default=640, help="synthetic scene side, px")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per server level")
    args = parser.parse_args()
    _versions()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for index in range(8):
            rgb, _, _ = generate_image(seed=3, index=index, size=args.size)
            paths.append(Path(tmp) / f"{index}.jpg")
            cv2.imwrite(str(paths[-1]), rgb[:, :, ::-1])
        rgbs = [cv2.imread(str(p))[:, :, ::-1].copy() for p in paths]
        checkpoint = random_checkpoint(
            Path(tmp) / "random.pt", "mask_rcnn", args.backbone, args.min_size, args.max_size, paths
        )
        models = {}
        for precision in ("fp32", "fp16"):
            models[precision] = Path(tmp) / f"{precision}.onnx"
            fp16 = precision == "fp16"
            export(
                ExportConfig(
                    checkpoint=checkpoint, out=models[precision], fp16=fp16, batch_sizes=[8]
                )
            )
        single = Path(tmp) / "single.onnx"
        export(ExportConfig(checkpoint=checkpoint, out=single))
        print(f"\n{'path':<28}{'batch':>6}{'ms/image':>12}", flush=True)
        _eager(checkpoint, rgbs, args)
        for precision, model in models.items():
            _ort(model, rgbs, precision, args)
        _tensorrt(single, rgbs, args)
        for title, model in (("one image per call", single), ("batch graph of 8", models["fp32"])):
            print(f"\n## detect serve --device cuda, {title}", flush=True)
            with serving(model, "cuda", "onnxruntime", 8) as address:
                bench(
                    BenchConfig(
                        server=address,
                        concurrency=[1, 8, 32],
                        duration_s=args.duration,
                        images=paths,
                    )
                )


if __name__ == "__main__":
    main()

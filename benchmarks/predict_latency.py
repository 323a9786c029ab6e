"""Per-image latency on this machine: every backend side by side with torchvision eager, same
weights, same images, one run.

    python benchmarks/predict_latency.py IMAGES... --backbone resnet50_fpn [--arch mask_rcnn]
    python benchmarks/predict_latency.py IMAGES... --checkpoint runs/X/best.pt

With --checkpoint it measures that model; with --backbone alone, random weights at
--min-size/--max-size made to behave like a trained model's (see `random_weights.py`).

It exports fp32 and fp16 graphs; for each engine installed (ONNX Runtime, OpenVINO) it runs the
parity check against the eager model and times the whole path every backend shares
(`detect_batch`: decode, model, postprocess with polygons for detections >= --score), median ms
per image, the eager model through the same path first.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch
from random_weights import random_checkpoint

from detect.export import ExportConfig, export
from detect.models.eager import EagerModel
from detect.parity import compare
from detect.runtime.backend import Backend, detect_batch
from detect.runtime.detector import Detector
from detect.runtime.sources import list_images
from detect.structures import DetectOptions


def _median_ms(backend: Backend, blobs: list[bytes], options: DetectOptions) -> tuple[float, float]:
    """Median ms per image through `detect_batch`, one image at a time, and detections/image."""
    detect_batch(backend, blobs[:1], options)
    times, counts = [], []
    for blob in blobs:
        started = time.perf_counter()
        (found,) = detect_batch(backend, [blob], options)
        times.append(1000 * (time.perf_counter() - started))
        counts.append(len(found.detections))
    return statistics.median(times), statistics.mean(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--backbone", default="resnet50_fpn")
    parser.add_argument("--arch", default="mask_rcnn")
    parser.add_argument("--min-size", type=int, default=480)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--score", type=float, default=0.5)
    args = parser.parse_args()
    images = list_images(args.images)
    print(f"torch threads {torch.get_num_threads()}, {len(images)} images")
    engines = ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    options = DetectOptions(score_threshold=args.score)
    blobs = [p.read_bytes() for p in images]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(
            Path(tmp) / "random.pt", args.arch, args.backbone, args.min_size, args.max_size, images
        )
        eager = EagerModel.from_checkpoint(checkpoint)
        eager_ms, eager_count = _median_ms(eager, blobs, options)
        rows = [("torch eager", "fp32", eager_ms, eager_count, "reference")]
        for fp16 in (False, True):
            out = Path(tmp) / f"model{'-fp16' if fp16 else ''}.onnx"
            result = export(ExportConfig(checkpoint=checkpoint, out=out, fp16=fp16))
            precision = "fp16" if fp16 else "fp32"
            print(f"exported {precision} ({result.size_mb:.1f} MB)", flush=True)
            for engine in engines:
                detector = Detector(out, device="cpu", backend=engine)
                report = compare(eager, detector, images, precision)
                ms, count = _median_ms(detector, blobs, options)
                verdict = f"{'PASS' if report.passed else 'FAIL'} {report.matched_fraction:.1%}"
                rows.append((engine, precision, ms, count, verdict))
    print(f"\n{'backend':<14}{'precision':<11}{'ms/image':>10}{'x eager':>9}{'dets':>7}  parity")
    for name, precision, ms, count, verdict in rows:
        print(f"{name:<14}{precision:<11}{ms:>10.1f}{ms / eager_ms:>9.2f}{count:>7.1f}  {verdict}")


if __name__ == "__main__":
    main()

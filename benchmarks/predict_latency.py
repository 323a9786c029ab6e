"""Per-image latency on this machine: torchvision eager vs ONNX Runtime, same weights, same run.

    python benchmarks/predict_latency.py IMAGES... --backbone resnet50_fpn [--arch mask_rcnn]
    python benchmarks/predict_latency.py IMAGES... --checkpoint runs/X/best.pt

With --checkpoint it measures that model; with --backbone alone, random weights at
--min-size/--max-size made to behave like a trained model's (see `random_weights.py`).

It exports fp32 and fp16 graphs, runs the parity check on each (eager forward vs ONNX Runtime
graph, CPU, same process) and times the whole runtime path `Detector.detect` (decode, graph,
paste + polygons for detections >= 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from random_weights import random_checkpoint

from detect.export import ExportConfig, export
from detect.parity import parity
from detect.runtime.detector import Detector
from detect.runtime.sources import list_images


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
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(
            Path(tmp) / "random.pt", args.arch, args.backbone, args.min_size, args.max_size, images
        )
        for fp16 in (False, True):
            out = Path(tmp) / f"model{'-fp16' if fp16 else ''}.onnx"
            result = export(ExportConfig(checkpoint=checkpoint, out=out, fp16=fp16))
            print(f"\n== {'fp16' if fp16 else 'fp32'} ({result.size_mb:.1f} MB) ==")
            print(parity(checkpoint, out, args.images).table())
            detector = Detector(out, device="cpu")
            blobs = [p.read_bytes() for p in images]
            detector.detect(blobs[0], score_threshold=args.score)
            times, counts = [], []
            for blob in blobs:
                started = time.perf_counter()
                counts.append(len(detector.detect(blob, score_threshold=args.score)))
                times.append(1000 * (time.perf_counter() - started))
            print(
                f"Detector.detect (decode + graph + polygons, score >= {args.score}): "
                f"median {statistics.median(times):.1f} ms/image, "
                f"{statistics.mean(counts):.1f} detections/image"
            )


if __name__ == "__main__":
    main()

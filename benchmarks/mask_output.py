"""Mask output of the exported graph: low-resolution probabilities + NumPy paste (what `detect
export` ships) against torchvision's in-graph paste of N full-image masks.

    python benchmarks/mask_output.py IMAGES... --checkpoint runs/X/best.pt [--size 640x480]
    python benchmarks/mask_output.py IMAGES... --backbone resnet50_fpn   # random weights

Exports the checkpoint both ways, runs each on the same images (resized to --size) with ONNX
Runtime on the CPU, and prints per-image medians: graph time, postprocess time (threshold, paste
or crop, trace polygons for detections >= --score), total, bytes of mask output, and how
often the polygons of the two paths rasterise to the same pixels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from random_weights import random_checkpoint

from detect.export.trace import export_graph
from detect.models.checkpoint import load_checkpoint, model_from_checkpoint
from detect.runtime.masks import paste_mask
from detect.runtime.polygons import mask_to_polygons, polygons_to_mask
from detect.runtime.sources import list_images


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _lowres(session, rgb, score):
    started = time.perf_counter()
    boxes, _, scores, probs = session.run(None, {"image": rgb})
    graph = time.perf_counter()
    height, width = rgb.shape[:2]
    objects = []
    for i in np.flatnonzero(scores >= score):
        crop, x0, y0 = paste_mask(probs[i], boxes[i], height, width)
        objects.append(mask_to_polygons(crop > 0.5, offset=(x0, y0)) if crop.size else [])
    done = time.perf_counter()
    return objects, graph - started, done - graph, probs.nbytes


def _full(session, rgb, score):
    started = time.perf_counter()
    _, _, scores, masks = session.run(None, {"image": rgb})
    graph = time.perf_counter()
    objects = [mask_to_polygons(masks[i] > 0.5) for i in np.flatnonzero(scores >= score)]
    done = time.perf_counter()
    return objects, graph - started, done - graph, masks.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument(
        "--backbone", default="resnet50_fpn", help="random weights: no --checkpoint"
    )
    parser.add_argument("--size", default="640x480", help="WxH the images are resized to")
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=20, help="images used")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(
            Path(tmp) / "random.pt",
            "mask_rcnn",
            args.backbone,
            min(width, height),
            max(width, height),
            list_images(args.images),
        )
        model = model_from_checkpoint(load_checkpoint(checkpoint))
    images = [
        cv2.resize(cv2.imread(str(p))[:, :, ::-1], (width, height))
        for p in list_images(args.images)[: args.limit]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, full in (("low-res + paste", False), ("full in graph", True)):
            path = Path(tmp) / f"{full}.onnx"
            export_graph(model, path, full_masks=full)
            sessions[name] = _session(path)
        runs = {"low-res + paste": _lowres, "full in graph": _full}
        figures = {name: [] for name in runs}
        outlines = {name: [] for name in runs}
        for rgb in [images[0], *images]:  # the first image twice: warm-up
            for name, run in runs.items():
                objects, graph_s, post_s, nbytes = run(
                    sessions[name], np.ascontiguousarray(rgb), args.score
                )
                figures[name].append((graph_s * 1e3, post_s * 1e3, nbytes / 2**20, len(objects)))
                outlines[name].append(objects)
    print(f"{len(images)} images at {width}x{height}, detections >= {args.score} traced")
    print(
        f"{'path':<16} {'graph ms':>9} {'post ms':>8} {'total ms':>9} {'mask MiB':>9} {'traced':>7}"
    )
    for name, rows in figures.items():
        g, p, mb, n = (np.median([r[k] for r in rows[1:]]) for k in range(4))
        print(f"{name:<16} {g:9.1f} {p:8.1f} {g + p:9.1f} {mb:9.2f} {n:7.0f}")
    same, ious = 0, []
    pairs = zip(outlines["low-res + paste"][1:], outlines["full in graph"][1:], strict=True)
    for low, full in pairs:
        for a, b in zip(low, full, strict=True):
            mask_a = polygons_to_mask(a, height, width)
            mask_b = polygons_to_mask(b, height, width)
            same += np.array_equal(mask_a, mask_b)
            union = (mask_a | mask_b).sum()
            ious.append((mask_a & mask_b).sum() / union if union else 1.0)
    print(
        f"polygons of the two paths: {same}/{len(ious)} rasterise to identical pixels, "
        f"mask IoU mean {np.mean(ious):.4f} min {np.min(ious):.4f}"
    )


if __name__ == "__main__":
    main()

"""Per-image latency on this machine: torchvision eager vs ONNX Runtime, same weights, same run.

    python benchmarks/predict_latency.py IMAGES... --backbone resnet50_fpn [--arch mask_rcnn]
    python benchmarks/predict_latency.py IMAGES... --checkpoint runs/X/best.pt

With --checkpoint it measures that model; with --backbone alone, a randomly initialised model at
--min-size/--max-size (no pretrained weights are needed). A plain random init is degenerate:
BatchNorm's running statistics (mean 0, var 1) make activations vanish or explode, so every
proposal gets the same or a saturated score. The benchmark therefore recalibrates the BatchNorm
statistics on a few of the images and gives the class head small weights and a background bias,
so that scores spread over (0, 1) and a few detections per image pass 0.5, as a trained model's.

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

from detect.export import ExportConfig, export
from detect.models.build import build_model
from detect.models.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from detect.parity import parity
from detect.predict import list_images
from detect.runtime.detector import Detector
from detect.runtime.image import decode_image


def random_checkpoint(
    path: Path, arch: str, backbone: str, min_size: int, max_size: int, images: list[Path]
) -> Path:
    """Write a random-weight checkpoint with live activations and spread scores (see above)."""
    sizes = {"min_size": min_size, "max_size": max_size, "anchor_scale": min(1.0, min_size / 800)}
    torch.manual_seed(0)
    model = build_model(arch, backbone, 6, "align", **sizes).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    with torch.no_grad():
        for image in images[:8]:
            rgb = decode_image(image.read_bytes())
            batch = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
            model.backbone(model.transform(list(batch))[0].tensors)
    model.eval()
    cls_score = model.roi_heads.box_predictor.cls_score
    torch.nn.init.normal_(cls_score.weight, std=0.01)
    torch.nn.init.constant_(cls_score.bias, 0.0)
    cls_score.bias.data[0] = 2.0  # background
    spec = {"arch": arch, "backbone": backbone, "roi": "align", "num_classes": 6, "sizes": sizes}
    save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "version": "bench",
            "model_spec": spec,
            "labels": ["circle", "rectangle", "triangle", "star", "ring"],
            "category_ids": [1, 2, 3, 4, 5],
            "config": {},
            "model": model.state_dict(),
            "epoch": 0,
        },
        path,
    )
    return path


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

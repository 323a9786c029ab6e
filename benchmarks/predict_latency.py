"""Per-image latency on this machine: every backend and precision side by side with torchvision
eager, same weights, same images, one run, with parity or AP next to each time.

    python benchmarks/predict_latency.py IMAGES... --backbone resnet50_fpn [--arch mask_rcnn]
    python benchmarks/predict_latency.py IMAGES... --checkpoint runs/X/best.pt [--gt GT_JSON]
    python benchmarks/predict_latency.py IMAGES... --model models/demo.onnx --gt GT_JSON

With --checkpoint it measures that model; with --backbone alone, random weights at
--min-size/--max-size made to behave like a trained model's (see `random_weights.py`); with
--model an exported model as it is (no eager row: there are no weights for torch).

Precisions: fp32, fp16 (``detect export --fp16``) and int8 (`detect.quantize.quantize_int8`, what
``detect export --int8`` runs, calibrated on IMAGES). For each engine installed (ONNX Runtime,
OpenVINO) it times the whole path every backend shares (`detect_batch`: decode, model,
postprocess with polygons for detections >= --score), median ms per image, one image at a time,
the eager model first. Next to each time: with --gt, box/mask AP on those held-out images
(`detect.quantize.held_out_ap`, `detect eval`'s path); otherwise the parity check against eager.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from random_weights import random_checkpoint

from detect.export.config import ExportConfig
from detect.export.run import export
from detect.models.eager import EagerModel
from detect.parity import TOLERANCES, ParityReport, compare
from detect.quantize import held_out_ap, quantize_int8
from detect.runtime.backend import Backend, detect_batch
from detect.runtime.detector import Detector
from detect.runtime.engines import installed_engines
from detect.runtime.model_card import ModelCard, card_path, sha256_file
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


def _int8(fp32: Path, out: Path, images: list[Path]) -> Path:
    """``out``: the int8 version of ``fp32`` calibrated on ``images``, with its card."""
    quantize_int8(fp32, out, images)
    card = ModelCard.read(card_path(fp32))
    card.precision, card.sha256 = "int8", sha256_file(out)
    card.write(card_path(out))
    return out


def _closeness(report: ParityReport, precision: str) -> str:
    """fp32/fp16: the parity verdict. int8, which parity's tolerances do not cover (export
    judges it by AP): how close its detections at the card's score threshold are to eager's."""
    if precision in TOLERANCES:
        return f"parity {'PASS' if report.passed else 'FAIL'} {report.matched_fraction:.1%} matched"
    figures = report.summary()
    return (
        f"at score >= {report.min_score:g}: {report.expected} compared, box IoU mean "
        f"{figures['box_iou_mean']:.3f}, |score diff| max {figures['score_max_abs_diff']:.3f}, "
        f"mask IoU mean {figures['mask_iou_mean']:.3f}"
    )


def _ap(figures: dict[str, float]) -> str:
    return "  ".join(f"{kind} AP {value:.4f}" for kind, value in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, nargs="+")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--model", type=Path, help="an exported NAME.onnx (no eager row)")
    parser.add_argument("--backbone", default="resnet50_fpn")
    parser.add_argument("--arch", default="mask_rcnn")
    parser.add_argument("--min-size", type=int, default=480)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--score", type=float, default=0.5)
    parser.add_argument("--gt", type=Path, help="COCO JSON of held-out images: AP per row")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    args = parser.parse_args()
    images = list_images(args.images)
    print(f"torch threads {torch.get_num_threads()}, {len(images)} images", flush=True)
    options = DetectOptions(score_threshold=args.score)
    blobs = [p.read_bytes() for p in images]
    precisions = args.precisions.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        eager = None
        if args.model is None:
            checkpoint = args.checkpoint or random_checkpoint(
                Path(tmp) / "random.pt",
                args.arch,
                args.backbone,
                args.min_size,
                args.max_size,
                images,
            )
            eager = EagerModel.from_checkpoint(checkpoint)
            eager_ms, eager_count = _median_ms(eager, blobs, options)
            note = _ap(held_out_ap_eager(checkpoint, args.gt)) if args.gt else "reference"
            rows.append(("torch eager", "fp32", eager_ms, eager_count, note))
            print(rows[-1], flush=True)
        models = {}
        fp32 = Path(tmp) / "model.onnx"
        if args.model is not None:
            shutil.copy(args.model, fp32)
            shutil.copy(card_path(args.model), card_path(fp32))
        else:
            export(ExportConfig(checkpoint=checkpoint, out=fp32))
        models["fp32"] = fp32
        if "fp16" in precisions and eager is not None:
            models["fp16"] = Path(tmp) / "model-fp16.onnx"
            export(ExportConfig(checkpoint=checkpoint, out=models["fp16"], fp16=True))
        if "int8" in precisions:
            models["int8"] = _int8(fp32, Path(tmp) / "model-int8.onnx", images)
        for precision, path in models.items():
            if precision not in precisions:
                continue
            for engine in installed_engines():
                detector = Detector(path, device="cpu", backend=engine)
                if args.gt is not None:
                    note = _ap(held_out_ap(path, args.gt, engine))
                else:
                    tolerances = precision if precision in TOLERANCES else "fp16"
                    report = compare(eager, detector, images, tolerances)
                    note = _closeness(report, precision)
                ms, count = _median_ms(detector, blobs, options)
                rows.append((engine, precision, ms, count, note))
                print(rows[-1], flush=True)
    reference = rows[0][2] if eager is not None else None
    header = f"{'backend':<14}{'precision':<11}{'ms/image':>10}{'x eager':>9}{'dets':>7}"
    print(f"\n{header}  parity vs eager, or AP")
    for name, precision, ms, count, note in rows:
        ratio = f"{ms / reference:>9.2f}" if reference else f"{'-':>9}"
        print(f"{name:<14}{precision:<11}{ms:>10.1f}{ratio}{count:>7.1f}  {note}")


def held_out_ap_eager(checkpoint: Path, gt: Path) -> dict[str, float]:
    """Box/mask AP of the checkpoint in torch eager on ``gt``, as `held_out_ap` scores a model."""
    from detect.evaluate import EvalConfig, evaluate

    with tempfile.TemporaryDirectory() as out:
        metrics = evaluate(EvalConfig(gt=gt, out=Path(out), checkpoint=checkpoint)).metrics
    return {kind: metrics[kind]["AP"] for kind in ("bbox", "segm") if kind in metrics}


if __name__ == "__main__":
    main()

"""Clean against degraded AP of one exported model, and its CPU latency (issue 31).

    python benchmarks/degraded_ap.py --model models/demo.onnx [--images 200] [--seed 11]

Writes `--images` fresh 256-px synthetic images twice with the same `--seed` (`detect synth`,
then `detect synth --degrade`: the same shapes, masks and lighting, the second set through the
surveillance-camera chain of `detect.data.synth.degrade_image`) and scores the model on each
(`detect eval --model`). Seed 11 by default: the demo model trained on seed 0 (its validation and
test splits come from that set), the recipe study validated on seed 7, `benchmarks/
train_quality.py` and `benchmarks/agnostic_nms.py` test on seed 999 and tests/test_demo.py on
seed 12345. Prints box and mask AP (AP50) of both sets, the gap, and the median latency per clean
image: encoded bytes through `Detector.detect` (decode, model, masks to polygons), one image at a
time after 3 warm-up runs, on `--threads` CPU threads.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from detect.config import BACKENDS, Engine
from detect.data.synth import write_dataset
from detect.evaluate import EvalConfig, evaluate
from detect.runtime.detector import Detector
from detect.runtime.sources import list_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--engine", choices=BACKENDS, default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the model")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-degraded-ap"))
    args = parser.parse_args()
    engine = Engine(device="cpu", backend=args.engine, threads=args.threads)

    metrics = {}
    for name, degrade in (("clean", False), ("degraded", True)):
        data = args.out / "data" / f"{name}-seed{args.seed}-{args.images}"
        gt = data / "annotations.json"
        if not gt.exists():
            write_dataset(data, images=args.images, seed=args.seed, size=256, degrade=degrade)
        report = args.out / "eval" / name
        shutil.rmtree(report, ignore_errors=True)  # another model: a fresh report
        config = EvalConfig(gt=gt, out=report, model=args.model, iou_type="both", engine=engine)
        metrics[name] = evaluate(config).metrics

    detector = Detector(
        args.model, device="cpu", threads=args.threads, warmup_runs=3, backend=args.engine
    )
    clean_images = args.out / "data" / f"clean-seed{args.seed}-{args.images}" / "images"
    seconds = []
    for path in list_images([clean_images]):
        blob = path.read_bytes()
        start = time.perf_counter()
        detector.detect(blob)
        seconds.append(time.perf_counter() - start)

    print(
        f"\n{args.model}: {args.images} fresh 256-px images each, seed {args.seed} "
        f"(detect synth, and the same with --degrade)"
    )
    print(f"{'':10} {'box AP':>7} {'AP50':>6} {'mask AP':>8} {'AP50':>6}")
    for name, figures in metrics.items():
        box, mask = figures["bbox"], figures["segm"]
        print(
            f"{name:10} {box['AP']:7.3f} {box['AP50']:6.3f} {mask['AP']:8.3f} {mask['AP50']:6.3f}"
        )
    gap = {
        kind: metrics["clean"][kind]["AP"] - metrics["degraded"][kind]["AP"]
        for kind in ("bbox", "segm")
    }
    print(f"{'gap':10} {gap['bbox']:7.3f} {'':6} {gap['segm']:8.3f}")
    print(
        f"latency: median {statistics.median(seconds) * 1000:.1f} ms per clean image "
        f"({detector.engine.name}, CPU, {args.threads} threads, {len(seconds)} images)"
    )


if __name__ == "__main__":
    main()

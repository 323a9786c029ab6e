"""Detection quality against training time: box and mask AP of the default recipe over time.

    python benchmarks/train_quality.py --preset cpu [--minutes 180] [--out runs/bench-train]
    python benchmarks/train_quality.py --preset gpu --device cuda [--minutes 10]

Makes synthetic shapes (`detect synth`: training images with seed 0, 100 validation images with
seed 7, 200 held-out test images with seed 999, all 256 px), trains a Mask R-CNN from scratch
with `detect train --time-budget MINUTES` (epochs and LR schedule fitted to the budget after the
first epoch) and prints one row per validation, box/mask AP and AP50 against minutes of training
(validation not counted), then the held-out score of best.pt. The presets:

* cpu: a compact MobileNetV3-FPN Mask R-CNN (FPN/RPN/mask head 128 channels, box MLP 256, fewer
  sampled RoIs and proposals; the recipe study's model) at detect train's defaults otherwise,
  batch 8, on 4000 training images.
* gpu: ResNet-50-FPN Mask R-CNN at detect train's defaults, batch 16, mixed precision, on 8000
  training images.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "images": 4000,
        "minutes": 180,
        "config": {
            "backbone": "mobilenet_v3_fpn",
            "min_size": 256,
            "max_size": 352,
            "batch": 8,
            "workers": 1,
            "sizes": {
                "fpn_channels": 128,
                "representation_size": 256,
                "box_batch_size_per_image": 128,
                "rpn_pre_nms_top_n_train": 600,
                "rpn_post_nms_top_n_train": 300,
                "rpn_pre_nms_top_n_test": 500,
                "rpn_post_nms_top_n_test": 300,
            },
        },
    },
    "gpu": {
        "images": 8000,
        "minutes": 10,
        "config": {"backbone": "resnet50_fpn", "batch": 16, "workers": 8, "amp": True},
    },
}


def _detect(*args: str) -> None:
    print("$ detect " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "detect", *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--minutes", type=float, help="training budget (default: the preset's)")
    parser.add_argument("--images", type=int, help="training images (default: the preset's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--val-every", type=int, default=2, help="epochs between validations")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    minutes = args.minutes or float(preset["minutes"])
    data = args.out / "data"
    splits = {
        "train": (args.images or int(preset["images"]), 0),
        "val": (100, 7),
        "test": (200, 999),
    }
    for split, (count, seed) in splits.items():
        if not (data / split / "annotations.json").exists():
            _detect("synth", "--out", str(data / split), "--images", str(count),
                    "--size", "256", "--seed", str(seed))  # fmt: skip
    run = args.out / f"train-{args.preset}"
    shutil.rmtree(run, ignore_errors=True)  # the data stays for the next run
    config = args.out / f"{args.preset}.yaml"
    config.write_text(yaml.safe_dump(preset["config"], sort_keys=False))
    _detect(
        "train",
        "--config", str(config),
        "--data", str(data / "train" / "annotations.json"),
        "--val", str(data / "val" / "annotations.json"),
        "--test", str(data / "test" / "annotations.json"),
        "--time-budget", f"{minutes:g}",
        "--val-every", str(args.val_every),
        "--device", args.device,
        "--out", str(run),
    )  # fmt: skip
    print(f"\n{args.preset} preset, {minutes:g} min budget, validation split (100 images, seed 7)")
    print(f"{'epoch':>5} {'minutes':>8} {'box AP':>7} {'AP50':>6} {'mask AP':>8} {'AP50':>6}")
    with open(run / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["val_bbox_AP"]:
                print(
                    f"{row['epoch']:>5} {float(row['train_s']) / 60:8.1f} "
                    f"{float(row['val_bbox_AP']):7.3f} {float(row['val_bbox_AP50']):6.3f} "
                    f"{float(row['val_segm_AP'] or 0):8.3f} {float(row['val_segm_AP50'] or 0):6.3f}"
                )
    test = json.loads((run / "test_metrics.json").read_text())
    print("held-out test split (200 images, seed 999), best.pt:")
    for iou_type, stats in test.items():
        print(
            f"  {iou_type}: AP {stats['AP']:.3f}  AP50 {stats['AP50']:.3f}  "
            f"AP75 {stats['AP75']:.3f}"
        )


if __name__ == "__main__":
    main()

"""Recipe study: one factor at a time, same data, same training-time budget, val AP at the end.

    python benchmarks/recipe_study.py [--minutes 15] [--parallel 2] [--only r02_ref_bn ...]

Makes the data once (`detect synth`: 1400 training images with seed 0, 100 validation images
with seed 7, 256 px), writes one `detect train` config per variant into OUT/configs and trains
each with `--time-budget MINUTES` (epochs and cosine schedule fitted to the budget after the
first epoch; validation time not counted), `--parallel` runs at a time with one thread each
(on 2 cores, two 1-thread runs do about 1.5x the work of one 2-thread run). Then it prints one
row per variant: the setting changed from the reference, epochs, minutes trained, and box/mask
AP and AP50 on the validation split after each epoch. Runs already finished are not repeated.

Every variant starts from the reference, `r02_ref_bn`: compact MobileNetV3-FPN Mask R-CNN
(FPN/RPN/mask head 128 channels, box MLP 256, FPN on strides 8-32, BatchNorm in FPN and heads),
256-px inputs, AdamW at detect train's default LR, batch 8, default augmentation; from r06 on,
with SGD (momentum 0.9, LR 0.02, 300 warm-up steps), stage 1's clear winner, in its place.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

SIZES: dict[str, Any] = {
    "fpn_channels": 128,
    "representation_size": 256,
    "returned_layers": [2, 3, 4],
    "norm": "bn",
    "box_batch_size_per_image": 128,
    "rpn_pre_nms_top_n_train": 600,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 500,
    "rpn_post_nms_top_n_test": 300,
}
REFERENCE: dict[str, Any] = {
    "arch": "mask_rcnn",
    "backbone": "mobilenet_v3_fpn",
    "roi": "align",
    "min_size": 256,
    "max_size": 352,
    "sizes": SIZES,
    "batch": 8,
    "workers": 0,
    "val_every": 1,
    "seed": 0,
}
LIGHT_AUGMENT = {
    "color_jitter": 0.2,
    "hsv": 0.1,
    "noise": 0.05,
    "blur": 0.0,
    "jpeg": 0.0,
    "downscale": 0.0,
    "low_light": 0.05,
    "scale": 0.3,
    "scale_range": [0.8, 1.25],
}
SGD = {"optimizer": "sgd", "lr": 0.02, "warmup": 300}
# name: (what changes, keys; "sizes.KEY": None removes a size). From r06 on, the variants start
# from the stage-1 winner, SGD (r05), instead of AdamW.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "r00_demo": (
        "the old demo recipe: FPN on MobileNet's stride-32 maps, no norm, anchors x0.5",
        {"sizes.returned_layers": None, "sizes.norm": None, "sizes.anchor_scale": 0.5},
    ),
    "r01_strides8": ("FPN on strides 8-32, no norm in FPN/heads", {"sizes.norm": None}),
    "r02_ref_bn": ("reference: + BatchNorm in FPN and heads", {}),
    "r03_gn": ("GroupNorm instead of BatchNorm", {"sizes.norm": "gn"}),
    "r04_adamw_lr6e-4": ("AdamW LR 6e-4 (3x), 300 warm-up steps", {"lr": 6e-4, "warmup": 300}),
    "r05_sgd_lr0.02": (
        "SGD momentum 0.9, LR 0.02, 300 warm-up steps",
        {"optimizer": "sgd", "lr": 0.02, "warmup": 300},
    ),
    "r06_sgd_ema": ("SGD + weight EMA, decay 0.999", SGD | {"ema": 0.999}),
    "r07_sgd_size320": ("SGD + 320-px inputs (max 448)", SGD | {"min_size": 320, "max_size": 448}),
    "r08_sgd_aug_light": ("SGD + light augmentation", SGD | {"augment": LIGHT_AUGMENT}),
    "r09_sgd_resnet18": (
        "SGD + ResNet-18-FPN (strides 4-32), same narrow FPN and heads",
        SGD | {"backbone": "resnet18_fpn", "sizes.returned_layers": None},
    ),
    "r10_sgd_batch4": ("SGD + batch 4, LR 0.01", SGD | {"batch": 4, "lr": 0.01}),
    "r11_sgd_sampling": (
        "SGD + 256 sampled RoIs per image, 600 RPN proposals in training",
        SGD | {"sizes.box_batch_size_per_image": 256, "sizes.rpn_post_nms_top_n_train": 600},
    ),
    "r12_sgd_no_norm": ("SGD, no norm in FPN/heads", SGD | {"sizes.norm": None}),
    "r13_sgd_lr0.04": (
        "SGD, LR 0.04; 3 epochs, as r05 (no budget)",
        SGD | {"lr": 0.04, "time_budget": None, "epochs": 3},
    ),
}


def variant_config(changes: dict[str, Any], minutes: float) -> dict[str, Any]:
    """The reference with `changes` applied and the time budget set."""
    config = copy.deepcopy(REFERENCE) | {"time_budget": minutes}  # a variant may set None
    for key, value in changes.items():
        if key.startswith("sizes."):
            if value is None:
                config["sizes"].pop(key.removeprefix("sizes."), None)
            else:
                config["sizes"][key.removeprefix("sizes.")] = value
        else:
            config[key] = value
    return config


def _detect(*args: str, log: Path | None = None, threads: int | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = open(log, "w") if log is not None else None  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "detect", *args], stdout=out, stderr=out, env=env
    )


def _rows(run: Path) -> list[dict[str, str]]:
    if not (run / "metrics.csv").exists():
        return []
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def print_table(out: Path, names: list[str]) -> None:
    print(f"\n{'run':<18} {'setting':<70} {'ep':>3} {'min':>5}  box AP (AP50) / mask AP by epoch")
    for name in names:
        rows = [r for r in _rows(out / "runs" / name) if r["val_bbox_AP"]]
        if not rows:
            continue
        curve = "  ".join(
            f"{float(r['val_bbox_AP']):.3f} ({float(r['val_bbox_AP50']):.3f}) / "
            f"{float(r['val_segm_AP'] or 0):.3f}"
            for r in rows
        )
        minutes = float(rows[-1]["train_s"]) / 60
        print(f"{name:<18} {VARIANTS[name][0]:<70} {rows[-1]['epoch']:>3} {minutes:5.1f}  {curve}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per run")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, 1 thread each")
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="these variants")
    parser.add_argument("--out", type=Path, default=Path("runs/recipe-study"))
    args = parser.parse_args()
    names = args.only or list(VARIANTS)
    data = args.out / "data"
    for split, count, seed in (("train", 1400, 0), ("val", 100, 7)):
        if not (data / split / "annotations.json").exists():
            synth = [
                "synth",
                "--out",
                str(data / split),
                "--images",
                str(count),
                "--seed",
                str(seed),
            ]
            if _detect(*synth, "--size", "256").wait() != 0:
                sys.exit(f"detect synth failed for the {split} split")
    (args.out / "configs").mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    queue = [n for n in names if not (args.out / "runs" / n / "test_done").exists()]
    running: dict[str, subprocess.Popen] = {}
    while queue or running:
        while queue and len(running) < args.parallel:
            name = queue.pop(0)
            config = args.out / "configs" / f"{name}.yaml"
            config.write_text(yaml.safe_dump(variant_config(VARIANTS[name][1], args.minutes)))
            run = args.out / "runs" / name
            running[name] = _detect(
                "train", "--config", str(config),
                "--data", str(data / "train" / "annotations.json"),
                "--val", str(data / "val" / "annotations.json"),
                "--out", str(run),
                log=args.out / "logs" / f"{name}.log", threads=1,
            )  # fmt: skip
            print(f"started {name}", flush=True)
        time.sleep(5)
        for name, process in list(running.items()):
            if process.poll() is not None:
                del running[name]
                status = "done" if process.returncode == 0 else f"failed ({process.returncode})"
                print(f"{name}: {status}; log {args.out / 'logs' / f'{name}.log'}", flush=True)
                if process.returncode == 0:
                    (args.out / "runs" / name / "test_done").write_text("done\n")
    print_table(args.out, names)


if __name__ == "__main__":
    main()

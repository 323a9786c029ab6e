"""Helpers shared by the tests: the real CLI in a subprocess, tiny training configs, run metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

# Narrow FPN and mask head, small box head and proposal counts: a training step of 4 images of
# 96 px takes about 0.6 s on a 2-core CPU (at torchvision's 256 channels the mask head alone
# makes it 3 s).
TINY_SIZES = {
    "fpn_channels": 64,
    "representation_size": 128,
    "box_batch_size_per_image": 128,
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 100,
}


def run_detect(*args: str, env: dict[str, str] | None = None, timeout: int = 600):
    """Run the real CLI in a subprocess; returns CompletedProcess with text output."""
    return subprocess.run(
        [sys.executable, "-m", "detect", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write_config(path: Path, **values) -> Path:
    """A training YAML with tiny-model defaults, overridden by `values`."""
    config = {
        "arch": "mask_rcnn",
        "backbone": "resnet18_fpn",
        "epochs": 2,
        "batch": 4,
        "optimizer": "adamw",  # the tiny models' recipe, whatever detect train's default is
        "lr": 0.001,
        "warmup": 4,
        "augment": False,
        "workers": 0,
        "sizes": TINY_SIZES,
    }
    config.update({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})
    path.write_text(yaml.safe_dump(config))
    return path


def metrics_rows(run: Path) -> list[dict[str, str]]:
    """The rows of a `detect train` run's metrics.csv."""
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))

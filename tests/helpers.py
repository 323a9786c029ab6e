"""Helpers shared by the tests: the real CLI in a subprocess, tiny training configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

# Small heads and proposal counts: training steps of a few hundred ms on a 2-core CPU.
TINY_SIZES = {
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
        "lr": 0.001,
        "warmup": 4,
        "augment": False,
        "workers": 0,
        "sizes": TINY_SIZES,
    }
    config.update({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})
    path.write_text(yaml.safe_dump(config))
    return path

"""Helpers shared by the tests: the real CLI in a subprocess, tiny training configs, run metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

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


# Runs the CLI as `run_detect` does, with one top-level package unimportable, as in an
# installation without the extra that brings it.
_WITHOUT_SCRIPT = """
import sys
from importlib.abc import MetaPathFinder

blocked = sys.argv.pop(1)


class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocked())
from detect.cli import main

sys.exit(main(sys.argv[1:]))
"""


def run_detect_without(package: str, *args: str, timeout: int = 120):
    """`run_detect` with ``package`` (e.g. "torch", "ray") unimportable in the subprocess."""
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_SCRIPT, package, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def synth_site(folder: Path, cameras: int, frames: int, objects: int, seed: int) -> Path:
    """``folder`` after `detect synth --video FOLDER --cameras N`: N clips of ``frames`` frames
    with ``objects`` moving shapes each, their ground truth and site.yaml."""
    made = run_detect(
        *("synth", "--video", str(folder), "--cameras", str(cameras), "--frames", str(frames)),
        *("--objects", str(objects), "--seed", str(seed)),
    )
    assert made.returncode == 0, made.stderr
    return folder


def local_site(clips: Path, **keys) -> dict:
    """The site.yaml of `synth_site`'s ``clips`` run on the committed demo model, its sources
    made absolute, without ground truth and annotated MP4s, with ``keys`` added."""
    site = yaml.safe_load((clips / "site.yaml").read_text())
    site.pop("server", None)
    for camera in site["cameras"]:
        camera["source"] = str(clips / camera["source"])
        camera.pop("truth", None)
        camera.pop("out_video", None)
    return site | {"model": str(REPO / "models" / "demo.onnx"), **keys}


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

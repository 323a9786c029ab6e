"""Shared fixtures: tiny synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TINY_SIZES, run_detect, write_config

from detect.data.split import split_coco
from detect.data.synth import write_dataset


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic 96-px images split 8/4 into train.json and val.json."""
    root = tmp_path_factory.mktemp("shapes_small")
    gt = write_dataset(root, images=12, seed=5, size=96)
    split_coco(gt, [8 / 12, 4 / 12], seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_runs(shapes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`detect train` checkpoints of tiny ResNet-18-FPN models, 3 epochs on `shapes_small`, for
    (arch, roi) in faster/mask x align/pool. Six steps from scratch leave eval-mode BatchNorm
    statistics far off, so scores are tiny: the graphs keep detections down to score 0.01
    (Mask R-CNN) or any positive score (Faster R-CNN, whose scores are ~1e-18) so that there
    are detections to compare."""
    root = tmp_path_factory.mktemp("tiny_runs")
    runs = {}
    for arch in ("mask_rcnn", "faster_rcnn"):
        for roi in ("align", "pool"):
            out = root / f"{arch}_{roi}"
            config = write_config(
                root / f"{arch}_{roi}.yaml",
                arch=arch,
                roi=roi,
                data=shapes_small / "train.json",
                epochs=3,
                lr=0.002,
                out=out,
                sizes={**TINY_SIZES, "box_score_thresh": 0.01 if arch == "mask_rcnn" else 0.0},
            )
            result = run_detect("train", "--config", str(config))
            assert result.returncode == 0, result.stderr[-2000:]
            runs[arch, roi] = out / "best.pt"
    return runs


@pytest.fixture(scope="session")
def mask_model(tiny_runs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Mask R-CNN (RoI Align) exported to ONNX (fp32) with its model card."""
    out = tmp_path_factory.mktemp("mask_model") / "tiny_mask.onnx"
    result = run_detect(
        "export", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out

"""Shared fixtures: tiny synthetic datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from detect.data.split import split_coco
from detect.data.synth import write_dataset


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic 96-px images split 8/4 into train.json and val.json."""
    root = tmp_path_factory.mktemp("shapes_small")
    gt = write_dataset(root, images=12, seed=5, size=96)
    split_coco(gt, [8 / 12, 4 / 12], seed=0)
    return root

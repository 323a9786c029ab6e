"""Shared fixtures: tiny synthetic datasets and tiny trained models.

The trained models are the slowest thing the suite makes, so each is trained once per code
version: under pytest's cache (`.pytest_cache/d/tiny-models/KEY`), where KEY hashes the model,
data, metrics and training code (`TRAINING_CODE`), `requirements.lock` and these fixture files.
A run with other such code (or with the cache plugin off) trains afresh. Every model is checked
when it is made: a fixture whose model does not detect its own training images fails loudly
instead of feeding degenerate detections to the tests that use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import metrics_rows, run_detect, write_config

from detect.data.split import split_coco
from detect.data.synth import write_dataset

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TinyRecipe:
    """How a fixture model is trained: `epochs` of 2 steps (8 images, batch 4) at AdamW `lr`,
    from scratch or fine-tuned from the Mask R-CNN + RoIAlign fixture's best.pt, and the box
    AP50 it must then reach on its own training images."""

    epochs: int
    lr: float
    min_box_ap50: float
    fine_tuned: bool = False


# Mask R-CNN + RoIAlign serves most tests (the runtime, predict, the server, video, eval) and
# doubles as the overfitting check: from scratch, BatchNorm on 4-image batches. The other three
# start from its weights (frozen BatchNorm, 3 trainable backbone stages, as a fine-tune of
# pretrained weights does) and need only a few steps to be as confident.
TINY_RECIPES: dict[tuple[str, str], TinyRecipe] = {
    ("mask_rcnn", "align"): TinyRecipe(epochs=60, lr=1e-3, min_box_ap50=0.9),
    ("mask_rcnn", "pool"): TinyRecipe(epochs=3, lr=1e-4, min_box_ap50=0.8, fine_tuned=True),
    ("faster_rcnn", "align"): TinyRecipe(epochs=3, lr=1e-4, min_box_ap50=0.8, fine_tuned=True),
    ("faster_rcnn", "pool"): TinyRecipe(epochs=3, lr=1e-4, min_box_ap50=0.8, fine_tuned=True),
}
MASK_ALIGN_MIN_SEGM_AP50 = 0.75
MIN_LOSS_DROP = 0.8  # the last epoch's loss is at most 20 % of the first's (mask/align)


# What decides what the fixture models come out as: the model, data and training code and what
# scores a run (an edit elsewhere under detect/ keeps the cached models), the lock, these files.
TRAINING_CODE = ("models", "data", "metrics", "ops", "train.py", "train_config.py")


def _code_key() -> str:
    """A digest of everything that decides what the fixture models come out as."""
    digest = hashlib.sha256()
    files = []
    for name in TRAINING_CODE:
        path = REPO / "detect" / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    files += [REPO / "requirements.lock", Path(__file__), REPO / "tests" / "helpers.py"]
    for path in files:
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_tiny_run(run: Path, arch: str, roi: str) -> None:
    """Fail loudly unless the run learnt its training images (see `TINY_RECIPES`)."""
    min_ap50 = TINY_RECIPES[arch, roi].min_box_ap50
    rows = metrics_rows(run)
    last = rows[-1]
    box_ap50 = float(last["val_bbox_AP50"])
    problems = []
    if box_ap50 < min_ap50:
        problems.append(f"box AP50 {box_ap50:.3f} < {min_ap50}")
    if (arch, roi) == ("mask_rcnn", "align"):
        segm_ap50 = float(last["val_segm_AP50"])
        if segm_ap50 < MASK_ALIGN_MIN_SEGM_AP50:
            problems.append(f"mask AP50 {segm_ap50:.3f} < {MASK_ALIGN_MIN_SEGM_AP50}")
        first_loss, last_loss = float(rows[0]["loss"]), float(last["loss"])
        if last_loss > (1 - MIN_LOSS_DROP) * first_loss:
            problems.append(f"loss fell only from {first_loss:.3f} to {last_loss:.3f}")
    if problems:
        raise AssertionError(
            f"tiny fixture model {arch}/{roi} is degenerate on its own training images "
            f"({'; '.join(problems)}): the fixture recipe in tests/conftest.py no longer trains "
            f"a model worth testing with (run folder: {run})"
        )


@pytest.fixture(scope="session")
def shapes_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic 96-px images split 8/4 into train.json and val.json."""
    root = tmp_path_factory.mktemp("shapes_small")
    gt = write_dataset(root, images=12, seed=5, size=96)
    split_coco(gt, [8 / 12, 4 / 12], seed=0)
    return root


@pytest.fixture(scope="session")
def model_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where trained fixture models are kept: this code version's folder of pytest's cache
    (older versions' folders are removed), or a temporary folder without the cache plugin."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("tiny-models")
    root = cache.mkdir("tiny-models")
    key = _code_key()
    for old in root.iterdir():
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    (root / key).mkdir(exist_ok=True)
    return root / key


@pytest.fixture(scope="session")
def tiny_runs(shapes_small: Path, model_cache: Path) -> dict[tuple[str, str], Path]:
    """`best.pt` of `detect train` runs of tiny ResNet-18-FPN models for (arch, roi) in
    faster/mask x align/pool on the 8 training images of `shapes_small` (also their validation
    set, scored after the last epoch) as `TINY_RECIPES` says, each checked by `check_tiny_run`."""
    data = shapes_small / "train.json"
    base = model_cache / "mask_rcnn_align"
    runs, wanted = {}, {}
    for (arch, roi), recipe in TINY_RECIPES.items():
        out = model_cache / f"{arch}_{roi}"
        runs[arch, roi] = out / "best.pt"
        if not (out / "done").exists():
            shutil.rmtree(out, ignore_errors=True)
            start = {"weights": base / "best.pt"} if recipe.fine_tuned else {}
            wanted[arch, roi] = write_config(
                model_cache / f"{arch}_{roi}.yaml",
                arch=arch, roi=roi, data=data, val=data, epochs=recipe.epochs, lr=recipe.lr,
                val_every=recipe.epochs, out=out, **start,
            )  # fmt: skip
    # mask/align first (the others start from its weights), then the others side by side, one
    # thread each: a few steps each, so most of their time is starting up
    if ("mask_rcnn", "align") in wanted:
        _train({("mask_rcnn", "align"): wanted.pop(("mask_rcnn", "align"))}, model_cache)
    _train(wanted, model_cache, {"OMP_NUM_THREADS": "1"})
    return runs


def _train(
    configs: dict[tuple[str, str], Path], cache: Path, env: dict[str, str] | None = None
) -> None:
    """`detect train` of each of ``configs`` at once, each checked (`check_tiny_run`) and
    marked done."""
    started = {
        key: subprocess.Popen(
            [sys.executable, "-m", "detect", "train", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for key, config in configs.items()
    }
    for (arch, roi), process in started.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
        out = cache / f"{arch}_{roi}"
        check_tiny_run(out, arch, roi)
        (out / "done").touch()


@pytest.fixture(scope="session")
def mask_model(tiny_runs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Mask R-CNN (RoI Align) exported to ONNX (fp32) with its model card."""
    out = tmp_path_factory.mktemp("mask_model") / "tiny_mask.onnx"
    result = run_detect(
        "export", "--checkpoint", str(tiny_runs["mask_rcnn", "align"]), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out

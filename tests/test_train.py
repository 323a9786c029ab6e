"""`detect train` end to end in real processes: outputs, overfitting, resume, DDP, errors."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY_SIZES, metrics_rows, run_detect, write_config

from detect.data.synth import write_dataset
from detect.models import build_model

pytestmark = pytest.mark.slow  # minutes of training, export or installing (make check skips it)


def test_overfits_its_training_images(tiny_runs: dict) -> None:
    """The classic sanity check, on the Mask R-CNN fixture run (8 images, from scratch, BatchNorm
    on 4-image batches, 60 epochs of 2 steps): loss falls >= 80 %, box AP50 on the training
    images >= 0.9 and mask AP50 >= 0.75."""
    rows = metrics_rows(tiny_runs["mask_rcnn", "align"].parent)
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last <= 0.2 * first, (first, last)
    assert float(rows[-1]["val_bbox_AP50"]) >= 0.9, rows[-1]
    assert float(rows[-1]["val_segm_AP50"]) >= 0.75, rows[-1]


def test_run_folder_outputs_and_config_roundtrip(shapes_small: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml", data=shapes_small / "train.json", val=shapes_small / "val.json"
    )
    run = tmp_path / "run"
    result = run_detect("train", "--config", str(config), "--out", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "metrics.csv", "loss.png", "val_ap.png", "last.pt", "best.pt"} <= names
    snapshots = sorted(n for n in names if n.startswith("ckpt_e"))
    assert len(snapshots) == 2 and snapshots[0].startswith("ckpt_e1_ap")
    assert f"outputs in {run}" in result.stdout
    rows = metrics_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(r["val_bbox_AP"] != "" and r["val_segm_AP"] != "" for r in rows)

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["min_size"] == 96 and resolved["lr"] == 0.001 and resolved["amp"] is False
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["model_spec"]["arch"] == "mask_rcnn" and best["model_spec"]["num_classes"] == 6
    assert best["labels"] == ["circle", "rectangle", "triangle", "star", "ring"]
    # The resolved config trains again as it is (new --out).
    again = run_detect(
        "train", "--config", str(run / "config.yaml"), "--epochs", "1", "--out", str(tmp_path / "b")
    )
    assert again.returncode == 0, again.stderr[-2000:]


def test_resume_continues_the_same_curve(shapes_small: Path, tmp_path: Path) -> None:
    """Kill a run after its first epoch; --resume gives the uninterrupted run's curve and the
    same weight average."""
    config = write_config(
        tmp_path / "c.yaml", data=shapes_small / "train.json", epochs=3, augment=True, ema=0.9
    )
    straight = tmp_path / "straight"
    assert run_detect("train", "--config", str(config), "--out", str(straight)).returncode == 0

    crashed = tmp_path / "crashed"
    process = subprocess.Popen(
        [sys.executable, "-m", "detect", "train", "--config", str(config), "--out", str(crashed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not ((crashed / "metrics.csv").exists() and metrics_rows(crashed)):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.kill()
    process.wait()
    done = len(metrics_rows(crashed))
    assert done < 3, "the run finished before it could be interrupted"

    cont = run_detect("train", "--resume", str(crashed / "last.pt"))
    assert cont.returncode == 0, cont.stderr[-2000:]
    assert f"at epoch {done}" in cont.stderr

    a, b = metrics_rows(straight), metrics_rows(crashed)
    assert [r["epoch"] for r in b] == ["1", "2", "3"]
    for ra, rb in zip(a, b, strict=True):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-4)
        assert float(ra["lr"]) == pytest.approx(float(rb["lr"]), rel=1e-9)
    last_a, last_b = (torch.load(r / "last.pt", weights_only=True) for r in (straight, crashed))
    assert last_a["ema_updates"] == last_b["ema_updates"] == 6  # 2 steps x 3 epochs
    for name, value in last_a["model"].items():  # the EMA weights, what best.pt holds
        torch.testing.assert_close(value, last_b["model"][name], rtol=1e-4, atol=1e-5)
    assert any(
        not torch.equal(value, last_a["train_model"][name])
        for name, value in last_a["model"].items()
    ), "the EMA weights are the trained weights"


def test_time_budget_fits_the_epochs_and_stretches_the_schedule(
    shapes_small: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml", data=shapes_small / "train.json", epochs=100, time_budget=0.1
    )
    run = tmp_path / "run"
    result = run_detect("train", "--config", str(config), "--out", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    planned = yaml.safe_load((run / "config.yaml").read_text())["epochs"]
    assert f"time budget 0.1 min: {planned} epochs" in result.stderr
    rows = metrics_rows(run)
    assert 1 <= len(rows) == planned < 100
    assert float(rows[-1]["lr"]) == pytest.approx(0.001 * 0.01)  # cosine ends on the last step
    assert float(rows[-1]["train_s"]) >= float(rows[0]["train_s"]) > 0


def test_progress_in_a_log_is_plain_lines_for_each_epoch_and_validation(
    shapes_small: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "p.yaml", data=shapes_small / "train.json", val=shapes_small / "val.json",
        epochs=1, out=tmp_path / "run",
    )  # fmt: skip
    result = run_detect("train", "--config", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stderr
    took = r"[\d.e-]+ \w+/s, took \d+:\d\d:\d\d"
    epoch = rf"^epoch 1/1: 2/2 batches, {took}, loss [\d.]+, lr [\d.e+-]+$"
    assert re.search(epoch, result.stderr, re.MULTILINE), result.stderr
    assert re.search(rf"^val: 4/4 images, {took}$", result.stderr, re.MULTILINE), result.stderr


def test_bad_inputs_end_in_one_clear_line(
    shapes_small: Path, tiny_runs: dict, tmp_path: Path
) -> None:
    missing = run_detect("train", "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path))
    assert missing.returncode == 1
    assert "nope.json not found" in missing.stderr and "Traceback" not in missing.stderr

    bad_flag = run_detect("train", "--data", "x.json", "--optimizer", "rmsprop")
    assert bad_flag.returncode == 2 and "invalid choice" in bad_flag.stderr

    # a finished Faster R-CNN run (the fixture's; both calls fail before writing anything)
    faster = tiny_runs["faster_rcnn", "align"].parent
    config = write_config(tmp_path / "c.yaml", data=shapes_small / "train.json", epochs=1)
    again = run_detect("train", "--config", str(config), "--out", str(faster))
    assert again.returncode == 1 and "already holds a run" in again.stderr

    other = run_detect(
        "train", "--config", str(config), "--resume", str(faster / "last.pt"), "--epochs", "2",
        "--out", str(tmp_path / "other"),
    )  # fmt: skip
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "cannot resume" in other.stderr and "faster_rcnn" in other.stderr

    bad_augment = tmp_path / "augment.yaml"
    bad_augment.write_text("data: x.json\naugment:\n  hflip: 1.5\n")
    augment = run_detect("train", "--config", str(bad_augment))
    assert augment.returncode == 2 and "augment.hflip must be a probability" in augment.stderr

    unknown_key = tmp_path / "typo.yaml"
    unknown_key.write_text("data: x.json\nepochz: 3\n")
    typo = run_detect("train", "--config", str(unknown_key))
    assert (
        typo.returncode == 2
        and "typo.yaml: epochz: unknown key (did you mean epochs?)" in typo.stderr
    )


def test_corrupt_image_is_named_or_skipped(tmp_path: Path) -> None:
    gt = write_dataset(tmp_path / "data", images=6, seed=1, size=96)
    (tmp_path / "data" / "images" / "000002.jpg").write_bytes(b"garbage")
    config = write_config(tmp_path / "c.yaml", data=gt, epochs=1)
    failed = run_detect("train", "--config", str(config), "--out", str(tmp_path / "a"))
    assert failed.returncode == 1
    assert "000002.jpg is unreadable" in failed.stderr and "--skip-invalid" in failed.stderr
    skipped = run_detect(
        "train", "--config", str(config), "--skip-invalid", "--out", str(tmp_path / "b")
    )
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "skipped 1 item(s)" in skipped.stderr


def test_early_stopping_and_local_weights(shapes_small: Path, tmp_path: Path) -> None:
    """Fine-tune from a local .pth (frozen BatchNorm) at LR 0: val AP never improves."""
    weights = tmp_path / "start.pth"
    torch.save(build_model("mask_rcnn", "resnet18_fpn", 6, **TINY_SIZES).state_dict(), weights)
    config = write_config(
        tmp_path / "c.yaml",
        data=shapes_small / "train.json",
        val=shapes_small / "val.json",
        weights=weights,
        epochs=6,
        lr=0.0,
        patience=2,
    )
    result = run_detect("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "early stop" in result.stdout
    assert len(metrics_rows(tmp_path / "run")) == 3


def test_torchrun_two_processes_gloo(shapes_small: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        data=shapes_small / "train.json",
        val=shapes_small / "val.json",
        batch=2,
    )
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "detect",
            "train",
            "--config",
            str(config),
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = metrics_rows(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]  # rank 0 alone writes
    assert (run / "best.pt").exists() and rows[-1]["val_bbox_AP"] != ""
    # 8 training images, 2 processes x batch 2: 2 steps per epoch per process.
    assert torch.load(run / "last.pt", weights_only=True)["scheduler"]["last_epoch"] == 4


def test_backbone_lr_multiplier_and_no_decay_on_norms() -> None:
    from detect.train import _param_groups
    from detect.train_config import TrainConfig

    model = build_model("faster_rcnn", "resnet18_fpn", 3, **TINY_SIZES)
    config = TrainConfig(data=Path("x.json"), lr=0.01, weight_decay=0.05, backbone_lr=0.1)
    groups = _param_groups(model, config)
    assert groups[0]["lr"] == 0.01 and groups[0]["weight_decay"] == 0.05
    backbone = {id(p) for p in model.backbone.body.parameters()}
    for group in groups:
        in_backbone = id(group["params"][0]) in backbone
        assert group["lr"] == pytest.approx(0.001 if in_backbone else 0.01)
        if group["params"][0].ndim == 1:
            assert group["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == sum(
        1 for p in model.parameters() if p.requires_grad
    )


def test_lr_schedules() -> None:
    from detect.train import _lr_factor

    assert _lr_factor(0, 100, 10, "cosine") == pytest.approx(0.001)
    assert _lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert _lr_factor(100, 100, 10, "cosine") == pytest.approx(0.01)
    assert _lr_factor(50, 90, 0, "step") == 1.0
    assert _lr_factor(60, 90, 0, "step") == pytest.approx(0.1)
    assert _lr_factor(80, 90, 0, "step") == pytest.approx(0.01)


def test_mobilenet_fpn_reads_strides_8_to_32_unless_the_weights_are_torchvision_s() -> None:
    from detect.train import _resolved_sizes
    from detect.train_config import TrainConfig

    def sizes(**values) -> dict:
        config = TrainConfig(data=Path("x.json"), min_size=256, **values)
        return _resolved_sizes(config, data=None)  # type: ignore[arg-type]

    assert sizes(backbone="mobilenet_v3_fpn")["returned_layers"] == [2, 3, 4]
    assert sizes(backbone="mobilenet_v3_fpn", weights="run/best.pt")["returned_layers"] == [2, 3, 4]
    assert "returned_layers" not in sizes(backbone="mobilenet_v3_fpn", weights="COCO_V1")
    assert "returned_layers" not in sizes(backbone="resnet18_fpn")
    explicit = sizes(backbone="mobilenet_v3_fpn", sizes={"returned_layers": [4, 5]})
    assert explicit["returned_layers"] == [4, 5] and explicit["anchor_scale"] == 0.32


def test_accumulate_makes_fewer_optimizer_steps_of_the_summed_gradients(
    shapes_small: Path, tmp_path: Path
) -> None:
    """8 images in batches of 2 are 4 steps an epoch, or 2 with ``accumulate: 2``."""
    steps = {}
    for accumulate in (1, 2):
        run = tmp_path / f"acc{accumulate}"
        config = write_config(
            tmp_path / f"acc{accumulate}.yaml", data=shapes_small / "train.json", epochs=1,
            batch=2, accumulate=accumulate, out=run,
        )  # fmt: skip
        result = run_detect("train", "--config", str(config))
        assert result.returncode == 0, result.stderr[-2000:]
        last = torch.load(run / "last.pt", weights_only=True)
        steps[accumulate] = last["scheduler"]["last_epoch"]  # LambdaLR counts optimizer steps
        assert math.isfinite(float(metrics_rows(run)[-1]["loss"]))
    assert steps == {1: 4, 2: 2}


def test_the_default_sgd_recipe_trains_a_few_steps_at_its_scaled_learning_rate(
    shapes_small: Path, tmp_path: Path
) -> None:
    """No optimizer, lr or weight decay given: SGD at 0.08 x batch x accumulate / 16."""
    run = tmp_path / "sgd"
    config = write_config(tmp_path / "sgd.yaml", data=shapes_small / "train.json", epochs=2)
    recipe = yaml.safe_load(config.read_text())
    for key in ("optimizer", "lr"):
        recipe.pop(key)
    config.write_text(yaml.safe_dump(recipe))
    result = run_detect("train", "--config", str(config), "--out", str(run))
    assert result.returncode == 0, result.stderr[-2000:]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["optimizer"] == "sgd" and resolved["lr"] == pytest.approx(0.08 * 4 / 16)
    last = torch.load(run / "last.pt", weights_only=True)
    groups = last["optimizer"]["param_groups"]
    assert groups[0]["initial_lr"] == pytest.approx(0.08 * 4 / 16)  # batch 4, accumulate 1
    assert all(g["momentum"] == 0.9 for g in groups)
    assert 1e-4 in {g["weight_decay"] for g in groups}  # SGD's default (norms: none)
    rows = metrics_rows(run)
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)


def test_a_test_split_scores_best_pt_at_the_end(shapes_small: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = write_config(
        tmp_path / "t.yaml", data=shapes_small / "train.json", val=shapes_small / "val.json",
        test=shapes_small / "val.json", epochs=1, out=run,
    )  # fmt: skip
    result = run_detect("train", "--config", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run / "test_metrics.json").read_text())
    assert "test (best.pt)" in result.stdout
    assert any("AP" in key for key in json.dumps(scores).split('"'))

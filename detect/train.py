"""`detect train`: train Faster/Mask R-CNN on COCO-format data.

Writes into `config.out` (runs/NAME): `config.yaml` (resolved), `metrics.csv` (every epoch:
losses, lr, val AP, the epoch's wall time and `train_s`, the minutes of training so far with
validation left out), `loss.png` and `val_ap.png` (redrawn after each validation and at the
end), `last.pt` (resumable: weights, optimizer, scheduler, AMP scaler, RNG states, `progress`:
epochs done and planned, best score, training time; with `ema`, the trained weights as
`train_model` beside the average), `best.pt` and `ckpt_e{E}_ap{AP}.pt` (model weights +
everything export needs). `last.pt` (and, without a val split, `best.pt`) is written after the
first and the last epoch, after each validation, and after any other epoch that ends
`SAVE_EVERY_S` or more after the last write: epochs of a second do not each write a file of 100+
MB, and a run killed loses at most that much training. With `ema` > 0 the weights validated and
saved are the exponential moving average (`detect.models.ema`). With `time_budget` the number of
epochs is fitted to the budget after the first one, and the LR schedule stretched over them.
The validation score ("val AP") is COCO mask AP for mask_rcnn and box AP for faster_rcnn.

Under `torchrun --nproc_per_node N` the same command trains with DistributedDataParallel:
each process reads its DistributedSampler shard, losses are averaged over processes, and rank 0
alone validates and writes files.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from detect import __version__
from detect.data.coco import CocoData, load_coco
from detect.data.dataset import DetectionDataset, collate
from detect.errors import ConfigError, DataError, DetectError
from detect.metrics.curves import plot_training_curves
from detect.models.checkpoint import (
    CHECKPOINT_FORMAT,
    check_resume_spec,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from detect.models.ema import ModelEma
from detect.models.infer import evaluate_records
from detect.models.spec import ModelSpec
from detect.models.weights import looks_like_path
from detect.progress import StartProgress, silent
from detect.train_config import TrainConfig

SAVE_EVERY_S = 30.0
"""last.pt is written after an epoch that ends this long after its last write (and after the
first, the last and every validated epoch)."""
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")


@dataclass
class TrainResult:
    """What a run achieved; `summary()` is what the CLI prints."""

    out: Path
    epochs_done: int
    best_ap: float
    best_epoch: int
    val: dict[str, dict[str, float]] = field(default_factory=dict)
    test: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped_early: bool = False

    def summary(self) -> str:
        lines = [
            f"trained {self.epochs_done} epochs" + (" (early stop)" if self.stopped_early else "")
        ]
        if self.best_epoch:
            lines.append(f"best val AP {self.best_ap:.4f} at epoch {self.best_epoch}")
        for split, stats in (("last val", self.val), ("test (best.pt)", self.test)):
            for iou_type, s in stats.items():
                lines.append(
                    f"{split} {iou_type}: AP {s['AP']:.4f}  AP50 {s['AP50']:.4f}  "
                    f"AP75 {s['AP75']:.4f}"
                )
        return "\n".join(lines)


# --- process group and devices ---


@dataclass
class _Dist:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def _setup_process(device: str) -> _Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 and pick this process's device."""
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible; use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Dist(
        rank=dist.get_rank(),
        world=world,
        device=torch.device(f"cuda:{local_rank}" if use_cuda else "cpu"),
    )


def _say(ctx: _Dist, message: str) -> None:
    if ctx.main:
        tqdm.write(message, file=sys.stderr)


# --- data ---


def _load_data(config: TrainConfig, ctx: _Dist) -> tuple[CocoData, CocoData | None]:
    need_masks = config.arch == "mask_rcnn"
    train_data = load_coco(config.data, config.images, need_masks, config.skip_invalid)
    for reason, count in train_data.dropped.items():
        _say(ctx, f"skipped {count} item(s) of {config.data}: {reason}")
    val_data = None
    if config.val is not None:
        val_data = load_coco(config.val, config.images, need_masks, config.skip_invalid)
        for reason, count in val_data.dropped.items():
            _say(ctx, f"skipped {count} item(s) of {config.val}: {reason}")
        _check_same_classes(train_data, val_data)
    return train_data, val_data


def _check_same_classes(train: CocoData, other: CocoData) -> None:
    if train.label_names != other.label_names or train.category_ids != other.category_ids:
        raise DataError(
            f"{other.json_path} has categories {other.label_names}, but the training set has "
            f"{train.label_names}; splits must share one category list (see `detect split`)"
        )


def _resolved_sizes(config: TrainConfig, data: CocoData) -> dict[str, Any]:
    """build_model sizes: min/max image size (from the data when not given), anchor scale,
    and the recipe's layout defaults, overridden by `config.sizes`.

    MobileNetV3's FPN reads strides 8-32 (`returned_layers` [2, 3, 4]) unless the detector
    weights are torchvision's own (`--weights COCO_V1`), whose layout reads its two stride-32
    maps: made for 800-px inputs, they miss most objects under 30 px (recipe study,
    models/README.md).
    """
    min_size = config.min_size
    if min_size is None:
        short = np.median([min(r.width, r.height) for r in data.records])
        min_size = int(min(1333, max(64, round(short / 32) * 32)))
    max_size = config.max_size or math.ceil(min_size * 1333 / 800)
    sizes: dict[str, Any] = {"min_size": min_size, "max_size": max_size}
    if config.zoo_weights() is not None:  # torchvision's own model: its anchors and layout,
        # BatchNorm frozen and 3 backbone stages trained, as torchvision fine-tunes
        return {**sizes, "trainable_layers": 3, **config.sizes}
    # torchvision's anchors (32..512 px) are tuned for 800-px inputs: scale them with the input.
    sizes["anchor_scale"] = round(min(1.0, min_size / 800), 4)
    torchvision_detector = config.weights is not None and not looks_like_path(config.weights)
    if config.backbone == "mobilenet_v3_fpn" and not torchvision_detector:
        sizes["returned_layers"] = [2, 3, 4]
    sizes.update(config.sizes)
    return sizes


def _seed_worker(worker_id: int) -> None:
    """Seed numpy, random and the augmentation pipeline from the loader's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and info.dataset.transform is not None:
        info.dataset.transform.set_random_seed(seed)


def _make_loader(
    dataset: DetectionDataset, config: TrainConfig, ctx: _Dist
) -> tuple[DataLoader, DistributedSampler]:
    # One sampler type for 1..N processes: the order depends on (seed, epoch) only, so a
    # resumed run sees the same batches as an uninterrupted one.
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world, rank=ctx.rank, shuffle=config.shuffle, seed=config.seed
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch,
        sampler=sampler,
        num_workers=config.workers,
        collate_fn=collate,
        worker_init_fn=_seed_worker,
        pin_memory=ctx.device.type == "cuda",
        drop_last=False,
    )
    return loader, sampler


# --- optimisation ---


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Backbone at lr * backbone_lr; no weight decay on norms and biases.

    Group 0 is always the heads' decayed weights, at the base LR (the LR that gets logged).
    """
    lr, wd = config.resolved_lr(), config.resolved_weight_decay()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (name.startswith("backbone.body."), param.ndim <= 1)
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "lr": lr * (config.backbone_lr if in_backbone else 1.0),
            "weight_decay": 0.0 if no_decay else wd,
        }
        for (in_backbone, no_decay), params in sorted(groups.items())
    ]


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.resolved_lr(), momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.resolved_lr(), betas=(config.momentum, 0.999))


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base LR at optimizer step `step` of `total`."""
    if step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
    if schedule == "step":  # x0.1 at 2/3 and 8/9 of training, as Detectron2's 1x/3x schedules
        return 0.1 ** sum(step >= total * f for f in (2 / 3, 8 / 9))
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- validation ---


def _primary_ap(stats: dict[str, dict[str, float]], arch: str) -> float:
    return stats["segm"]["AP"] if arch == "mask_rcnn" and "segm" in stats else stats["bbox"]["AP"]


# --- the loop ---


def _prepare_out(config: TrainConfig) -> None:
    config.check_inputs()  # `detect train` checked them before torch loaded; others call here
    config.out.mkdir(parents=True, exist_ok=True)


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    columns = [
        "epoch",
        "loss",
        *LOSS_KEYS,
        "lr",
        "val_bbox_AP",
        "val_bbox_AP50",
        "val_segm_AP",
        "val_segm_AP50",
        "time_s",
        "train_s",
    ]
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in columns})


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """On resume, forget rows of epochs after the checkpoint so the curve continues cleanly."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["epoch"]) <= epochs_done)


def train(config: TrainConfig, progress: StartProgress = silent) -> TrainResult:
    """Run training as configured; see the module docstring for the outputs. Each epoch's
    batches and each validation's images go to ``progress`` (rank 0's only)."""
    ctx = _setup_process(config.device)
    try:
        return Trainer(config, ctx, progress).run()
    finally:
        if ctx.active:
            dist.destroy_process_group()


@dataclass
class _Progress:
    """What `last.pt` carries over besides weights and optimizer state."""

    epoch: int = 0  # epochs done
    epochs: int = 0  # epochs planned (config.epochs, or fitted to config.time_budget)
    best_ap: float = -1.0
    best_epoch: int = 0
    bad_validations: int = 0
    elapsed_s: float = 0.0  # wall time of the epochs done, validation not included


class Trainer:
    """Setup in `__init__`; `run` is the loop, and each of its steps is one method.

    One epoch is `_train_epoch` (optimizer steps, EMA updates), then `_validate` (val AP, early
    stopping bookkeeping), `_fit_time_budget` (after the first epoch, when a budget is set),
    `_save` (snapshots, best.pt, last.pt) and `_log` (metrics.csv, curves, the epoch line).
    """

    def __init__(self, config: TrainConfig, ctx: _Dist, progress: StartProgress = silent) -> None:
        self.config, self.ctx = config, ctx
        self.show = progress if ctx.main else silent
        torch.manual_seed(config.seed + ctx.rank)
        np.random.seed(config.seed + ctx.rank)
        random.seed(config.seed + ctx.rank)
        if ctx.main:
            _prepare_out(config)
        resume = load_checkpoint(config.resume) if config.resume is not None else None

        self.train_data, self.val_data = _load_data(config, ctx)
        self.sizes = _resolved_sizes(config, self.train_data)
        zoo = config.zoo_weights()
        if zoo is not None:
            from detect.models.zoo import parse_zoo_weights

            entry, tag = parse_zoo_weights(config.weights)
            spec = ModelSpec(
                arch=config.arch,
                backbone=entry.backbone,
                roi="align",
                num_classes=self.train_data.num_classes,
                sizes=self.sizes,
                zoo=zoo,
            )
            weights, backbone_weights = tag, None
        else:
            spec = ModelSpec(
                arch=config.arch,
                backbone=config.backbone,
                roi=config.roi,
                num_classes=self.train_data.num_classes,
                sizes=self.sizes,
            )
            weights, backbone_weights = config.weights, config.backbone_weights
        if resume is not None:  # the checkpoint's weights go in next
            check_resume_spec(resume, spec, config.resume)
            weights = backbone_weights = None
        model = spec.build(weights, backbone_weights)
        self.model = model.to(ctx.device)

        self.transform = None
        if config.augment is not False:  # albumentations is slow to import: only if it augments
            from detect.data.augment import AugmentConfig, build_transform

            augment = AugmentConfig.from_value(config.augment)
            self.transform = build_transform(augment) if augment is not None else None
        dataset = DetectionDataset(
            self.train_data.records, config.arch == "mask_rcnn", self.transform
        )
        self.loader, self.sampler = _make_loader(dataset, config, ctx)
        self.optimizer = _make_optimizer(self.model, config)
        self.steps_per_epoch = math.ceil(len(self.loader) / config.accumulate)
        self.progress = _Progress(epochs=config.epochs)
        self._saved_at = time.monotonic()  # when last.pt was last written
        self._plan_schedule(config.epochs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: _lr_factor(s, self.total_steps, self.warmup_steps, config.schedule),
        )
        self.amp = config.amp if config.amp is not None else ctx.device.type == "cuda"
        self.amp_dtype = torch.float16 if ctx.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            ctx.device.type, enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.ema = ModelEma(self.model, config.ema) if config.ema > 0 else None
        if resume is not None:
            self._restore(resume)

        self.resolved = config.to_yaml_dict() | {
            "min_size": self.sizes["min_size"],
            "max_size": self.sizes["max_size"],
            "sizes": {k: v for k, v in self.sizes.items() if k not in ("min_size", "max_size")},
            "lr": config.resolved_lr(),
            "weight_decay": config.resolved_weight_decay(),
            "amp": self.amp,
        }
        if ctx.main:
            self._write_config()
            if resume is not None:
                _truncate_metrics(config.out / "metrics.csv", self.progress.epoch)
        self.net: nn.Module = self.model
        if ctx.active:
            self.net = DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        self.meta = {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "model_spec": spec.as_dict(),
            "labels": self.train_data.label_names,
            "category_ids": self.train_data.category_ids,
        }

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, saved as best.pt and exported (EMA when on)."""
        return self.ema.module if self.ema is not None else self.model

    def _plan_schedule(self, epochs: int) -> None:
        self.total_steps = epochs * self.steps_per_epoch
        self.warmup_steps = min(self.config.warmup, max(1, self.total_steps // 3))

    def _restore(self, resume: dict[str, Any]) -> None:
        self.model.load_state_dict(resume.get("train_model", resume["model"]))
        self.optimizer.load_state_dict(resume["optimizer"])
        self.scaler.load_state_dict(resume["scaler"])
        if self.ema is not None and "ema_updates" in resume:
            self.ema.load_state_dict({"model": resume["model"], "updates": resume["ema_updates"]})
        set_rng_state(resume["rng"])
        self.progress = _Progress(
            **resume.get("progress", {})
            or {  # a last.pt written before `progress` existed
                "epoch": resume["epoch"],
                "epochs": self.config.epochs,
                "best_ap": resume["best_ap"],
                "best_epoch": resume["best_epoch"],
                "bad_validations": resume["bad_validations"],
            }
        )
        self._plan_schedule(self.progress.epochs)
        self.scheduler.load_state_dict(resume["scheduler"])
        _say(self.ctx, f"resumed {self.config.resume} at epoch {self.progress.epoch}")

    def _write_config(self) -> None:
        resolved = self.resolved | {"epochs": self.progress.epochs}
        (self.config.out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))

    # --- the loop ---

    def run(self) -> TrainResult:
        config, ctx, progress = self.config, self.ctx, self.progress
        result = TrainResult(out=config.out, epochs_done=progress.epoch, best_ap=-1, best_epoch=0)
        while progress.epoch < progress.epochs:
            epoch = progress.epoch
            started = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch + 1, **self._train_epoch(epoch)}
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            progress.epoch = epoch + 1
            progress.elapsed_s += time.perf_counter() - started
            if epoch == 0 and config.time_budget is not None:
                self._fit_time_budget(progress.elapsed_s)
            stats = self._validate(epoch, row) if self._validation_due(epoch) else None
            if stats is not None:
                result.val = stats
            row["time_s"] = round(time.perf_counter() - started, 2)
            row["train_s"] = round(progress.elapsed_s, 1)
            stop = config.patience > 0 and progress.bad_validations >= config.patience
            if ctx.main:
                self._save(epoch + 1, stats, final=stop or progress.epoch >= progress.epochs)
                self._log(row, plot=stats is not None or stop)
            result.epochs_done = progress.epoch
            if self._agree_to_stop(stop):
                _say(ctx, f"early stop: no better val AP in {config.patience} validations")
                result.stopped_early = True
                break
        if ctx.main:
            plot_training_curves(config.out / "metrics.csv", config.out)
        result.best_ap, result.best_epoch = progress.best_ap, progress.best_epoch
        if config.test is not None and ctx.main:
            result.test = self._test()
        return result

    def _validation_due(self, epoch: int) -> bool:
        last = epoch + 1 == self.progress.epochs
        return self.val_data is not None and ((epoch + 1) % self.config.val_every == 0 or last)

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.sampler.set_epoch(epoch)
        if self.transform is not None and self.config.workers == 0:
            self.transform.set_random_seed(self.config.seed * 100_003 + epoch)
        return _train_one_epoch(self, epoch)

    def _validate(self, epoch: int, row: dict[str, Any]) -> dict[str, dict[str, float]] | None:
        """Val AP of the eval model (rank 0) and the early-stopping bookkeeping."""
        if not self.ctx.main:
            return None
        stats = evaluate_records(self.eval_model, self.val_data, "val", self.show)
        for iou_type, s in stats.items():
            row[f"val_{iou_type}_AP"], row[f"val_{iou_type}_AP50"] = s["AP"], s["AP50"]
        ap = _primary_ap(stats, self.config.arch)
        if ap > self.progress.best_ap:
            self.progress.best_ap, self.progress.best_epoch = ap, epoch + 1
            self.progress.bad_validations = 0
        else:
            self.progress.bad_validations += 1
        return stats

    def _fit_time_budget(self, first_epoch_s: float) -> None:
        """Plan as many epochs as fit `time_budget` minutes of training (validation not
        counted) at the first epoch's pace, and stretch the LR schedule over them."""
        epochs = max(1, round(self.config.time_budget * 60 / max(first_epoch_s, 1e-6)))
        if self.ctx.active:  # every process must plan the same number of epochs
            planned = torch.tensor([epochs], device=self.ctx.device)
            dist.broadcast(planned, src=0)
            epochs = int(planned.item())
        self.progress.epochs = epochs
        self._plan_schedule(epochs)
        if self.ctx.main:
            self._write_config()
        _say(self.ctx, f"time budget {self.config.time_budget:g} min: {epochs} epochs")

    def _save(self, epoch: int, stats: dict[str, dict[str, float]] | None, final: bool) -> None:
        """After epoch ``epoch`` (1-based; ``final``: the run's last): ckpt_e{E}_ap{AP}.pt after a
        validation, best.pt when it improved (or without a val split, as last.pt is), last.pt
        when due (see the module docstring)."""
        progress, out = self.progress, self.config.out
        due = final or epoch == 1 or time.monotonic() - self._saved_at >= SAVE_EVERY_S
        if stats is None and not due:
            return
        self._saved_at = time.monotonic()
        state = {
            **self.meta,
            "config": self.resolved | {"epochs": progress.epochs},
            "model": self.eval_model.state_dict(),
            "epoch": epoch,
        }
        if stats is not None:
            state["metrics"] = stats
            ap = _primary_ap(stats, self.config.arch)
            save_checkpoint(state, out / f"ckpt_e{epoch}_ap{ap:.3f}.pt")
            if progress.best_epoch == epoch:
                save_checkpoint(state, out / "best.pt")
        elif self.val_data is None:
            save_checkpoint(state, out / "best.pt")  # no validation: latest is best
        last = {
            **state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "progress": dataclasses.asdict(progress),
        }
        if self.ema is not None:
            last["train_model"] = self.model.state_dict()
            last["ema_updates"] = self.ema.updates
        save_checkpoint(last, out / "last.pt")

    def _log(self, row: dict[str, Any], plot: bool) -> None:
        _append_metrics(self.config.out / "metrics.csv", row)
        if plot:  # ~0.5 s: not after every short epoch
            plot_training_curves(self.config.out / "metrics.csv", self.config.out)
        _say(self.ctx, _epoch_line(row, self.progress.epochs))

    def _agree_to_stop(self, stop: bool) -> bool:
        """Rank 0 decides (only it validates); every process follows."""
        if self.ctx.active:
            flag = torch.tensor([int(stop)], device=self.ctx.device)
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        return stop

    def _test(self) -> dict[str, dict[str, float]]:
        """Score best.pt on the held-out split; also written to test_metrics.json."""
        config = self.config
        test_data = load_coco(
            config.test, config.images, config.arch == "mask_rcnn", config.skip_invalid
        )
        _check_same_classes(self.train_data, test_data)
        model = self.eval_model
        model.load_state_dict(load_checkpoint(config.out / "best.pt")["model"])
        stats = evaluate_records(model, test_data, "test", self.show)
        (config.out / "test_metrics.json").write_text(json.dumps(stats, indent=2))
        return stats


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    line = f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  lr {row['lr']:.2e}"
    for key in ("val_bbox_AP", "val_segm_AP"):
        if key in row:
            line += f"  {key} {row[key]:.4f}"
    return line


def _train_one_epoch(trainer: Trainer, epoch: int) -> dict[str, float]:
    """One pass over the loader; returns mean losses (averaged over processes)."""
    net, loader, optimizer = trainer.net, trainer.loader, trainer.optimizer
    config, ctx, scaler = trainer.config, trainer.ctx, trainer.scaler
    net.train()
    sums = torch.zeros(len(LOSS_KEYS) + 2, dtype=torch.float64)  # losses, total, batches
    bar = trainer.show(f"epoch {epoch + 1}/{trainer.progress.epochs}", len(loader), "batches")
    optimizer.zero_grad(set_to_none=True)
    for i, (images, targets, bad) in enumerate(bar.each(loader)):
        if bad and (not config.skip_invalid or ctx.active):
            raise DataError(
                f"image {bad[0].path} {bad[0].reason}; fix or remove it "
                "(or pass --skip-invalid, single process only)"
            )
        if not images:
            continue
        images = [im.to(ctx.device, non_blocking=True) for im in images]
        targets = [{k: v.to(ctx.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(ctx.device.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
            loss_dict = net(images, targets)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise DetectError(
                f"loss became {loss.item()} at epoch {epoch + 1}, batch {i + 1}; "
                "lower --lr, raise --warmup or keep --clip-grad on"
            )
        scaler.scale(loss / config.accumulate).backward()
        if (i + 1) % config.accumulate == 0 or i + 1 == len(loader):
            if config.clip_grad > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            trainer.scheduler.step()
            if trainer.ema is not None:
                trainer.ema.update(trainer.model)
        for k, key in enumerate(LOSS_KEYS):
            if key in loss_dict:
                sums[k] += loss_dict[key].item()
        sums[-2] += loss.item()
        sums[-1] += 1
        bar.note(f"loss {loss.item():.3f}, lr {optimizer.param_groups[0]['lr']:.2e}")
    bar.close()
    if ctx.active:
        sums = sums.to(ctx.device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    count = max(1.0, sums[-1].item())
    means = {key: sums[k].item() / count for k, key in enumerate(LOSS_KEYS) if sums[k] != 0}
    means["loss"] = sums[-2].item() / count
    return means

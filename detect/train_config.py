"""`TrainConfig`: every knob of `detect train`, filled from a YAML file and/or CLI flags.

Torch-free on purpose: the CLI builds its parser from this module without importing torch.
Precedence: dataclass defaults < `--config FILE.yaml` < flags given on the command line. The
resolved config is written to `runs/NAME/config.yaml`, which `--config` accepts back.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detect.config import load_yaml
from detect.errors import ConfigError

ARCHS = ("faster_rcnn", "mask_rcnn")
ZOO_PREFIXES = ("fasterrcnn_", "maskrcnn_")  # torchvision's builder names (detect.models.zoo)
BACKBONES = ("resnet50_fpn", "resnet18_fpn", "mobilenet_v3_fpn")
ROIS = ("align", "pool")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Training recipe. Paths are as given; `None` means "derive" where noted."""

    data: Path | None = None  # training COCO JSON (required)
    val: Path | None = None  # validation COCO JSON: val AP, best.pt, early stopping
    test: Path | None = None  # held-out COCO JSON: best.pt is scored on it after training
    images: Path | None = None  # image root; default: each JSON's own folder
    arch: str = "mask_rcnn"
    backbone: str = "resnet50_fpn"
    roi: str = "align"
    weights: str | None = None  # detector weights: torchvision enum name ("COCO_V1") or a .pth
    backbone_weights: str | None = None  # ImageNet enum name ("IMAGENET1K_V1") or a .pth
    backbone_lr: float = 1.0  # backbone LR multiplier (< 1 when fine-tuning pretrained weights)
    min_size: int | None = None  # resize short side; default: median short side of train images
    max_size: int | None = None  # cap on the long side; default: min_size * 1333 / 800
    sizes: dict[str, Any] = field(default_factory=dict)  # extra build_model(**sizes) knobs
    epochs: int = 24
    time_budget: float | None = None  # minutes: epochs fitted to it after the first epoch
    batch: int = 8
    accumulate: int = 1  # gradient accumulation steps: effective batch = batch * accumulate
    optimizer: str = "sgd"  # recipe study (models/README.md): SGD beat AdamW from scratch
    lr: float | None = None  # default: sgd 0.08, adamw 1.2e-3 (scaled by effective batch / 16)
    momentum: float = 0.9
    weight_decay: float | None = None  # default: sgd 1e-4, adamw 0.05
    schedule: str = "cosine"
    warmup: int = 300  # linear warm-up iterations (optimizer steps)
    clip_grad: float = 10.0  # max gradient norm; 0 disables
    amp: bool | None = None  # mixed precision; default: on with CUDA
    ema: float = 0.0  # decay of the weight EMA that is validated and saved (0: off)
    augment: dict[str, Any] | bool = True  # True: default augmentation; False: none; dict: knobs
    val_every: int = 1  # epochs between validations (each writes ckpt_e{E}_ap{AP}.pt)
    patience: int = 0  # stop after this many validations without a better val AP; 0: never
    seed: int = 0
    shuffle: bool = True
    workers: int = 2
    device: str = "auto"
    skip_invalid: bool = False  # drop invalid boxes / unreadable images (with a count)
    resume: Path | None = None
    out: Path = Path("runs/train")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from plain values (YAML or flags), rejecting unknown keys and bad choices."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        config = cls(**values)
        config._coerce_paths()
        config.validate(source)
        return config

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """Defaults, then `--config` YAML, then the flags actually given."""
        values: dict[str, Any] = {}
        config_path: Path | None = getattr(args, "config", None)
        resume: Path | None = getattr(args, "resume", None)
        if config_path is None and resume is not None and "data" not in vars(args):
            config_path = Path(resume).parent / "config.yaml"  # the run's own resolved config
        if config_path is not None:
            values.update(load_yaml(config_path))
        for name in (f.name for f in dataclasses.fields(cls)):
            if name in vars(args):
                values[name] = getattr(args, name)
        return cls.from_dict(values, source=str(config_path) if config_path else "flags")

    def _coerce_paths(self) -> None:
        for name in ("data", "val", "test", "images", "resume", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))

    def zoo_weights(self) -> str | None:
        """The torchvision COCO model named by ``weights`` ("NAME" or "NAME:TAG", see
        `detect models`), or None. Torch-free: the name is checked when the model is built."""
        name = (self.weights or "").partition(":")[0]
        return name if name.startswith(ZOO_PREFIXES) and "/" not in name else None

    def validate(self, source: str = "config") -> None:
        """Raise ConfigError naming the first bad field and its allowed values."""
        zoo = self.zoo_weights()
        if zoo is not None:  # the zoo model decides the detector (and its backbone)
            self.arch = "mask_rcnn" if zoo.startswith("maskrcnn_") else "faster_rcnn"
        choices = {
            "arch": ARCHS,
            "backbone": BACKBONES,
            "roi": ROIS,
            "optimizer": OPTIMIZERS,
            "schedule": SCHEDULES,
            "device": DEVICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{source}: {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )
        if self.data is None:
            raise ConfigError(f"{source}: no training data; pass --data TRAIN.json")
        positive = ("epochs", "batch", "accumulate", "val_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{source}: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "min_size", "max_size"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{source}: {name} must be >= 0, got {value}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError(f"{source}: time_budget must be > 0 minutes, got {self.time_budget}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"{source}: ema must be a decay in [0, 1) (0: off), got {self.ema}")
        if self.workers < 0 or self.warmup < 0 or self.patience < 0:
            raise ConfigError(f"{source}: workers, warmup and patience must be >= 0")
        if not isinstance(self.sizes, dict):
            raise ConfigError(f"{source}: sizes must be a mapping of build_model keyword arguments")
        from detect.data.augment import AugmentConfig  # albumentations: slow to import

        AugmentConfig.from_value(self.augment)  # fail before any data is read

    def resolved_lr(self) -> float:
        """Base LR, linearly scaled with the effective batch (reference batch 16)."""
        if self.lr is not None:
            return self.lr
        base = 0.08 if self.optimizer == "sgd" else 1.2e-3
        return base * self.batch * self.accumulate / 16

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 1e-4 if self.optimizer == "sgd" else 0.05

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain types only, so `config.yaml` round-trips through `--config`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _bool_flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(
        f"--{name.replace('_', '-')}",
        dest=name,
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help=help_text,
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for `detect train`. Unset flags stay absent so YAML values are not overridden."""
    defaults = TrainConfig()
    suppress = argparse.SUPPRESS

    def flag(name: str, help_text: str, **kwargs: Any) -> None:
        default = getattr(defaults, name)
        if default is not None and "(default" not in help_text:
            help_text = f"{help_text} (default: {default})"
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, default=suppress, help=help_text, **kwargs
        )

    parser.add_argument("--config", type=Path, help="YAML file with any of these keys")
    flag("data", "training COCO JSON", type=Path)
    flag("val", "validation COCO JSON (val AP, best.pt, early stopping)", type=Path)
    flag("test", "held-out COCO JSON scored with best.pt at the end", type=Path)
    flag("images", "image root folder (default: each JSON's folder)", type=Path)
    flag("arch", "detector", choices=ARCHS)
    flag("backbone", "backbone", choices=BACKBONES)
    flag("roi", "ROI feature extraction: align (RoIAlign) or pool (RoIPool)", choices=ROIS)
    flag(
        "weights",
        "detector weights: a zoo model NAME[:COCO_V1] (`detect models`; decides --arch and the "
        "backbone), a torchvision name for --arch/--backbone (COCO_V1, DEFAULT) or a .pth path",
    )
    flag("backbone_weights", "backbone weights: torchvision name (IMAGENET1K_V1) or .pth")
    flag("backbone_lr", "backbone learning-rate multiplier", type=float)
    flag("min_size", "training/inference short side in pixels", type=int)
    flag("max_size", "cap on the long side in pixels", type=int)
    flag("epochs", "epochs", type=int)
    flag(
        "time_budget",
        "minutes of training: after the first epoch, the epochs (and LR schedule) that fit",
        type=float,
    )
    flag("batch", "images per step (per process under torchrun)", type=int)
    flag("accumulate", "gradient accumulation steps", type=int)
    flag("optimizer", "solver", choices=OPTIMIZERS)
    flag(
        "lr",
        "base learning rate (default: sgd 0.08, adamw 1.2e-3, x batch*accumulate/16)",
        type=float,
    )
    flag("momentum", "SGD momentum / AdamW beta1", type=float)
    flag("weight_decay", "weight decay (default: adamw 0.05, sgd 1e-4)", type=float)
    flag("schedule", "LR schedule after warm-up", choices=SCHEDULES)
    flag("warmup", "linear warm-up iterations", type=int)
    flag("clip_grad", "max gradient norm (0: off)", type=float)
    flag(
        "ema",
        "decay of the weight EMA that is validated and saved, e.g. 0.999 (0: off)",
        type=float,
    )
    _bool_flag(parser, "amp", "mixed precision (default: on with CUDA)")
    _bool_flag(parser, "augment", "data augmentation (knobs in the YAML `augment:` mapping)")
    flag("val_every", "validate (and snapshot) every N epochs", type=int)
    flag("patience", "early stop after N validations without improvement (0: off)", type=int)
    flag("seed", "random seed", type=int)
    _bool_flag(parser, "shuffle", "shuffle training images each epoch")
    flag("workers", "data-loading worker processes", type=int)
    flag("device", "where to train", choices=DEVICES)
    _bool_flag(parser, "skip_invalid", "drop invalid boxes and unreadable images with a count")
    flag("resume", "continue from a checkpoint (last.pt)", type=Path)
    flag("out", "run folder", type=Path)


# --------------------------------------------------------------------------- `detect train`

add_arguments = add_train_arguments


def run(args: argparse.Namespace) -> int:
    """`detect train` from parsed flags (the config is checked before torch loads)."""
    config = TrainConfig.from_args(args)
    from detect.train import train

    result = train(config)
    print(result.summary())
    print(f"outputs in {config.out}")
    return 0

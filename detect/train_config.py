"""`TrainConfig`: every knob of `detect train`, each declared once (`detect.settings`); from them
come `detect train`'s flags and the keys of its ``--config FILE.yaml``.

Torch-free on purpose: the CLI builds its parser from this module without importing torch.
Precedence (`detect.commands.train`): declared defaults < ``--config FILE.yaml`` < flags given on
the command line. A YAML file's relative paths start at the working folder, as a flag's do. The
resolved config is written to ``runs/NAME/config.yaml`` (`TrainConfig.to_yaml_dict`), which
``--config`` accepts back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.config import DEVICES
from detect.errors import ConfigError, DataError
from detect.models.spec import check_checkpoint_file
from detect.settings import FLAGS, Spelling, at_least, more_than, output_folder, setting

# What `detect.models.build.build_model` builds (it imports them from here: torch-free).
ARCHS = ("faster_rcnn", "mask_rcnn")
BACKBONES = ("resnet50_fpn", "resnet18_fpn", "mobilenet_v3_fpn")
ROIS = ("align", "pool")
ZOO_PREFIXES = ("fasterrcnn_", "maskrcnn_")  # torchvision's builder names (detect.models.zoo)
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")


def _augment(value: Any, root: Path, what: str) -> Any:
    """True (the default augmentation), false/null (none) or a mapping of `AugmentConfig`
    knobs; checked here so that a bad knob fails before any data is read."""
    if value is None or isinstance(value, bool):
        return value
    from detect.data.augment import AugmentConfig  # albumentations: slow to import

    AugmentConfig.from_value(value)  # its ConfigError names the knob: augment.hflip ...
    return value


def _keywords(value: Any) -> str | None:
    return None if isinstance(value, dict) else "use a mapping of build_model keyword arguments"


@dataclass
class TrainConfig:
    """Training recipe. Paths are as given; None means "derive" where the help says so.

    ``weights`` naming a torchvision zoo model (``NAME[:TAG]``, see `zoo_weights`) decides
    ``arch``. ``sizes`` (a file key only) holds extra `build_model` keywords; ``augment`` is
    True, False or a mapping of `detect.data.augment.AugmentConfig` knobs (the flag: true or
    false only)."""

    data: Path | None = setting(None, "training COCO JSON")
    val: Path | None = setting(None, "validation COCO JSON (val AP, best.pt, early stopping)")
    test: Path | None = setting(None, "held-out COCO JSON scored with best.pt at the end")
    images: Path | None = setting(None, "image root folder (default: each JSON's folder)")
    arch: str = setting("mask_rcnn", "detector", choices=ARCHS)
    backbone: str = setting("resnet50_fpn", "backbone", choices=BACKBONES)
    roi: str = setting(
        "align", "ROI feature extraction: align (RoIAlign) or pool (RoIPool)", choices=ROIS
    )
    weights: str | None = setting(
        None,
        "detector weights: a zoo model NAME[:COCO_V1] (`detect models`; decides --arch and the "
        "backbone), a torchvision name for --arch/--backbone (COCO_V1, DEFAULT) or a .pth path",
    )
    backbone_weights: str | None = setting(
        None, "backbone weights: torchvision name (IMAGENET1K_V1) or .pth"
    )
    backbone_lr: float = setting(1.0, "backbone learning-rate multiplier")
    min_size: int | None = setting(
        None, "training/inference short side in pixels", check=at_least(0)
    )  # None: the median short side of the training images
    max_size: int | None = setting(
        None, "cap on the long side in pixels", check=at_least(0)
    )  # None: min_size * 1333 / 800
    sizes: dict[str, Any] = setting(
        factory=dict, help="extra build_model keyword arguments", flag="", check=_keywords
    )
    epochs: int = setting(24, "epochs", check=at_least(1))
    time_budget: float | None = setting(
        None,
        "minutes of training: after the first epoch, the epochs (and LR schedule) that fit",
        check=more_than(0),
    )
    batch: int = setting(8, "images per step (per process under torchrun)", check=at_least(1))
    accumulate: int = setting(1, "gradient accumulation steps", check=at_least(1))
    optimizer: str = setting("sgd", "solver", choices=OPTIMIZERS)
    lr: float | None = setting(
        None,
        "base learning rate (default: sgd 0.08, adamw 1.2e-3, x batch*accumulate/16)",
        check=at_least(0),
    )
    momentum: float = setting(0.9, "SGD momentum / AdamW beta1")
    weight_decay: float | None = setting(
        None, "weight decay (default: adamw 0.05, sgd 1e-4)", check=at_least(0)
    )
    schedule: str = setting("cosine", "LR schedule after warm-up", choices=SCHEDULES)
    warmup: int = setting(300, "linear warm-up iterations", check=at_least(0))
    clip_grad: float = setting(10.0, "max gradient norm (0: off)")
    amp: bool | None = setting(None, "mixed precision (default: on with CUDA)")
    ema: float = setting(
        0.0,
        "decay of the weight EMA that is validated and saved, e.g. 0.999 (0: off)",
        check=lambda v: None if 0 <= v < 1 else "use a decay in [0, 1) (0: off)",
    )
    augment: dict[str, Any] | bool = setting(
        True, "data augmentation (knobs in the YAML `augment:` mapping)", parse=_augment
    )
    val_every: int = setting(1, "validate (and snapshot) every N epochs", check=at_least(1))
    patience: int = setting(
        0, "early stop after N validations without improvement (0: off)", check=at_least(0)
    )
    seed: int = setting(0, "random seed")
    shuffle: bool = setting(True, "shuffle training images each epoch")
    workers: int = setting(2, "data-loading worker processes", check=at_least(0))
    device: str = setting("auto", "where to train", choices=DEVICES)
    skip_invalid: bool = setting(False, "drop invalid boxes and unreadable images with a count")
    resume: Path | None = setting(None, "continue from a checkpoint (last.pt)")
    out: Path = setting(Path("runs/train"), "run folder", check=output_folder)

    def __post_init__(self) -> None:
        zoo = self.zoo_weights()
        if zoo is not None:  # the zoo model decides the detector (and its backbone)
            self.arch = "mask_rcnn" if zoo.startswith("maskrcnn_") else "faster_rcnn"

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks that involve more than one value; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(TrainConfig, FLAGS)
        if self.data is None:
            raise spell.problem("no training data; pass --data TRAIN.json")

    def check_inputs(self) -> None:
        """The mistakes found without torch, before it loads (`detect train` checks first): a
        data file that is not there, a run folder that already holds a run, a checkpoint to
        resume that is not there or not a torch file."""
        for path in (self.data, self.val, self.test):
            if path is not None and not Path(path).exists():
                raise DataError(f"{path} not found; check the path")
        if self.resume is None and (self.out / "last.pt").exists():
            raise ConfigError(
                f"{self.out} already holds a run; continue it with --resume "
                f"{self.out / 'last.pt'} or choose another --out"
            )
        if self.resume is not None:
            check_checkpoint_file(self.resume)

    def zoo_weights(self) -> str | None:
        """The torchvision COCO model named by ``weights`` ("NAME" or "NAME:TAG", see
        `detect models`), or None. Torch-free: the name is checked when the model is built."""
        name = (self.weights or "").partition(":")[0]
        return name if name.startswith(ZOO_PREFIXES) and "/" not in name else None

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

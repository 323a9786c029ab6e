"""`ModelSpec`: which detector a checkpoint holds, and the one place that builds it.

`detect train` writes ``ModelSpec.as_dict()`` into every checkpoint under ``model_spec``, a plain
dict (so ``torch.load(weights_only=True)`` reads it); `ModelSpec.from_checkpoint` and
`ModelSpec.from_dict` read it back, including every checkpoint written before this class
existed (the keys are the same) and the spec `detect export --pretrained` makes for a zoo model
(no ``sizes``). `ModelSpec.build` is the one place that chooses between torchvision's zoo
builder (`detect.models.zoo.build_zoo_model`, when ``zoo`` is set) and
`detect.models.build.build_model`.

Torch-free: the builders (and torch) are imported inside `build`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detect.errors import CheckpointError, ConfigError

ZOO_NAMES = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)
"""The names of `detect.models.zoo.ZOO`, in its order, without torch (for checks made before it
loads; tests/test_zoo.py holds them equal)."""


def check_zoo_name(name: str) -> None:
    """A `ConfigError` listing the zoo's names when ``name`` is none of them."""
    if name not in ZOO_NAMES:
        raise ConfigError(f"no zoo model {name!r}; `detect models` lists {', '.join(ZOO_NAMES)}")


def check_checkpoint_file(path: Path) -> None:
    """A `CheckpointError` for a checkpoint that is not there or is not a file torch wrote (a
    zip archive, or a pickle of torch's older format), before torch loads; the rest of what
    `detect.models.checkpoint.load_checkpoint` checks needs torch."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; check the path")
    with path.open("rb") as file:
        pickled = file.read(1) == b"\x80"  # a pickle's protocol opcode
    if not pickled and not zipfile.is_zipfile(path):
        raise CheckpointError(f"cannot read checkpoint {path} (not a file torch saved)")


if TYPE_CHECKING:
    from torch import nn

SPEC_KEY = "model_spec"  # where a checkpoint keeps the spec
REQUIRED = ("arch", "backbone", "roi", "num_classes")


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a checkpoint's model before its state dict is loaded.

    Attributes:
        arch: "faster_rcnn" or "mask_rcnn".
        backbone: `build_model`'s backbone ("resnet50_fpn", "resnet18_fpn",
            "mobilenet_v3_fpn"); for a zoo model, the zoo entry's (`ZooModel.backbone`, e.g.
            "mobilenet_v3_large_320_fpn"), informational only.
        roi: "align" or "pool" (zoo models: always "align").
        num_classes: foreground classes + 1 (background): the predictor's width.
        sizes: the keyword arguments of the builder besides the above (`build_model`'s
            ``**sizes``: min_size, max_size, anchor_scale, fpn_channels, returned_layers, ...;
            `build_zoo_model`'s trainable_layers and builder keywords); `detect train` writes the
            resolved ones (image sizes included). Empty: the builder's defaults.
        zoo: the torchvision COCO model (`detect.models.zoo.ZOO` name) the model is, or was
            fine-tuned from; it is then rebuilt by `build_zoo_model`. None: `build_model`.
    """

    arch: str
    backbone: str
    roi: str
    num_classes: int
    sizes: dict[str, Any] = field(default_factory=dict, hash=False)
    zoo: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", dict(self.sizes))  # a copy: the caller's may change

    def as_dict(self) -> dict[str, Any]:
        """The plain dict checkpoints hold under ``model_spec``: arch, backbone, roi,
        num_classes, sizes, and zoo only when set (the layout `detect train` always wrote)."""
        spec: dict[str, Any] = {
            "arch": self.arch,
            "backbone": self.backbone,
            "roi": self.roi,
            "num_classes": self.num_classes,
            "sizes": dict(self.sizes),
        }
        if self.zoo is not None:
            spec["zoo"] = self.zoo
        return spec

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], where: str = "checkpoint") -> ModelSpec:
        """Read a ``model_spec`` dict (`as_dict`'s, or any `detect train` ever wrote; without
        ``sizes``: the builder's defaults). `CheckpointError` naming the missing or bad key;
        ``where`` (a path) starts the message. Keys not known here are ignored."""
        if not isinstance(spec, Mapping):
            raise CheckpointError(
                f"{where}: model_spec is a {type(spec).__name__}, not a dict; "
                "use a checkpoint written by `detect train`"
            )
        missing = [key for key in REQUIRED if key not in spec]
        if missing:
            raise CheckpointError(
                f"{where}: model_spec has no {', '.join(repr(k) for k in missing)} "
                f"(it has {', '.join(map(str, spec)) or 'nothing'}); "
                "use a checkpoint written by `detect train`"
            )
        sizes = spec.get("sizes", {})
        if not isinstance(sizes, Mapping):
            raise CheckpointError(
                f"{where}: model_spec 'sizes' is a {type(sizes).__name__}, not a dict; "
                "use a checkpoint written by `detect train`"
            )
        try:
            num_classes = int(spec["num_classes"])
        except (TypeError, ValueError):
            raise CheckpointError(
                f"{where}: model_spec 'num_classes' is {spec['num_classes']!r}, not a number; "
                "use a checkpoint written by `detect train`"
            ) from None
        zoo = spec.get("zoo")
        return cls(
            arch=str(spec["arch"]),
            backbone=str(spec["backbone"]),
            roi=str(spec["roi"]),
            num_classes=num_classes,
            sizes=dict(sizes),
            zoo=None if zoo is None else str(zoo),
        )

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], where: str = "checkpoint") -> ModelSpec:
        """The spec of a loaded checkpoint dict (`from_dict` of its ``model_spec``)."""
        if SPEC_KEY not in ckpt:
            raise CheckpointError(
                f"{where} has no {SPEC_KEY}; use a checkpoint written by `detect train`"
            )
        return cls.from_dict(ckpt[SPEC_KEY], where)

    def build(
        self,
        weights: str | None = None,
        backbone_weights: str | None = None,
        coco_classes: bool = False,
    ) -> nn.Module:
        """The detector (train mode, CPU): `build_zoo_model` when ``zoo`` is set, else
        `build_model`, with ``sizes``.

        Args:
            weights: None builds it without weights (a checkpoint's state dict goes in next).
                Zoo: the COCO weights tag ("DEFAULT" or "COCO_V1"); else `build_model`'s
                ``weights`` (torchvision enum name or .pth path).
            backbone_weights: `build_model`'s ImageNet backbone weights; not for zoo models.
            coco_classes: zoo only: keep COCO's 80 real categories as published (labels 1..80,
                ``num_classes`` 81) instead of a predictor for ``num_classes`` re-initialised.
        """
        if self.zoo is not None:
            from detect.models.zoo import build_zoo_model

            if backbone_weights is not None:
                raise ValueError(f"zoo model {self.zoo} takes no backbone_weights")
            classes = None if coco_classes else self.num_classes
            return build_zoo_model(self.zoo, weights, classes, **self.sizes)
        if coco_classes:
            raise ValueError("coco_classes is for zoo models only")
        from detect.models.build import build_model

        return build_model(
            self.arch,
            self.backbone,
            self.num_classes,
            self.roi,
            weights=weights,
            backbone_weights=backbone_weights,
            **self.sizes,
        )

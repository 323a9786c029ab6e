"""Detector builders (torch): Faster/Mask R-CNN, FPN backbones, RoIAlign or RoIPool.

The names below are imported from `detect.models.build` on first use, so that torch-free
modules of this package (`detect.models.spec`) can be imported without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from detect.models.build import ARCHS, BACKBONES, ROIS, build_model

__all__ = ["ARCHS", "BACKBONES", "ROIS", "build_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from detect.models import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Detector builders (torch): Faster/Mask R-CNN, FPN backbones, RoIAlign or RoIPool."""

from detect.models.build import ARCHS, BACKBONES, ROIS, build_model

__all__ = ["ARCHS", "BACKBONES", "ROIS", "build_model"]

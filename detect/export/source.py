"""What `detect export` exports: a `detect train` checkpoint, or a torchvision COCO model of the
zoo (`detect models`) with its published weights, each as a model in eval mode plus the fields of
a checkpoint that its model card needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from detect.models.checkpoint import load_checkpoint, model_from_checkpoint
from detect.models.spec import ModelSpec


@dataclass
class ModelSource:
    """``checkpoint``: a checkpoint's fields (``model_spec``, ``labels``, ``category_ids``,
    ``config``, ``metrics``; a zoo model's made up the same way); ``model``: the model;
    ``card_source``: where it came from, as the card's ``source`` records it."""

    checkpoint: dict[str, Any]
    model: nn.Module
    card_source: dict[str, Any]


def checkpoint_source(path: Path) -> ModelSource:
    """The model of a `detect train` checkpoint (`CheckpointError` when it cannot be read)."""
    ckpt = load_checkpoint(path)
    source = {"checkpoint": str(path), "epoch": ckpt.get("epoch")}
    return ModelSource(ckpt, model_from_checkpoint(ckpt), source)


def pretrained_source(name: str, tag: str) -> ModelSource:
    """A zoo model with its COCO weights ``tag`` (DEFAULT or COCO_V1), and what its card needs:
    COCO's 80 names and ids, the published metrics, where the weights came from."""
    from detect.models.zoo import cache_file, coco_categories, zoo_model

    entry = zoo_model(name)
    weights = entry.enum(tag)
    labels, category_ids = coco_categories(weights)
    spec = ModelSpec(
        arch=entry.arch, backbone=entry.backbone, roi="align", num_classes=len(labels) + 1, zoo=name
    )
    model = spec.build(tag, coco_classes=True).eval()
    published = weights.meta.get("_metrics", {})
    source = {
        "pretrained": name,
        "weights": str(weights),
        "url": weights.url,
        "file": str(cache_file(weights)),
    }
    ckpt = {
        "model_spec": spec.as_dict(),
        "labels": labels,
        "category_ids": category_ids,
        "config": {"pretrained": name, "weights": str(weights)},
        "metrics": {"published": published},
        "source": source,
    }
    return ModelSource(ckpt, model, source)

"""`detect train` checkpoints: atomic writes, weights-only reads, RNG state, spec checks.

A checkpoint (`best.pt`, `ckpt_e{E}_ap{AP}.pt`) is a dict: `format` ("detect-checkpoint/1"),
`version` (detect's), `model_spec` (`detect.models.spec.ModelSpec.as_dict()`: arch, backbone,
roi, num_classes, sizes: the builder's size arguments; with `zoo`, the torchvision COCO model it
was fine-tuned from, rebuilt by `detect.models.zoo.build_zoo_model`), `labels` (names of labels
1..K), `category_ids` (COCO id of each label), `config` (resolved training config), `model`
(state dict of the weights validated: the EMA when on), `epoch`, and `metrics` (the epoch's
val COCO metrics per type, bbox and segm; only when the epoch was validated).
`last.pt` adds `optimizer`, `scheduler`, `scaler`, `rng` and `progress` (epoch, epochs,
best_ap, best_epoch, bad_validations, elapsed_s), and with EMA `train_model` (the trained
weights) and `ema_updates`, so that `--resume` continues the same run (a `last.pt` from before
`progress` has best_ap, best_epoch and bad_validations at the top level). Everything is plain
tensors and Python values, so `torch.load(weights_only=True)` reads it.
`ModelSpec.from_checkpoint` reads the spec back; `model_from_checkpoint` rebuilds the model.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detect.errors import CheckpointError
from detect.models.spec import ModelSpec, check_checkpoint_file

CHECKPOINT_FORMAT = "detect-checkpoint/1"


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """Write atomically (temp file + rename): a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as weights_only-loadable values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a `detect train` checkpoint (weights_only); CheckpointError when it is not one or
    its `model_spec` cannot be read."""
    path = Path(path)
    check_checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle, truncated file ...
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a `detect train` checkpoint")
    ModelSpec.from_checkpoint(ckpt, str(path))  # a missing or bad spec: said now, with the path
    return ckpt


def check_resume_spec(ckpt: dict[str, Any], spec: ModelSpec, path: Path) -> None:
    """CheckpointError unless the checkpoint's model is the one this run builds."""
    keys = ("arch", "backbone", "roi", "num_classes")
    saved = ModelSpec.from_checkpoint(ckpt, str(path))
    theirs = {k: getattr(saved, k) for k in keys}
    ours = {k: getattr(spec, k) for k in keys}
    if theirs != ours:
        raise CheckpointError(
            f"cannot resume from {path}: it was trained as {theirs}, this run is {ours}; "
            "resume with the same --arch/--backbone/--roi and data, or start a new --out"
        )


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The checkpoint's model (`ModelSpec.build` of its spec), weights loaded, in eval mode on
    the CPU."""
    model = ModelSpec.from_checkpoint(ckpt).build()
    model.load_state_dict(ckpt["model"])
    return model.eval()

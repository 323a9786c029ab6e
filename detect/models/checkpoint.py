"""`detect train` checkpoints: atomic writes, weights-only reads, RNG state, spec checks.

A checkpoint is a dict: `format`, `version`, `model_spec` (arch, backbone, roi, num_classes,
sizes: the `build_model` arguments; with `zoo`, the torchvision COCO model it was fine-tuned
from, rebuilt by `detect.models.zoo.build_zoo_model` with those sizes), `labels` (names of
labels 1..K), `category_ids` (COCO id of each label), `config` (resolved training config),
`model` (state dict), `epoch`, `metrics`.
`last.pt` adds `optimizer`, `scheduler`, `scaler`, `rng`, `best_ap`, `best_epoch`,
`bad_validations` so that `--resume` continues the same run. Everything is plain tensors and
Python values, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detect.errors import CheckpointError

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
    """Read a `detect train` checkpoint (weights_only); CheckpointError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; check the path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle, truncated file ...
        raise CheckpointError(f"cannot read checkpoint {path} ({exc.__class__.__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a `detect train` checkpoint")
    return ckpt


def check_resume_spec(ckpt: dict[str, Any], spec: dict[str, Any], path: Path) -> None:
    """CheckpointError unless the checkpoint's model is the one this run builds."""
    keys = ("arch", "backbone", "roi", "num_classes")
    theirs = {k: ckpt["model_spec"][k] for k in keys}
    ours = {k: spec[k] for k in keys}
    if theirs != ours:
        raise CheckpointError(
            f"cannot resume from {path}: it was trained as {theirs}, this run is {ours}; "
            "resume with the same --arch/--backbone/--roi and data, or start a new --out"
        )


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The checkpoint's model, weights loaded, in eval mode on the CPU."""
    spec = ckpt["model_spec"]
    if "zoo" in spec:  # fine-tuned from (or exported as) a torchvision COCO model
        from detect.models.zoo import build_zoo_model

        model = build_zoo_model(spec["zoo"], None, spec["num_classes"], **spec["sizes"])
    else:
        from detect.models.build import build_model

        model = build_model(
            spec["arch"], spec["backbone"], spec["num_classes"], spec["roi"], **spec["sizes"]
        )
    model.load_state_dict(ckpt["model"])
    return model.eval()

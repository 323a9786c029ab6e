"""Split a COCO JSON into train/val(/test) files by image: deterministic and without overlap.

An image and all of its annotations go to exactly one split; images without annotations are
kept. Image and annotation ids, ``info``, ``licenses`` and ``categories`` are copied unchanged.
``images[].file_name`` is relative to the folder of the JSON that lists it, so when the splits are
written to another folder each relative ``file_name`` is rewritten to point at the same file.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.data.coco import read_json
from detect.errors import ConfigError, DataError
from detect.settings import FLAGS, Spelling, at_least, output_folder, setting

SPLIT_NAMES = ("train", "val", "test")
"""Output file stems, in ratio order."""


def _load_coco(gt: Path) -> dict[str, Any]:
    """Read and sanity-check a COCO JSON; every problem is a `DataError` naming ``gt``."""
    data = read_json(gt)
    images, annotations = data["images"], data["annotations"]
    seen: set[Any] = set()
    for index, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image:
            raise DataError(f"{gt}: images[{index}] has no `id`; every image needs a unique id")
        image_id = image["id"]
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise DataError(f"{gt}: images[{index}] id {image_id!r} is not an integer")
        if image_id in seen:
            raise DataError(f"{gt}: image id {image_id} appears twice in `images`; make ids unique")
        seen.add(image_id)
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"{gt}: image id {image_id} has no `file_name` string")
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(f"{gt}: annotations[{index}] has no `image_id`")
        if ann["image_id"] not in seen:
            raise DataError(
                f"{gt}: annotations[{index}] (id {ann.get('id')}) refers to image_id "
                f"{ann['image_id']!r}, which is not in `images`; fix or remove it"
            )
    return data


def _check_ratios(ratios: list[float]) -> list[float]:
    if len(ratios) not in (2, 3):
        raise ConfigError(
            f"--ratios needs 2 (train val) or 3 (train val test) values, got {len(ratios)}"
        )
    values = [float(r) for r in ratios]
    if not all(math.isfinite(r) and r > 0 for r in values):
        raise ConfigError(
            f"--ratios must all be positive, got {' '.join(f'{r:g}' for r in values)}"
        )
    total = math.fsum(values)
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(
            f"--ratios must sum to 1, got {' '.join(f'{r:g}' for r in values)} (sum {total:g})"
        )
    return [r / total for r in values]


def split_counts(n: int, ratios: list[float]) -> list[int]:
    """Images per split: rounded cumulative ratios, so all ``n`` images are used exactly once.

    Each split gets at least one image (``n >= len(ratios)`` is required): a boundary that
    rounding leaves empty is moved by one image.
    """
    k = len(ratios)
    cumulative = list(itertools.accumulate(ratios))
    bounds = [math.floor(c * n + 0.5) for c in cumulative[:-1]]
    previous = 0
    for i in range(k - 1):
        bounds[i] = min(max(bounds[i], previous + 1), n - (k - 1 - i))
        previous = bounds[i]
    edges = [0, *bounds, n]
    return [edges[i + 1] - edges[i] for i in range(k)]


def _rewrite_file_name(file_name: str, gt_dir: Path, out_dir: Path) -> str:
    """``file_name`` (relative to ``gt_dir``) re-expressed relative to ``out_dir`` (POSIX)."""
    if os.path.isabs(file_name) or Path(file_name).is_absolute():
        return file_name
    target = os.path.abspath(gt_dir / file_name)
    try:
        return Path(os.path.relpath(target, os.path.abspath(out_dir))).as_posix()
    except ValueError:  # another drive on Windows
        return Path(target).as_posix()


def split_coco(
    gt: Path, ratios: list[float], seed: int = 0, out_dir: Path | None = None
) -> list[Path]:
    """Split the COCO JSON ``gt`` by image into ``train.json``, ``val.json`` (, ``test.json``).

    ``ratios`` has 2 or 3 positive values summing to 1 (train, val[, test]). Image ids are sorted,
    shuffled with ``np.random.default_rng(seed)`` and cut at the rounded cumulative ratios, so the
    same GT and seed always give byte-identical files. Files are written to ``out_dir`` (default:
    the GT's folder); ``file_name`` is rewritten when that folder differs. Images keep their order
    in ``gt`` within each split. Returns the written paths in split order.
    """
    gt = Path(gt)
    fractions = _check_ratios(list(ratios))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    data = _load_coco(gt)
    images: list[dict[str, Any]] = data["images"]
    k = len(fractions)
    if len(images) < k:
        raise ConfigError(
            f"{gt} has {len(images)} image(s), fewer than the {k} splits asked for; use fewer "
            "--ratios or a larger dataset"
        )

    gt_dir = gt.parent
    out_dir = gt_dir if out_dir is None else Path(out_dir)
    paths = [out_dir / f"{name}.json" for name in SPLIT_NAMES[:k]]
    gt_abs = os.path.normcase(os.path.abspath(gt))
    for path in paths:
        if os.path.normcase(os.path.abspath(path)) == gt_abs:
            raise ConfigError(
                f"splitting {gt} would overwrite it with {path.name}; pass --out FOLDER or rename "
                "the GT file"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder")
    same_dir = os.path.abspath(out_dir) == os.path.abspath(gt_dir)

    ids = sorted(image["id"] for image in images)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    split_of: dict[int, int] = {}
    start = 0
    for split_index, count in enumerate(split_counts(len(ids), fractions)):
        for image_id in shuffled[start : start + count]:
            split_of[image_id] = split_index
        start += count

    annotations = data.get("annotations")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{out_dir}: cannot create the output folder ({exc.strerror or exc})"
        ) from None
    for split_index, path in enumerate(paths):
        split_images = []
        for image in images:
            if split_of[image["id"]] != split_index:
                continue
            if not same_dir:
                image = {
                    **image,
                    "file_name": _rewrite_file_name(image["file_name"], gt_dir, out_dir),
                }
            split_images.append(image)
        part: dict[str, Any] = {}
        for key, value in data.items():
            if key == "images":
                part[key] = split_images
            elif key == "annotations":
                part[key] = [a for a in annotations if split_of[a["image_id"]] == split_index]
            else:
                part[key] = value
        text = json.dumps(part, separators=(",", ":")) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return paths


# --- `detect split`'s settings ---------------------------------------------------------------


@dataclass(frozen=True)
class SplitSettings:
    """`detect split`'s settings: `split_coco`'s arguments."""

    gt: Path | None = setting(None, "COCO JSON to split", positional=True)
    ratios: tuple[float, ...] = setting(
        (0.6, 0.2, 0.2), "train val [test]", shown_default="0.6 0.2 0.2"
    )
    seed: int = setting(0, "shuffle seed", check=at_least(0))
    out: Path | None = setting(None, "output folder (default: next to GT)", check=output_folder)

    def validate(self, spell: Spelling | None = None) -> None:
        spell = spell or Spelling(SplitSettings, FLAGS)
        if self.gt is None:
            raise spell.problem(f"give {spell('gt')}: the COCO JSON to split")

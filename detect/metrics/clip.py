"""A `detect video` run and its clip's ground truth, read and checked (no pycocotools here).

Ground truth: the clip's COCO JSON (`detect synth --video`), images with ``frame_index``,
annotations with ``track_id`` and TLWH ``bbox``. The run: a JSONL line per processed frame,
``frame`` and ``detections`` with ``top``, ``left``, ``width``, ``height``, ``label`` (a category
name), ``score`` and ``track_id`` (-1: untracked); with zones or lines also ``events``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detect.data.coco import load_json
from detect.errors import DataError


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a `detect video` JSONL file; DataError names a bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "frame" not in record or "detections" not in record:
            raise DataError(
                f"{path} line {number}: not a `detect video` record (frame, detections)"
            )
        records.append(record)
    return records


DETECTION_KEYS = {"top", "left", "width", "height", "label", "score"}


CLIP_KEYS = {
    "images": ("id", "frame_index"),
    "annotations": ("image_id", "category_id", "track_id", "bbox"),
    "categories": ("id", "name"),
}


def read_clip_truth(path: Path) -> dict[str, Any]:
    """A clip's ground truth (`detect synth --video`); DataError naming what it lacks."""
    data = load_json(path)
    fix = "give the .json that `detect synth --video` wrote beside the clip"
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in CLIP_KEYS):
        raise DataError(f"{path}: not COCO JSON (images, annotations, categories); {fix}")
    for section, keys in CLIP_KEYS.items():
        for item in data[section]:
            missing = [k for k in keys if k not in item] if isinstance(item, dict) else keys
            if missing:
                raise DataError(f"{path}: an entry of '{section}' has no {missing[0]!r}; {fix}")
    return data


def read_run(jsonl_path: Path, gt_path: Path, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a run of the clip whose ground truth ``data`` was read from ``gt_path``:
    at least one, every detection with `DETECTION_KEYS`, every frame one of the clip's;
    DataError otherwise."""
    records = read_jsonl(jsonl_path)
    if not records:
        raise DataError(f"{jsonl_path} has no frames; score the JSONL of a run that processed some")
    for record in records:
        found = record["detections"] if isinstance(record["detections"], list) else [None]
        for d in found:
            missing = DETECTION_KEYS - d.keys() if isinstance(d, dict) else DETECTION_KEYS
            if missing:
                raise DataError(
                    f"{jsonl_path} frame {record['frame']}: a detection without "
                    f"{sorted(missing)[0]!r}; score the JSONL of `detect video` or `detect watch`"
                )
    frames = {int(img["frame_index"]) for img in data["images"]}
    unknown = sorted({r["frame"] for r in records} - frames)
    if unknown:
        raise DataError(
            f"{jsonl_path}: frame {unknown[0]} is not in {gt_path}; score a run of this clip"
        )
    return records

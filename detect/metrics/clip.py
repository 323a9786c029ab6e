"""A `detect video` run and its clip's ground truth, read and checked.

Ground truth: the clip's COCO JSON (`detect synth --video`), images with ``frame_index``,
annotations with ``track_id`` and TLWH ``bbox``. The run: a JSONL line per processed frame,
``frame`` and ``detections`` with ``top``, ``left``, ``width``, ``height``, ``label`` (a category
name), ``score`` and ``track_id`` (-1: untracked); with zones or lines also ``events``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detect.data.coco import load_json
from detect.errors import DataError
from detect.ops.boxes import tlwh_to_xyxy, xywh_to_xyxy
from detect.structures import Detections


def read_json_lines(
    path: Path, what: str, is_one: Callable[[Any], bool], kind: str
) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one a line (blank lines skipped), each one ``is_one``
    accepts; DataError naming ``what`` (the file as the user gave it), the line and ``kind``
    (what each line should be) otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{what}: cannot read it ({exc.strerror})") from None
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{what} line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not is_one(item):
            raise DataError(f"{what} line {number}: not {kind}")
        items.append(item)
    return items


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a `detect video` JSONL file; DataError names a bad line."""
    return read_json_lines(
        path,
        str(path),
        lambda record: "frame" in record and "detections" in record,
        "a `detect video` record (frame, detections)",
    )


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
    categories = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        if ann["category_id"] not in categories or not _whole(ann["track_id"]):
            raise DataError(
                f"{path}: annotation {ann.get('id', '?')} has an unknown category_id or a "
                f"track_id that is no whole number; {fix}"
            )
    return data


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def truth_frames(data: dict[str, Any]) -> dict[int, Detections]:
    """The ground truth ``data`` (`read_clip_truth`'s) by frame index: each frame's objects as
    `Detections` (xyxy boxes from the TLWH ``bbox``, labels the category names, class ids the
    category ids, track ids the objects' identities); annotations of images not in the clip are
    left out."""
    frame_of = {int(img["id"]): int(img["frame_index"]) for img in data["images"]}
    name_of = {c["id"]: c["name"] for c in data["categories"]}
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for ann in data["annotations"]:
        frame = frame_of.get(int(ann["image_id"]))
        if frame is not None:
            by_frame.setdefault(frame, []).append(ann)
    return {
        frame: Detections.of(
            xywh_to_xyxy(np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4)),
            [name_of[a["category_id"]] for a in anns],
            class_ids=[a["category_id"] for a in anns],
            track_ids=[a["track_id"] for a in anns],
        )
        for frame, anns in by_frame.items()
    }


def record_detections(found: list[dict[str, Any]]) -> Detections:
    """A JSONL record's detections (dicts with TLWH ``top, left, width, height``, ``label``,
    ``score`` and ``track_id``, -1 where absent) as `Detections` (xyxy)."""
    tlwh = [[d["top"], d["left"], d["width"], d["height"]] for d in found]
    return Detections.of(
        tlwh_to_xyxy(np.asarray(tlwh, np.float64).reshape(-1, 4)),
        [d["label"] for d in found],
        [d["score"] for d in found],
        track_ids=[d.get("track_id", -1) for d in found],
    )


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
            if not _whole(d.get("track_id", -1)):
                raise DataError(
                    f"{jsonl_path} frame {record['frame']}: a track_id that is no whole "
                    "number; score the JSONL of `detect video` or `detect watch`"
                )
    frames = {int(img["frame_index"]) for img in data["images"]}
    unknown = sorted({r["frame"] for r in records} - frames)
    if unknown:
        raise DataError(
            f"{jsonl_path}: frame {unknown[0]} is not in {gt_path}; score a run of this clip"
        )
    return records


@dataclass(frozen=True)
class ClipRun:
    """A run of a clip, read and checked once: its JSONL ``records`` (`read_run`'s) and the
    clip's ground truth ``data`` (`read_clip_truth`'s), with the files they came from."""

    gt_path: Path
    jsonl_path: Path
    data: dict[str, Any]
    records: list[dict[str, Any]]

    @classmethod
    def read(cls, gt_path: Path, jsonl_path: Path) -> ClipRun:
        """The run whose JSONL is ``jsonl_path`` of the clip whose ground truth is ``gt_path``;
        DataError naming the file and what is wrong with it."""
        data = read_clip_truth(gt_path)
        return cls(Path(gt_path), Path(jsonl_path), data, read_run(jsonl_path, gt_path, data))

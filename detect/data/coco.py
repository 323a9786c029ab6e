"""Read and validate a COCO detection/segmentation JSON into per-image training records.

Torch-free. Boxes are converted from COCO `[x, y, w, h]` to xyxy float pixels; category ids are
mapped to contiguous labels 1..K (0 is background) in ascending id order; `iscrowd` annotations
are kept apart (ignored regions, never training targets). Image paths resolve against `images`
when given, else against the JSON file's own folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from detect.errors import DataError

# Boxes may poke this far (pixels) outside the image before they count as invalid; within it
# they are clipped (float rounding in exported annotations is common).
EDGE_TOLERANCE = 1.0


@dataclass
class ImageRecord:
    """One image and its targets. boxes (N, 4) float32 xyxy pixels, labels (N,) int64 1..K."""

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    segmentations: list[Any]  # COCO polygons or RLE, one per box; [] where none

    def masks(self) -> np.ndarray:
        """(N, H, W) uint8 {0, 1} instance masks decoded from the segmentations."""
        out = np.zeros((len(self.segmentations), self.height, self.width), np.uint8)
        for i, seg in enumerate(self.segmentations):
            out[i] = decode_segmentation(seg, self.height, self.width)
        return out


@dataclass
class CocoData:
    """A validated dataset: records plus label names (index i-1 names label i)."""

    json_path: Path
    records: list[ImageRecord]
    label_names: list[str]
    category_ids: list[int]  # category_ids[i-1] is the COCO id of label i
    dropped: dict[str, int]  # reason -> count, for --skip-invalid

    @property
    def num_classes(self) -> int:
        """Foreground classes + 1 (background)."""
        return len(self.label_names) + 1


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask from COCO polygons, uncompressed RLE or compressed RLE."""
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = seg
    return mask_utils.decode(rle)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of an (H, W) binary mask, `counts` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_annotation(mask: np.ndarray) -> dict[str, Any]:
    """COCO fields of a non-empty (H, W) binary mask: tight xywh `bbox` (x = first column,
    w = last - first + 1), `area` (pixel count), `iscrowd` 0 and RLE `segmentation`."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return {
        "bbox": [
            float(cols[0]),
            float(rows[0]),
            float(cols[-1] - cols[0] + 1),
            float(rows[-1] - rows[0] + 1),
        ],
        "area": float(np.count_nonzero(mask)),
        "iscrowd": 0,
        "segmentation": mask_to_rle(mask),
    }


def load_json(path: Path) -> Any:
    """Parse a JSON file; DataError names the file and where parsing failed."""
    if Path(path).is_dir():
        raise DataError(f"{path} is a folder; give the path of a JSON file")
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f"{path} not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    """Parse a COCO JSON file; DataError names the file and where parsing failed."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO object with images/annotations/categories")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing the '{key}' list; is this a COCO instances file?")
    if not isinstance(data.setdefault("annotations", []), list):
        raise DataError(f"{path}: 'annotations' must be a list")
    return data


def _valid_polygons(seg: list[Any]) -> bool:
    return len(seg) > 0 and all(
        isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg
    )


def _has_segmentation(seg: Any) -> bool:
    if isinstance(seg, list):
        return _valid_polygons(seg)
    return isinstance(seg, dict) and "counts" in seg and "size" in seg


class _Problems:
    """Collects invalid items per reason: raise on the first kind, or drop and count."""

    def __init__(self, source: Path, skip: bool) -> None:
        self.source = source
        self.skip = skip
        self.counts: dict[str, int] = {}

    def report(self, reason: str, detail: str, fix: str) -> None:
        if not self.skip:
            raise DataError(f"{self.source}: {detail}; {fix} (or pass --skip-invalid to drop it)")
        self.counts[reason] = self.counts.get(reason, 0) + 1


def _index_categories(data: dict[str, Any], path: Path) -> tuple[dict[int, int], list[str]]:
    ids: dict[int, str] = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"{path}: every category needs an 'id' and a 'name' (got {cat!r})")
        if cat["id"] in ids:
            raise DataError(f"{path}: category id {cat['id']} appears twice; ids must be unique")
        ids[int(cat["id"])] = str(cat["name"])
    if not ids:
        raise DataError(f"{path}: no categories; a dataset needs at least one class")
    ordered = sorted(ids)
    return {cid: i + 1 for i, cid in enumerate(ordered)}, [ids[c] for c in ordered]


def _check_image(path: Path, width: int, height: int) -> str | None:
    """Reason the image cannot be used, or None. Reads the header only."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as im:
            size = im.size
    except (UnidentifiedImageError, OSError):
        return "unreadable"
    if size != (width, height):
        return f"size {size[0]}x{size[1]} differs from the JSON's {width}x{height}"
    return None


def load_coco(
    json_path: Path,
    images: Path | None = None,
    need_masks: bool = False,
    skip_invalid: bool = False,
    check_files: bool = True,
) -> CocoData:
    """Validate a COCO JSON and build one record per usable image.

    Raises DataError (unless `skip_invalid`, which drops the item and counts it) for: images
    missing, unreadable or of another size than stated; annotations pointing at unknown images
    or categories; boxes with non-positive size or outside the image; instances without a mask
    when `need_masks`. Unknown ids, an empty image list or a broken file always raise.
    """
    json_path = Path(json_path)
    data = read_json(json_path)
    root = Path(images) if images is not None else json_path.parent
    label_of, names = _index_categories(data, json_path)
    problems = _Problems(json_path, skip_invalid)

    images_by_id: dict[int, dict[str, Any]] = {}
    for img in data["images"]:
        if not isinstance(img, dict) or not {"id", "file_name", "width", "height"} <= img.keys():
            raise DataError(
                f"{json_path}: every image needs id, file_name, width and height (got {img!r})"
            )
        images_by_id[int(img["id"])] = img
    if not images_by_id:
        raise DataError(f"{json_path} lists no images; point --data at a non-empty dataset")

    per_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images_by_id}
    for ann in data["annotations"]:
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        if image_id not in images_by_id:
            raise DataError(
                f"{json_path}: annotation {ann.get('id')} refers to image_id {image_id}, "
                "which is not in 'images'; fix the id or add the image"
            )
        if cat_id not in label_of:
            raise DataError(
                f"{json_path}: annotation {ann.get('id')} refers to category_id {cat_id}, "
                f"which is not in 'categories' (known: {sorted(label_of)})"
            )
        per_image[image_id].append(ann)

    records = []
    for image_id in sorted(images_by_id):
        img = images_by_id[image_id]
        width, height = int(img["width"]), int(img["height"])
        path = root / img["file_name"]
        if check_files:
            reason = _check_image(path, width, height)
            if reason is not None:
                problems.report(
                    "bad image",
                    f"image {path} is {reason}",
                    "fix or remove the file and its entry",
                )
                continue
        record = _build_record(
            image_id, path, width, height, per_image[image_id], label_of, need_masks, problems
        )
        records.append(record)
    if not records:
        raise DataError(f"{json_path}: no usable images left; see the messages above")
    return CocoData(
        json_path=json_path,
        records=records,
        label_names=names,
        category_ids=sorted(label_of),
        dropped=problems.counts,
    )


def _build_record(
    image_id: int,
    path: Path,
    width: int,
    height: int,
    anns: list[dict[str, Any]],
    label_of: dict[int, int],
    need_masks: bool,
    problems: _Problems,
) -> ImageRecord:
    boxes, labels, segs = [], [], []
    for ann in anns:
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            problems.report(
                "bad box",
                f"annotation {ann.get('id')} has bbox {bbox!r}",
                "give [x, y, width, height] in pixels",
            )
            continue
        x, y, w, h = (float(v) for v in bbox)
        tol = EDGE_TOLERANCE
        if w <= 0 or h <= 0:
            problems.report(
                "bad box",
                f"annotation {ann.get('id')} in {path.name} has non-positive size {w}x{h}",
                "fix its bbox",
            )
            continue
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            problems.report(
                "bad box",
                f"annotation {ann.get('id')} in {path.name} has bbox "
                f"{bbox} outside the {width}x{height} image",
                "fix its bbox",
            )
            continue
        if ann.get("iscrowd", 0):
            continue  # an ignored region, never a training target
        xyxy = [max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)]
        seg = ann.get("segmentation")
        if need_masks and not _has_segmentation(seg):
            problems.report(
                "no mask",
                f"annotation {ann.get('id')} in {path.name} has no segmentation",
                "add polygons/RLE or train --arch faster_rcnn",
            )
            continue
        boxes.append(xyxy)
        labels.append(label_of[ann["category_id"]])
        segs.append(seg if need_masks else [])
    return ImageRecord(
        image_id=image_id,
        path=path,
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        segmentations=segs,
    )

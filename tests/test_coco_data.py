"""COCO loading: masks (polygon, RLE), crowd, empty images, contiguous labels, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detect.data.coco import load_coco
from detect.data.dataset import BadImage, DetectionDataset, collate
from detect.errors import DataError


def _write_dataset(root: Path, annotations: list[dict[str, Any]], images: int = 3) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(1, images + 1):
        cv2.imwrite(str(root / "img" / f"{i}.png"), np.full((40, 60, 3), 30 * i, np.uint8))
        entries.append({"id": i, "file_name": f"img/{i}.png", "width": 60, "height": 40})
    rle = mask_utils.encode(
        np.asfortranarray(np.pad(np.ones((10, 10), np.uint8), ((5, 25), (5, 45))))
    )
    rle["counts"] = rle["counts"].decode()
    defaults = {
        "polygon": [[10, 10, 30, 10, 30, 20, 10, 20]],
        "rle": rle,
    }
    for ann in annotations:
        if isinstance(ann.get("segmentation"), str):
            ann["segmentation"] = defaults[ann["segmentation"]]
    data = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
    }
    path = root / "gt.json"
    path.write_text(json.dumps(data))
    return path


def _ann(i: int, image_id: int = 1, cat: int = 7, bbox=(10, 10, 20, 10), **extra) -> dict:
    return {
        "id": i,
        "image_id": image_id,
        "category_id": cat,
        "bbox": list(bbox),
        "iscrowd": 0,
        "segmentation": "polygon",
        **extra,
    }


def test_labels_masks_crowd_and_empty_images(tmp_path: Path) -> None:
    path = _write_dataset(
        tmp_path,
        [
            _ann(1, cat=7),
            _ann(2, cat=3, bbox=(5, 5, 10, 10), segmentation="rle"),
            _ann(3, iscrowd=1),
        ],
    )
    data = load_coco(path, need_masks=True)
    assert data.label_names == ["dog", "cat"]  # ascending category id: 3 -> 1, 7 -> 2
    assert data.category_ids == [3, 7]
    assert data.num_classes == 3
    assert len(data.records) == 3  # images 2 and 3 have no annotations and stay
    first = data.records[0]
    np.testing.assert_array_equal(first.labels, [2, 1])  # the crowd region is not a target
    np.testing.assert_allclose(first.boxes, [[10, 10, 30, 20], [5, 5, 15, 15]])
    masks = first.masks()
    assert masks.shape == (2, 40, 60)
    assert masks[1].sum() == 100 and masks[1][5:15, 5:15].all()
    assert masks[0][12, 20] == 1 and masks[0][30, 50] == 0

    dataset = DetectionDataset(data.records, with_masks=True)
    images, targets, bad = collate([dataset[0], dataset[1]])
    assert not bad and images[0].shape == (3, 40, 60) and float(images[0].max()) <= 1.0
    assert targets[0]["masks"].shape == (2, 40, 60) and targets[1]["boxes"].shape == (0, 4)


def test_boxes_slightly_outside_are_clipped(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, [_ann(1, bbox=(-0.5, 30, 61, 10.5))])
    box = load_coco(path).records[0].boxes[0]
    np.testing.assert_allclose(box, [0, 30, 60, 40])


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (_ann(1, bbox=(10, 10, 0, 5)), "non-positive size"),
        (_ann(1, bbox=(50, 10, 30, 5)), "outside the 60x40 image"),
        (_ann(1, segmentation=[]), "no segmentation"),
    ],
)
def test_invalid_annotations_raise_or_are_skipped(tmp_path: Path, annotation, message) -> None:
    path = _write_dataset(tmp_path, [annotation, _ann(2, image_id=2)])
    with pytest.raises(DataError, match=message) as info:
        load_coco(path, need_masks=True)
    assert "--skip-invalid" in str(info.value)
    data = load_coco(path, need_masks=True, skip_invalid=True)
    assert sum(data.dropped.values()) == 1
    assert len(data.records[0].boxes) == 0 and len(data.records[1].boxes) == 1


def test_unknown_ids_name_the_annotation(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, [_ann(5, image_id=99)])
    with pytest.raises(DataError, match="annotation 5 refers to image_id 99"):
        load_coco(path)
    path = _write_dataset(tmp_path, [_ann(6, cat=42)])
    with pytest.raises(DataError, match="annotation 6 refers to category_id 42"):
        load_coco(path)


def test_missing_corrupt_and_resized_images(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, [_ann(1)])
    (tmp_path / "img" / "2.png").unlink()
    (tmp_path / "img" / "3.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"2\.png is missing"):
        load_coco(path)
    data = load_coco(path, skip_invalid=True)
    assert [r.image_id for r in data.records] == [1]
    assert data.dropped == {"bad image": 2}
    cv2.imwrite(str(tmp_path / "img" / "2.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DataError, match="size 10x10 differs from the JSON's 60x40"):
        load_coco(path, skip_invalid=False, check_files=True)


def test_truncated_image_is_reported_at_load_time(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path, [_ann(1)], images=1)
    image = tmp_path / "img" / "1.png"
    cv2.imwrite(str(image.with_suffix(".jpg")), np.zeros((40, 60, 3), np.uint8))
    data = load_coco(path)
    image.write_bytes(image.with_suffix(".jpg").read_bytes()[:50])  # header only
    item = DetectionDataset(data.records, with_masks=False)[0]
    assert isinstance(item, BadImage) and item.path.endswith("1.png")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON .line 1, column 2"),
        ('{"images": []}', "missing the 'categories' list"),
        ('{"images": [], "categories": [{"id": 1, "name": "a"}]}', "lists no images"),
        ("[1, 2]", "expected a COCO object"),
    ],
)
def test_malformed_json(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "gt.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_coco(path)
    with pytest.raises(DataError, match="not found"):
        load_coco(tmp_path / "missing.json")


def test_images_root_overrides_the_json_folder(tmp_path: Path) -> None:
    path = _write_dataset(tmp_path / "a", [_ann(1)])
    moved = tmp_path / "b" / "gt.json"
    moved.parent.mkdir()
    path.rename(moved)
    with pytest.raises(DataError, match="is missing"):
        load_coco(moved)
    data = load_coco(moved, images=tmp_path / "a")
    assert data.records[0].path == tmp_path / "a" / "img" / "1.png"

"""Tests of `detect.data.synth`: determinism, COCO validity, occlusion rules, degradation, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from detect.data import synth
from detect.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """annotations.json of 40 clean 128-pixel images, seed 3."""
    return synth.write_dataset(tmp_path_factory.mktemp("synth"), images=40, seed=3, size=128)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _image_bytes(json_path: Path) -> list[bytes]:
    return [(json_path.parent / im["file_name"]).read_bytes() for im in _load(json_path)["images"]]


def _masks_by_image(coco: dict) -> dict[int, list[np.ndarray]]:
    masks: dict[int, list[np.ndarray]] = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        masks[ann["image_id"]].append(mask_utils.decode(ann["segmentation"]).astype(bool))
    return masks


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = synth.write_dataset(tmp_path / "a", images=4, seed=5, size=96)
    b = synth.write_dataset(tmp_path / "b", images=4, seed=5, size=96)
    assert a == tmp_path / "a" / "annotations.json"
    assert a.read_bytes() == b.read_bytes()
    assert _image_bytes(a) == _image_bytes(b)


def test_different_seed_differs(tmp_path: Path) -> None:
    a = synth.write_dataset(tmp_path / "a", images=4, seed=5, size=96)
    b = synth.write_dataset(tmp_path / "b", images=4, seed=6, size=96)
    assert _load(a)["annotations"] != _load(b)["annotations"]
    assert all(x != y for x, y in zip(_image_bytes(a), _image_bytes(b), strict=True))


def test_image_does_not_depend_on_dataset_length(tmp_path: Path) -> None:
    short = synth.write_dataset(tmp_path / "short", images=2, seed=9, size=96)
    long = synth.write_dataset(tmp_path / "long", images=5, seed=9, size=96)
    assert _image_bytes(short) == _image_bytes(long)[:2]
    assert _load(short)["annotations"] == [
        ann for ann in _load(long)["annotations"] if ann["image_id"] <= 2
    ]


def test_json_layout(dataset: Path) -> None:
    coco = _load(dataset)
    assert list(coco) == ["info", "images", "categories", "annotations"]
    assert coco["info"] == {"description": "detect synth", "seed": 3, "size": 128, "degrade": False}
    assert [c["name"] for c in coco["categories"]] == list(synth.CLASSES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(synth.CLASSES) + 1))
    assert [im["id"] for im in coco["images"]] == list(range(1, 41))
    assert coco["images"][0] == {
        "id": 1,
        "file_name": "images/000000.jpg",
        "width": 128,
        "height": 128,
    }
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
    image = cv2.imread(str(dataset.parent / coco["images"][-1]["file_name"]))
    assert image.shape == (128, 128, 3)


def test_annotations_match_their_masks(dataset: Path) -> None:
    coco = COCO(str(dataset))
    assert coco.getCatIds() == [1, 2, 3, 4, 5]
    for ann in coco.loadAnns(coco.getAnnIds()):
        image = coco.imgs[ann["image_id"]]
        mask = coco.annToMask(ann).astype(bool)
        assert mask.shape == (image["height"], image["width"])
        assert ann["area"] == float(mask.sum()) >= synth.MIN_VISIBLE_PIXELS
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        x, y, w, h = ann["bbox"]
        assert [x, y, w, h] == [cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
        assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
        assert ann["iscrowd"] == 0


def test_visible_masks_are_disjoint(dataset: Path) -> None:
    for masks in _masks_by_image(_load(dataset)).values():
        if masks:
            assert np.sum(masks, axis=0).max() == 1


def test_every_class_and_object_count_occurs(dataset: Path) -> None:
    coco = _load(dataset)
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3, 4, 5}
    counts = [len(m) for m in _masks_by_image(coco).values()]
    assert max(counts) <= synth.MAX_OBJECTS
    assert len(set(counts)) >= 4  # varied number of objects per image


def test_a_ring_has_a_hole(dataset: Path) -> None:
    ring_id = synth.CLASSES.index("ring") + 1
    rings = [a for a in _load(dataset)["annotations"] if a["category_id"] == ring_id]
    assert rings

    def has_hole(ann: dict) -> bool:
        mask = mask_utils.decode(ann["segmentation"])
        _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        return bool((hierarchy[0][:, 3] >= 0).any())  # a contour with a parent is a hole

    assert any(has_hole(ann) for ann in rings)


def test_sample_shapes_keeps_every_instance_visible() -> None:
    counts = []
    for seed in range(300):
        rng = np.random.default_rng([7, seed])
        shapes = synth.sample_shapes(rng, 96)
        counts.append(len(shapes))
        if seed >= 40:  # rendering is slower than sampling: check the first 40
            continue
        _, masks = synth.render_scene(np.zeros((96, 96, 3), np.uint8), shapes)
        for shape, mask in zip(shapes, masks, strict=True):
            full = synth.shape_mask(shape, 96, 96).sum()
            assert mask.sum() >= max(synth.MIN_VISIBLE_PIXELS, synth.MIN_VISIBLE_FRACTION * full)
    assert 0 in counts  # a few images are empty
    assert max(counts) == synth.MAX_OBJECTS


def test_degraded_images_differ_but_share_annotations(tmp_path: Path) -> None:
    clean = synth.write_dataset(tmp_path / "clean", images=6, seed=2, size=128)
    degraded = synth.write_dataset(tmp_path / "cctv", images=6, seed=2, size=128, degrade=True)
    assert _load(degraded)["info"]["degrade"] is True
    assert _load(degraded)["annotations"] == _load(clean)["annotations"]
    psnrs = []
    for a, b in zip(_image_bytes(clean), _image_bytes(degraded), strict=True):
        x = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        y = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        psnrs.append(10 * np.log10(255.0**2 / np.mean((x - y) ** 2)))
        # Blur removes the fine detail and noise / JPEG blocks replace it: the high-frequency
        # bands hardly correlate (about 0.1 typically, < 0.5 over 500 images).
        detail = np.corrcoef(cv2.Laplacian(x, -1).ravel(), cv2.Laplacian(y, -1).ravel())[0, 1]
        assert detail < 0.6
    assert np.median(psnrs) < 30.0  # low light and noise change most images a lot


def test_degrade_image_is_deterministic() -> None:
    image, _, _ = synth.generate_image(seed=1, index=0, size=96)
    a = synth.degrade_image(np.random.default_rng(4), image)
    b = synth.degrade_image(np.random.default_rng(4), image)
    assert a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, image)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"images": 0}, "--images"), ({"size": 32}, "--size"), ({"seed": -1}, "--seed")],
)
def test_invalid_arguments_raise_config_error(tmp_path: Path, kwargs: dict, word: str) -> None:
    args = {"images": 2, "seed": 0, "size": 96} | kwargs
    with pytest.raises(ConfigError, match=word):
        synth.write_dataset(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_raises_data_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=re.escape(str(blocker))):
        synth.write_dataset(blocker / "out", images=1, seed=0, size=64)


def test_cli_writes_dataset(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "detect", "synth", "--out", str(out), "--images", "3"]
    result = subprocess.run(
        [*command, "--seed", "1", "--size", "128"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(_load(out / "annotations.json")["images"]) == 3
    assert re.search(r"^synth: 3/3 images, .+, took ", result.stderr, re.MULTILINE)  # in a log:
    assert "\r" not in result.stderr  # plain lines, no bar
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "000000.jpg",
        "000001.jpg",
        "000002.jpg",
    ]


def test_cli_reports_bad_arguments_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "detect", "synth", "--out", str(tmp_path), "--images", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --images")
    assert "Traceback" not in result.stderr

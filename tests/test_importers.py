"""VOC, YOLO and mask-PNG importers: exact geometry, COCO loadability, clear errors, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.data.importers import import_masks, import_voc, import_yolo
from detect.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
# pycocotools' own numpy-2 deprecation inside mask.decode, not ours
_DECODE_WARNING = "ignore:__array__ implementation:DeprecationWarning"


def _image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _resolve_all(gt: Path) -> None:
    """Every file_name resolves relative to the JSON's folder and matches the stored size."""
    from pycocotools.coco import COCO

    coco = COCO(str(gt))
    for image in coco.dataset["images"]:
        path = gt.parent / image["file_name"]
        assert path.is_file(), image["file_name"]
        with Image.open(path) as im:
            assert im.size == (image["width"], image["height"])
    assert [i["id"] for i in coco.dataset["images"]] == list(range(1, len(coco.imgs) + 1))
    assert [a["id"] for a in coco.dataset["annotations"]] == list(range(1, len(coco.anns) + 1))


# --- VOC -------------------------------------------------------------------------------------


def _voc_xml(filename: str, size: tuple[int, int] | None, objects: list[tuple]) -> str:
    parts = ["<annotation>", "<folder>VOC2012</folder>", f"<filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height>")
        parts.append("<depth>3</depth></size>")
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    (root / "Annotations").mkdir(parents=True)
    _image(root / "JPEGImages" / "2008_000002.jpg", 40, 30)
    _image(root / "JPEGImages" / "2008_000001.jpg", 50, 20)
    _image(root / "JPEGImages" / "2008_000003.jpg", 16, 16)
    objects_2 = [("dog", (1, 1, 10, 20), 0), ("cat", (5, 6, 15, 16), 1), ("dog", (3, 3, 40, 30), 0)]
    (root / "Annotations" / "2008_000002.xml").write_text(
        _voc_xml("2008_000002.jpg", (40, 30), objects_2)
    )
    # no <size>: width/height come from the image header
    (root / "Annotations" / "2008_000001.xml").write_text(
        _voc_xml("2008_000001.jpg", None, [("bird", (2, 3, 2, 3), 0)])
    )
    (root / "Annotations" / "2008_000003.xml").write_text(_voc_xml("2008_000003.jpg", (0, 0), []))
    return root


def test_voc_boxes_difficult_categories(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "converted" / "nested" / "voc.json"
    summary = import_voc(voc, out)
    assert summary == "voc: 3 images, 4 annotations, 3 categories (1 difficult marked iscrowd)"
    data = _load(out)
    assert [c["name"] for c in data["categories"]] == ["bird", "cat", "dog"]
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    assert [i["file_name"] for i in data["images"]] == [
        f"../../VOC2012/JPEGImages/2008_00000{k}.jpg" for k in (1, 2, 3)
    ]
    assert [(i["width"], i["height"]) for i in data["images"]] == [(50, 20), (40, 30), (16, 16)]
    anns = data["annotations"]
    assert [(a["image_id"], a["category_id"]) for a in anns] == [(1, 1), (2, 3), (2, 2), (2, 3)]
    assert anns[0]["bbox"] == [1.0, 2.0, 1.0, 1.0]  # single-pixel box (2, 3, 2, 3)
    assert anns[1]["bbox"] == [0.0, 0.0, 10.0, 20.0]
    assert anns[2]["bbox"] == [4.0, 5.0, 11.0, 11.0]
    assert anns[3]["bbox"] == [2.0, 2.0, 38.0, 28.0]  # xmax = width: the full last column
    assert [a["iscrowd"] for a in anns] == [0, 0, 1, 0]
    assert [a["area"] for a in anns] == [1.0, 200.0, 121.0, 38.0 * 28.0]
    assert all(a["segmentation"] == [] for a in anns)
    _resolve_all(out)


def test_voc_deterministic_and_clips(voc: Path, tmp_path: Path) -> None:
    xml = voc / "Annotations" / "2008_000003.xml"
    xml.write_text(_voc_xml("2008_000003.jpg", (16, 16), [("cat", (0, 2, 20, 16), 0)]))
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    summary = import_voc(voc, first)
    import_voc(voc, second)
    assert first.read_bytes() == second.read_bytes()
    assert "1 boxes clipped to the image" in summary
    assert _load(first)["annotations"][-1]["bbox"] == [0.0, 1.0, 16.0, 15.0]


def test_voc_malformed_xml(voc: Path, tmp_path: Path) -> None:
    (voc / "Annotations" / "2008_000002.xml").write_text("<annotation><object>\n<name>dog</name>")
    with pytest.raises(DataError, match=r"2008_000002\.xml: malformed XML at line 2"):
        import_voc(voc, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>", "<name>"),
        (
            "<annotation><object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>x</xmax><ymax>4</ymax></bndbox></object></annotation>",
            "not a number",
        ),
        (
            "<annotation><object><name>a</name><bndbox><xmin>9</xmin><ymin>1</ymin>"
            "<xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>",
            "xmax < xmin",
        ),
        ("<html></html>", "expected <annotation>"),
    ],
)
def test_voc_bad_fields(voc: Path, tmp_path: Path, xml: str, message: str) -> None:
    (voc / "Annotations" / "2008_000001.xml").write_text(xml)
    with pytest.raises(DataError, match=r"2008_000001\.xml") as info:
        import_voc(voc, tmp_path / "out.json")
    assert message in str(info.value)


def test_voc_missing_image_and_folders(voc: Path, tmp_path: Path) -> None:
    (voc / "JPEGImages" / "2008_000001.jpg").unlink()
    with pytest.raises(DataError, match=r"2008_000001\.xml: image not found"):
        import_voc(voc, tmp_path / "out.json")
    with pytest.raises(DataError, match="does not exist"):
        import_voc(tmp_path / "nope", tmp_path / "out.json")
    with pytest.raises(DataError, match="Annotations folder does not exist"):
        import_voc(tmp_path, tmp_path / "out.json")


# --- YOLO ------------------------------------------------------------------------------------


@pytest.fixture()
def yolo(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    _image(root / "images" / "train" / "a.jpg", 100, 50)
    _image(root / "images" / "train" / "c.jpg", 8, 8)  # no label file: no annotations
    _image(root / "images" / "val" / "b.png", 40, 40)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.5 0.1 0.5 0.5\n"
    )
    (root / "labels" / "val" / "b.txt").write_text("2 0.25 0.25 0.5 0.5\n")
    (root / "labels" / "val" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return root


@pytest.mark.parametrize(
    "names",
    [
        "names: [person, car, dog]\n",
        "names:\n  0: person\n  1: car\n  2: dog\n",
        None,  # classes.txt
    ],
)
def test_yolo_boxes_polygons_names(yolo: Path, tmp_path: Path, names: str | None) -> None:
    if names is None:
        (yolo / "classes.txt").write_text("person\ncar\ndog\n")
    else:
        (yolo / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n" + names)
    out = yolo / "annotations.json"
    summary = import_yolo(yolo, out)
    assert summary == (
        "yolo: 3 images, 3 annotations, 3 categories (1 polygons, 1 images without label file, "
        "1 label files without image ignored)"
    )
    data = _load(out)
    assert [(c["id"], c["name"]) for c in data["categories"]] == [
        (1, "person"),
        (2, "car"),
        (3, "dog"),
    ]
    assert [i["file_name"] for i in data["images"]] == [
        "images/train/a.jpg",
        "images/train/c.jpg",
        "images/val/b.png",
    ]
    box, polygon, other = data["annotations"]
    assert (box["image_id"], box["category_id"]) == (1, 1)
    assert box["bbox"] == pytest.approx([40.0, 15.0, 20.0, 20.0])
    assert box["area"] == pytest.approx(400.0)
    assert box["segmentation"] == []
    assert (polygon["image_id"], polygon["category_id"]) == (1, 2)
    assert polygon["segmentation"] == [pytest.approx([10.0, 5.0, 50.0, 5.0, 50.0, 25.0])]
    assert polygon["bbox"] == pytest.approx([10.0, 5.0, 40.0, 20.0])
    assert polygon["area"] == pytest.approx(400.0)
    assert (other["image_id"], other["category_id"]) == (3, 3)
    assert other["bbox"] == pytest.approx([0.0, 0.0, 20.0, 20.0])
    _resolve_all(out)


@pytest.mark.parametrize(
    ("lines", "where", "message"),
    [
        ("0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2\n", "a.txt:2", "got 4"),
        ("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.5 0.1 0.5 0.5 0.3\n", "a.txt:2", "got 8"),
        ("\n3 0.5 0.5 0.2 0.4\n", "a.txt:2", "class 3 is out of range 0..2"),
        ("-1 0.5 0.5 0.2 0.4\n", "a.txt:1", "out of range"),
        ("0 50 25 20 20\n", "a.txt:1", "normalised"),
        ("person 0.5 0.5 0.2 0.4\n", "a.txt:1", "non-numeric"),
        ("0 0.5 0.5 0 0.4\n", "a.txt:1", "zero width"),
    ],
)
def test_yolo_bad_lines(yolo: Path, tmp_path: Path, lines: str, where: str, message: str) -> None:
    (yolo / "data.yaml").write_text("names: [person, car, dog]\n")
    (yolo / "labels" / "train" / "a.txt").write_text(lines)
    with pytest.raises(DataError, match=re.escape(where)) as info:
        import_yolo(yolo, tmp_path / "out.json")
    assert message in str(info.value)


def test_yolo_names_errors(yolo: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no class names found; add data\.yaml"):
        import_yolo(yolo, tmp_path / "out.json")
    (yolo / "data.yaml").write_text("names: [a, b\n")
    with pytest.raises(DataError, match=r"data\.yaml: invalid YAML at line"):
        import_yolo(yolo, tmp_path / "out.json")
    (yolo / "data.yaml").write_text("names: {0: a, 2: b}\n")
    with pytest.raises(DataError, match="without gaps"):
        import_yolo(yolo, tmp_path / "out.json")


def test_yolo_unreadable_image(yolo: Path, tmp_path: Path) -> None:
    (yolo / "data.yaml").write_text("names: [person, car, dog]\n")
    (yolo / "images" / "train" / "c.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"c\.jpg: cannot read image"):
        import_yolo(yolo, tmp_path / "out.json")


# --- instance masks --------------------------------------------------------------------------


def _instances(height: int, width: int) -> dict[int, np.ndarray]:
    ring = np.zeros((height, width), bool)
    ring[2:10, 3:12] = True
    ring[4:7, 5:9] = False  # a hole
    block = np.zeros((height, width), bool)
    block[11:15, 13:19] = True
    pixel = np.zeros((height, width), bool)
    pixel[0, 19] = True
    return {1: ring, 2: block, 3: pixel}


def _label_map(instances: dict[int, np.ndarray], dtype: type = np.uint8) -> np.ndarray:
    shape = next(iter(instances.values())).shape
    label_map = np.zeros(shape, dtype)
    for value, mask in instances.items():
        label_map[mask] = value
    return label_map


@pytest.mark.filterwarnings(_DECODE_WARNING)
def test_masks_rle_roundtrip_pennfudan(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    root = tmp_path / "PennFudanPed"
    instances = _instances(16, 20)
    _image(root / "PNGImages" / "FudanPed00001.png", 20, 16)
    (root / "PedMasks").mkdir(parents=True)
    palette_mask = Image.fromarray(_label_map(instances))
    palette_mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    assert palette_mask.mode == "P"
    palette_mask.save(root / "PedMasks" / "FudanPed00001_mask.png")
    _image(root / "PNGImages" / "FudanPed00002.png", 20, 16)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(root / "PedMasks" / "FudanPed00002_mask.png")

    out = root / "gt.json"
    assert import_masks(root, out, label="person") == "masks: 2 images, 3 annotations, 1 category"
    data = _load(out)
    assert data["categories"] == [{"id": 1, "name": "person", "supercategory": ""}]
    anns = data["annotations"]
    assert [a["image_id"] for a in anns] == [1, 1, 1]
    for ann, (_, expected) in zip(anns, sorted(instances.items()), strict=True):
        decoded = mask_utils.decode(ann["segmentation"])
        assert decoded.shape == (16, 20)
        np.testing.assert_array_equal(decoded.astype(bool), expected)
        assert ann["area"] == float(expected.sum())
        assert isinstance(ann["segmentation"]["counts"], str)
    assert anns[0]["bbox"] == [3.0, 2.0, 9.0, 8.0]
    assert anns[0]["area"] == 9 * 8 - 4 * 3
    assert anns[1]["bbox"] == [13.0, 11.0, 6.0, 4.0]
    assert anns[2]["bbox"] == [19.0, 0.0, 1.0, 1.0]
    _resolve_all(out)


@pytest.mark.filterwarnings(_DECODE_WARNING)
def test_masks_images_masks_layout_16bit(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    root = tmp_path / "ds"
    _image(root / "images" / "x.jpg", 20, 16)
    instances = _instances(16, 20)
    instances = {300: instances[1], 1000: instances[2]}
    (root / "masks").mkdir(parents=True)
    Image.fromarray(_label_map(instances, np.uint16)).save(root / "masks" / "x.png")
    out = tmp_path / "elsewhere" / "gt.json"
    import_masks(root, out)
    data = _load(out)
    assert data["images"][0]["file_name"] == "../ds/images/x.jpg"
    assert data["categories"][0]["name"] == "object"
    decoded = [mask_utils.decode(a["segmentation"]).astype(bool) for a in data["annotations"]]
    np.testing.assert_array_equal(decoded[0], instances[300])
    np.testing.assert_array_equal(decoded[1], instances[1000])


def test_masks_errors(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _image(root / "PNGImages" / "a.png", 20, 16)
    (root / "PedMasks").mkdir(parents=True)
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(root / "PedMasks" / "a_mask.png")
    with pytest.raises(DataError, match=r"a_mask\.png: mask is 20x10 but image .*a\.png is 20x16"):
        import_masks(root, tmp_path / "out.json")
    (root / "PedMasks" / "a_mask.png").unlink()
    with pytest.raises(DataError, match=r"a\.png: no mask found"):
        import_masks(root, tmp_path / "out.json")
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(root / "PedMasks" / "a_mask.png")
    with pytest.raises(DataError, match="mode RGB"):
        import_masks(root, tmp_path / "out.json")
    with pytest.raises(DataError, match="expected an image folder and a mask folder"):
        import_masks(tmp_path, tmp_path / "out.json")
    with pytest.raises(ConfigError, match="--label"):
        import_masks(root, tmp_path / "out.json", label=" ")


# --- CLI -------------------------------------------------------------------------------------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detect", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_import_voc(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli" / "voc.json"
    result = _cli("import", "voc", voc, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "voc: 3 images, 4 annotations, 3 categories (1 difficult marked iscrowd)",
        f"wrote {out}",
    ]
    assert len(_load(out)["images"]) == 3


def test_cli_import_missing_dir(tmp_path: Path) -> None:
    result = _cli("import", "voc", tmp_path / "missing", "--out", tmp_path / "x.json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0]

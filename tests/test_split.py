"""split_coco: by-image, disjoint, exhaustive, deterministic, path-preserving, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detect.data.split import split_coco, split_counts
from detect.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _write_gt(root: Path, n: int = 10, name: str = "gt.json") -> Path:
    """A COCO JSON with ``n`` images (real files under root/images) and 0-2 annotations each."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        file_name = f"images/{i:03d}.jpg"
        (root / file_name).write_bytes(b"jpeg")
        image_id = 100 + 7 * i  # ids need not be 1..N
        images.append({"id": image_id, "file_name": file_name, "width": 32, "height": 24})
        for _ in range(i % 3):  # images 0, 3, 6, 9 have no annotations
            annotations.append(
                {
                    "id": 1000 + len(annotations),
                    "image_id": image_id,
                    "category_id": 1 + len(annotations) % 2,
                    "bbox": [1.0, 2.0, 3.0, 4.0],
                    "area": 12.0,
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    data = {
        "info": {"description": "test"},
        "licenses": [{"id": 1, "name": "CC"}],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    gt = root / name
    gt.write_text(json.dumps(data, indent=2))
    return gt


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_default_split_partitions_images(tmp_path: Path) -> None:
    gt = _write_gt(tmp_path)
    source = _load(gt)
    paths = split_coco(gt, [0.6, 0.2, 0.2])
    assert paths == [tmp_path / "train.json", tmp_path / "val.json", tmp_path / "test.json"]
    parts = [_load(p) for p in paths]
    assert [len(p["images"]) for p in parts] == [6, 2, 2]
    ids = [{i["id"] for i in p["images"]} for p in parts]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert ids[0] | ids[1] | ids[2] == {i["id"] for i in source["images"]}
    for part, part_ids in zip(parts, ids, strict=True):
        expected = [a for a in source["annotations"] if a["image_id"] in part_ids]
        assert part["annotations"] == expected  # same dicts, same ids, same order
        assert part["categories"] == source["categories"]
        assert part["info"] == source["info"]
        assert part["licenses"] == source["licenses"]
        assert part["images"] == [i for i in source["images"] if i["id"] in part_ids]
    assert sum(len(p["annotations"]) for p in parts) == len(source["annotations"])


def test_two_ratios_and_cli_compatible_list(tmp_path: Path) -> None:
    gt = _write_gt(tmp_path, n=5)
    paths = split_coco(gt, [0.5, 0.5], seed=1)
    assert [p.name for p in paths] == ["train.json", "val.json"]
    assert [len(_load(p)["images"]) for p in paths] == [3, 2]
    assert not (tmp_path / "test.json").exists()


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    gt = _write_gt(tmp_path, n=20)
    first = [p.read_bytes() for p in split_coco(gt, [0.6, 0.2, 0.2], seed=3)]
    second = [p.read_bytes() for p in split_coco(gt, [0.6, 0.2, 0.2], seed=3)]
    assert first == second
    other = [p.read_bytes() for p in split_coco(gt, [0.6, 0.2, 0.2], seed=4)]
    assert other != first
    assignment = [sorted(i["id"] for i in json.loads(b)["images"]) for b in first]
    assignment_other = [sorted(i["id"] for i in json.loads(b)["images"]) for b in other]
    assert assignment != assignment_other


def test_out_dir_rewrites_file_names(tmp_path: Path) -> None:
    gt = _write_gt(tmp_path / "data")
    out_dir = tmp_path / "splits" / "v1"
    paths = split_coco(gt, [0.6, 0.2, 0.2], out_dir=out_dir)
    assert all(p.parent == out_dir for p in paths)
    names = []
    for path in paths:
        for image in _load(path)["images"]:
            assert image["file_name"].startswith("../../data/images/")
            assert (path.parent / image["file_name"]).is_file()
            names.append(image["file_name"])
    assert len(names) == 10
    assert not (tmp_path / "data" / "train.json").exists()


@pytest.mark.parametrize(
    "ratios",
    [[0.5, 0.6], [1.0], [0.25, 0.25, 0.25, 0.25], [1.2, -0.2], [0.7, 0.3, 0.0], [0.5, 0.4]],
)
def test_bad_ratios(tmp_path: Path, ratios: list[float]) -> None:
    gt = _write_gt(tmp_path)
    with pytest.raises(ConfigError, match="--ratios"):
        split_coco(gt, ratios)


def test_too_few_images(tmp_path: Path) -> None:
    gt = _write_gt(tmp_path, n=2)
    with pytest.raises(ConfigError, match="has 2 image"):
        split_coco(gt, [0.6, 0.2, 0.2])


def test_counts_every_split_non_empty() -> None:
    assert split_counts(10, [0.6, 0.2, 0.2]) == [6, 2, 2]
    assert split_counts(3, [0.8, 0.1, 0.1]) == [1, 1, 1]
    assert split_counts(7, [0.98, 0.01, 0.01]) == [5, 1, 1]
    for n in range(3, 40):
        counts = split_counts(n, [0.7, 0.15, 0.15])
        assert sum(counts) == n and min(counts) >= 1


def test_bad_input_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.json not found"):
        split_coco(tmp_path / "missing.json", [0.5, 0.5])
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "images": [\n    {"id": 1,}\n  ]\n}\n')
    with pytest.raises(DataError, match=r"bad\.json is not valid JSON \(line 3, column 14"):
        split_coco(bad, [0.5, 0.5])
    bad.write_text('{"annotations": []}')
    with pytest.raises(DataError, match=r"bad\.json: missing the 'images' list"):
        split_coco(bad, [0.5, 0.5])
    cats = '"categories": [{"id": 1, "name": "a"}]'
    bad.write_text(
        '{"images": [{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}], ' + cats + "}"
    )
    with pytest.raises(DataError, match="appears twice"):
        split_coco(bad, [0.5, 0.5])
    bad.write_text(
        '{"images": [{"id": 1, "file_name": "a"}, {"id": 2, "file_name": "b"}],'
        ' "annotations": [{"id": 5, "image_id": 3}], ' + cats + "}"
    )
    with pytest.raises(DataError, match="image_id 3"):
        split_coco(bad, [0.5, 0.5])


def test_refuses_to_overwrite_gt(tmp_path: Path) -> None:
    gt = _write_gt(tmp_path, name="train.json")
    with pytest.raises(ConfigError, match="overwrite"):
        split_coco(gt, [0.5, 0.5])
    assert len(split_coco(gt, [0.5, 0.5], out_dir=tmp_path / "out")) == 2


def test_cli_import_then_split(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for k in range(4):
        Image.new("RGB", (12, 10)).save(root / "JPEGImages" / f"{k}.jpg")
        (root / "Annotations" / f"{k}.xml").write_text(
            f"<annotation><filename>{k}.jpg</filename><size><width>12</width>"
            "<height>10</height></size><object><name>cat</name><difficult>0</difficult>"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
            "</object></annotation>"
        )
    gt = tmp_path / "coco" / "gt.json"

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "detect", *map(str, args)]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)

    result = cli("import", "voc", root, "--out", gt)
    assert result.returncode == 0, result.stderr
    result = cli("split", gt, "--ratios", "0.5", "0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {gt.parent / 'train.json'}",
        f"wrote {gt.parent / 'val.json'}",
    ]
    for name in ("train.json", "val.json"):
        for image in _load(gt.parent / name)["images"]:
            assert (gt.parent / image["file_name"]).is_file()
    result = cli("split", tmp_path / "nope.json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1

"""Convert Pascal VOC, YOLO (Ultralytics) and instance-mask-PNG datasets to COCO JSON.

Every importer writes one COCO JSON file and returns a one-line human summary. Conventions of the
written file (the project's COCO conventions):

* ``images[].file_name`` is relative to the folder of the written JSON (POSIX separators), so the
  JSON and its images can be moved together; images are sorted by ``file_name`` and numbered
  ``id = 1..N`` in that order.
* ``categories[].id`` is ``1..K``; ``annotations[].id`` is ``1..M`` in image order.
* ``bbox`` is COCO ``[x, y, w, h]`` in pixels (floats) where ``(x, y)`` is the top-left corner of
  the top-left pixel: a box covering pixel columns ``c0..c1`` (inclusive) has ``x = c0`` and
  ``w = c1 - c0 + 1``. ``area`` is a float in square pixels.
* ``segmentation`` is ``[]`` for box-only annotations, a list of flat polygons
  ``[[x1, y1, x2, y2, ...]]`` in pixels, or compressed RLE ``{"size": [H, W], "counts": str}``.
* The same input always gives a byte-identical file (no timestamps, sorted inputs).

Input problems a user can fix raise `detect.errors.DataError` naming the file (and line) at fault.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from detect.errors import ConfigError, DataError, install_extra
from detect.runtime.sources import IMAGE_SUFFIXES, is_image_file
from detect.settings import FLAGS, Spelling, output_file, setting

_COORD_TOLERANCE = 0.01
"""YOLO normalised coordinates may overshoot [0, 1] by this much (then they are clipped)."""


# --- shared helpers --------------------------------------------------------------------------


def _require_dir(path: Path, what: str, hint: str = "") -> None:
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist{hint}")
    if not path.is_dir():
        raise DataError(f"{path}: {what} is not a folder{hint}")


def _image_size(path: Path) -> tuple[int, int]:
    """Return ``(width, height)`` read from the image header (pixels are not decoded)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{path}: cannot read image ({exc}); replace the file or remove it (and its "
            "annotations) from the dataset"
        ) from None
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: image has size {width}x{height}; replace the file")
    return int(width), int(height)


def _relative_file_name(image: Path, json_dir: Path) -> str:
    """``image`` relative to ``json_dir`` with POSIX separators (absolute if no relative path)."""
    image_abs = os.path.abspath(image)
    try:
        rel = os.path.relpath(image_abs, os.path.abspath(json_dir))
    except ValueError:  # another drive on Windows: no relative path exists
        return Path(image_abs).as_posix()
    return Path(rel).as_posix()


def _categories(names: Iterable[str]) -> list[dict[str, Any]]:
    return [{"id": i, "name": name, "supercategory": ""} for i, name in enumerate(names, start=1)]


def _check_out(out: Path) -> None:
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a JSON file path such as {out}/gt.json")


def _write_coco(
    out: Path,
    description: str,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
) -> None:
    """Write a COCO JSON deterministically (compact, key order fixed), creating parent folders.

    The file is written to a temporary name first and renamed, so an interrupted run never leaves
    a truncated JSON behind.
    """
    data = {
        "info": {"description": description},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    text = json.dumps(data, separators=(",", ":"), allow_nan=False) + "\n"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        raise DataError(f"{out}: cannot write the COCO JSON ({exc.strerror or exc})") from None


def _assign_ids(
    entries: list[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Number images 1..N (sorted by file_name) and annotations 1..M in image order.

    ``entries`` holds ``(image_without_id, annotations_without_ids)`` pairs.
    """
    entries = sorted(entries, key=lambda entry: entry[0]["file_name"])
    names = [image["file_name"] for image, _ in entries]
    for previous, current in itertools.pairwise(names):
        if previous == current:
            raise DataError(
                f"image {current} is listed twice in the source dataset; remove the duplicate"
            )
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (image, anns) in enumerate(entries, start=1):
        images.append({"id": image_id, **image})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return images, annotations


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {'categories' if word == 'category' else word + 's'}"


def _summary(kind: str, images: int, annotations: int, categories: int, notes: list[str]) -> str:
    text = (
        f"{kind}: {_plural(images, 'image')}, {_plural(annotations, 'annotation')}, "
        f"{_plural(categories, 'category')}"
    )
    if notes:
        text += f" ({', '.join(notes)})"
    return text


# --- Pascal VOC ------------------------------------------------------------------------------


def _xml_text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _xml_number(element: ET.Element, tag: str, xml_path: Path, where: str) -> float | None:
    text = _xml_text(element, tag)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{xml_path}: {where}<{tag}> is {text!r}, not a number; fix the XML"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{xml_path}: {where}<{tag}> is {text!r}; give a finite number")
    return value


def _find_voc_image(image_dir: Path, xml_path: Path, filename: str | None) -> Path:
    """The image for one VOC XML: ``<filename>`` if present, else by stem with any image suffix."""
    candidates: list[Path] = []
    if filename:
        candidates.append(image_dir / Path(filename).name)
    stems = [Path(filename).stem] if filename else []
    stems.append(xml_path.stem)
    for stem in dict.fromkeys(stems):
        for suffix in IMAGE_SUFFIXES:
            candidates.extend(
                [image_dir / f"{stem}{suffix}", image_dir / f"{stem}{suffix.upper()}"]
            )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{xml_path}: image not found: looked for {candidates[0].name} in {image_dir}; add the "
        "image or remove the XML file"
    )


def _voc_object(
    obj: ET.Element, index: int, xml_path: Path, width: int, height: int
) -> tuple[str, list[float], bool, bool]:
    """Parse one ``<object>``: (name, COCO bbox, difficult, clipped).

    VOC boxes are 1-based inclusive pixel indices, so ``xmin = 1`` is the first column:
    ``x = xmin - 1``, ``w = xmax - xmin + 1`` (as Detectron2 converts them). The box is then
    clipped to the image.
    """
    where = f"<object> #{index + 1} "
    name = _xml_text(obj, "name")
    if name is None:
        raise DataError(f"{xml_path}: {where}has no <name>; add the class name")
    box = obj.find("bndbox")
    if box is None:
        raise DataError(f"{xml_path}: {where}({name}) has no <bndbox>; add one or remove it")
    coords: dict[str, float] = {}
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        value = _xml_number(box, tag, xml_path, f"{where}<bndbox>")
        if value is None:
            raise DataError(f"{xml_path}: {where}({name}) <bndbox> has no <{tag}>; add it")
        coords[tag] = value
    if coords["xmax"] < coords["xmin"] or coords["ymax"] < coords["ymin"]:
        raise DataError(
            f"{xml_path}: {where}({name}) has xmax < xmin or ymax < ymin "
            f"({coords['xmin']:g}, {coords['ymin']:g}, {coords['xmax']:g}, {coords['ymax']:g}); "
            "fix the box"
        )
    x0, y0 = coords["xmin"] - 1.0, coords["ymin"] - 1.0
    x1, y1 = coords["xmax"], coords["ymax"]  # exclusive right/bottom edge in pixel units
    cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        raise DataError(
            f"{xml_path}: {where}({name}) lies outside the {width}x{height} image; fix the box "
            "or the <size>"
        )
    difficult_text = _xml_text(obj, "difficult") or "0"
    try:
        difficult = int(float(difficult_text)) != 0
    except ValueError:
        raise DataError(
            f"{xml_path}: {where}({name}) <difficult> is {difficult_text!r}; use 0 or 1"
        ) from None
    return name, [cx0, cy0, cx1 - cx0, cy1 - cy0], difficult, clipped


def import_voc(src: Path, out: Path) -> str:
    """Convert a Pascal VOC dataset (``src/Annotations/*.xml`` + ``src/JPEGImages/*``) to COCO.

    Categories are the sorted unique ``<name>`` values. Boxes are converted from VOC's 1-based
    inclusive pixel indices to COCO ``[x, y, w, h]`` (``x = xmin - 1``, ``w = xmax - xmin + 1``)
    and clipped to the image. ``<difficult>1</difficult>`` objects get ``iscrowd = 1`` so training
    and COCO evaluation treat them as ignored regions. ``segmentation`` is ``[]`` (boxes only).
    Width and height come from ``<size>``, or from the image header when absent or 0. Only images
    with an XML file are imported.
    """
    src, out = Path(src), Path(out)
    _check_out(out)
    hint = " (for VOCdevkit pass the year folder, e.g. VOCdevkit/VOC2012)"
    _require_dir(src, "VOC dataset folder")
    ann_dir, image_dir = src / "Annotations", src / "JPEGImages"
    _require_dir(ann_dir, "VOC Annotations folder", hint)
    _require_dir(image_dir, "VOC JPEGImages folder", hint)
    xml_paths = sorted(p for p in ann_dir.glob("*.xml") if p.is_file())
    if not xml_paths:
        raise DataError(f"{ann_dir}: no .xml annotation files found; check the dataset folder")

    parsed: list[tuple[dict[str, Any], list[tuple[str, list[float], bool]]]] = []
    clipped_count = 0
    for xml_path in xml_paths:
        try:
            root = ET.parse(xml_path).getroot()
        except ET.ParseError as exc:
            line, column = exc.position
            raise DataError(
                f"{xml_path}: malformed XML at line {line}, column {column + 1}; fix or remove "
                "the file"
            ) from None
        except OSError as exc:
            raise DataError(f"{xml_path}: cannot read ({exc.strerror or exc})") from None
        if root.tag != "annotation":
            raise DataError(
                f"{xml_path}: root element is <{root.tag}>, expected <annotation> (not a VOC "
                "annotation file); fix or remove it"
            )
        image_path = _find_voc_image(image_dir, xml_path, _xml_text(root, "filename"))
        size = root.find("size")
        width = height = 0.0
        if size is not None:
            width = _xml_number(size, "width", xml_path, "<size>") or 0.0
            height = _xml_number(size, "height", xml_path, "<size>") or 0.0
        if width <= 0 or height <= 0:
            w, h = _image_size(image_path)
        else:
            w, h = round(width), round(height)
        objects = []
        for index, obj in enumerate(root.findall("object")):
            name, bbox, difficult, clipped = _voc_object(obj, index, xml_path, w, h)
            clipped_count += clipped
            objects.append((name, bbox, difficult))
        image = {"file_name": _relative_file_name(image_path, out.parent), "width": w, "height": h}
        parsed.append((image, objects))

    names = sorted({name for _, objects in parsed for name, _, _ in objects})
    category_ids = {name: i for i, name in enumerate(names, start=1)}
    entries = []
    difficult_count = 0
    for image, objects in parsed:
        anns = []
        for name, bbox, difficult in objects:
            difficult_count += difficult
            anns.append(
                {
                    "category_id": category_ids[name],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(difficult),
                    "segmentation": [],
                }
            )
        entries.append((image, anns))
    images, annotations = _assign_ids(entries)
    description = "converted from Pascal VOC by `detect import voc`"
    _write_coco(out, description, images, annotations, _categories(names))
    notes = [f"{difficult_count} difficult marked iscrowd"]
    if clipped_count:
        notes.append(f"{clipped_count} boxes clipped to the image")
    return _summary("voc", len(images), len(annotations), len(names), notes)


# --- YOLO (Ultralytics) ----------------------------------------------------------------------


def _yolo_names(src: Path) -> tuple[list[str], Path]:
    """Class names (index k -> names[k]) from ``data.yaml`` (``names:``) or ``classes.txt``."""
    for yaml_name in ("data.yaml", "data.yml", "dataset.yaml"):
        yaml_path = src / yaml_name
        if yaml_path.is_file():
            break
    else:
        yaml_path = None
    if yaml_path is not None:
        try:
            data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise DataError(f"{yaml_path}: invalid YAML{where}; fix the file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{yaml_path}: cannot read ({exc})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if names is not None:
            return _names_from_yaml(names, yaml_path), yaml_path
    classes_path = src / "classes.txt"
    if classes_path.is_file():
        try:
            lines = classes_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{classes_path}: cannot read ({exc})") from None
        while lines and not lines[-1].strip():
            lines.pop()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                raise DataError(
                    f"{classes_path}: line {number} is empty; give one class name per line "
                    "(line k+1 is class k)"
                )
        if not lines:
            raise DataError(f"{classes_path}: no class names; give one class name per line")
        return [line.strip() for line in lines], classes_path
    raise DataError(
        f"{src}: no class names found; add data.yaml with `names: [cat, dog]` (or "
        "`names: {0: cat, 1: dog}`) or classes.txt with one name per line"
    )


def _names_from_yaml(names: Any, yaml_path: Path) -> list[str]:
    if isinstance(names, list):
        result = [str(name) for name in names]
    elif isinstance(names, dict):
        by_index: dict[int, str] = {}
        for key, name in names.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise DataError(
                    f"{yaml_path}: `names` key {key!r} is not a class index; use "
                    "`names: {0: cat, 1: dog}`"
                ) from None
            by_index[index] = str(name)
        if sorted(by_index) != list(range(len(by_index))):
            raise DataError(
                f"{yaml_path}: `names` indices are {sorted(by_index)}; they must be 0..K-1 "
                "without gaps"
            )
        result = [by_index[i] for i in range(len(by_index))]
    else:
        raise DataError(
            f"{yaml_path}: `names` must be a list or an {{index: name}} mapping, got "
            f"{type(names).__name__}"
        )
    if not result:
        raise DataError(f"{yaml_path}: `names` is empty; list the class names")
    duplicates = sorted({name for name in result if result.count(name) > 1})
    if duplicates:
        raise DataError(f"{yaml_path}: duplicate class names {duplicates}; make names unique")
    return result


def _polygon_area(xy: np.ndarray) -> float:
    """Shoelace area of a closed polygon given as an (N, 2) array of pixel coordinates."""
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _yolo_line(
    fields: list[str], where: str, num_classes: int, names_file: Path, width: int, height: int
) -> dict[str, Any]:
    """One YOLO label line -> COCO annotation fields (without ids).

    Box: ``cls cx cy w h`` normalised to [0, 1] by image width/height. Segment:
    ``cls x1 y1 ... xn yn`` (n >= 3), normalised. Coordinates are clipped to the image and
    rounded to 1/1000 pixel.
    """
    count = len(fields)
    if count != 5 and (count < 7 or count % 2 == 0):
        raise DataError(
            f"{where}: expected 5 fields `class cx cy w h` or an odd number >= 7 "
            f"`class x1 y1 x2 y2 x3 y3 ...`, got {count}; fix the line"
        )
    try:
        class_value = float(fields[0])
        values = np.array([float(v) for v in fields[1:]], dtype=np.float64)
    except ValueError:
        raise DataError(
            f"{where}: non-numeric field in {' '.join(fields)!r}; fix the line"
        ) from None
    if not class_value.is_integer():
        raise DataError(f"{where}: class {fields[0]!r} is not an integer index; fix the line")
    cls = int(class_value)
    if not 0 <= cls < num_classes:
        raise DataError(
            f"{where}: class {cls} is out of range 0..{num_classes - 1} ({num_classes} names in "
            f"{names_file.name}); fix the label or add the class name"
        )
    if not np.all(np.isfinite(values)):
        raise DataError(f"{where}: coordinates must be finite numbers; fix the line")
    if values.min() < -_COORD_TOLERANCE or values.max() > 1.0 + _COORD_TOLERANCE:
        raise DataError(
            f"{where}: coordinates must be normalised to 0-1 (got {values.min():g}.."
            f"{values.max():g}; pixel coordinates?); divide x by the image width and y by its "
            "height"
        )
    values = np.clip(values, 0.0, 1.0)
    scale = np.array([width, height], dtype=np.float64)
    if count == 5:
        cx, cy, bw, bh = values
        x0, y0 = max(cx - bw / 2, 0.0) * width, max(cy - bh / 2, 0.0) * height
        x1, y1 = min(cx + bw / 2, 1.0) * width, min(cy + bh / 2, 1.0) * height
        x0, y0, x1, y1 = (round(float(v), 3) for v in (x0, y0, x1, y1))
        if x1 <= x0 or y1 <= y0:
            raise DataError(f"{where}: box has zero width or height; fix or remove the line")
        bbox = [x0, y0, round(x1 - x0, 3), round(y1 - y0, 3)]
        return {
            "category_id": cls + 1,
            "bbox": bbox,
            "area": round(bbox[2] * bbox[3], 3),
            "iscrowd": 0,
            "segmentation": [],
        }
    xy = np.round(values.reshape(-1, 2) * scale, 3)
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    area = round(_polygon_area(xy), 3)
    if x1 <= x0 or y1 <= y0 or area <= 0:
        raise DataError(f"{where}: polygon has zero area; fix or remove the line")
    return {
        "category_id": cls + 1,
        "bbox": [float(x0), float(y0), round(float(x1 - x0), 3), round(float(y1 - y0), 3)],
        "area": area,
        "iscrowd": 0,
        "segmentation": [[float(v) for v in xy.ravel()]],
    }


def import_yolo(src: Path, out: Path) -> str:
    """Convert an Ultralytics YOLO dataset to COCO.

    Layout: ``src/images/**/*.{jpg,jpeg,png,bmp}`` with labels in ``src/labels/**/*.txt`` at the
    mirrored path (``images/train/a.jpg`` <-> ``labels/train/a.txt``); class names from
    ``src/data.yaml`` (``names:`` list or ``{index: name}`` mapping) or ``src/classes.txt``.
    Each label line is a box ``cls cx cy w h`` or a segment ``cls x1 y1 x2 y2 x3 y3 ...``, all
    normalised to [0, 1] by the image width/height; segments become pixel polygons with their
    bounding box and polygon area. YOLO class k becomes category id k + 1. An image without a
    label file (or with an empty one) is imported with no annotations.
    """
    src, out = Path(src), Path(out)
    _check_out(out)
    _require_dir(src, "YOLO dataset folder")
    image_root, label_root = src / "images", src / "labels"
    _require_dir(image_root, "YOLO images folder", " (expected src/images/ and src/labels/)")
    _require_dir(label_root, "YOLO labels folder", " (expected src/images/ and src/labels/)")
    names, names_file = _yolo_names(src)
    image_paths = sorted(
        (p for p in image_root.rglob("*") if is_image_file(p)),
        key=lambda p: p.relative_to(image_root).as_posix(),
    )
    if not image_paths:
        raise DataError(
            f"{image_root}: no images ({', '.join(IMAGE_SUFFIXES)}) found; check the folder"
        )
    entries = []
    unlabeled = 0
    polygons = 0
    used_labels: set[Path] = set()
    for image_path in image_paths:
        width, height = _image_size(image_path)
        label_path = (label_root / image_path.relative_to(image_root)).with_suffix(".txt")
        used_labels.add(label_path)
        anns = []
        if label_path.is_file():
            try:
                lines = label_path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"{label_path}: cannot read ({exc})") from None
            for number, line in enumerate(lines, start=1):
                fields = line.split()
                if not fields:
                    continue
                ann = _yolo_line(
                    fields, f"{label_path}:{number}", len(names), names_file, width, height
                )
                polygons += bool(ann["segmentation"])
                anns.append(ann)
        else:
            unlabeled += 1
        image = {
            "file_name": _relative_file_name(image_path, out.parent),
            "width": width,
            "height": height,
        }
        entries.append((image, anns))
    images, annotations = _assign_ids(entries)
    description = "converted from YOLO by `detect import yolo`"
    _write_coco(out, description, images, annotations, _categories(names))
    notes = [f"{polygons} polygons", f"{unlabeled} images without label file"]
    orphans = sum(1 for p in label_root.rglob("*.txt") if p.is_file() and p not in used_labels)
    if orphans:
        notes.append(f"{orphans} label files without image ignored")
    return _summary("yolo", len(images), len(annotations), len(names), notes)


# --- instance-mask PNGs ----------------------------------------------------------------------

_MASK_LAYOUTS = (("PNGImages", "PedMasks"), ("images", "masks"))


def _read_label_map(mask_path: Path) -> np.ndarray:
    """A single-channel instance label map (palette, 8-bit or 16-bit PNG) as a 2-D int array."""
    try:
        with Image.open(mask_path) as image:
            mode = image.mode
            if mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
                raise DataError(
                    f"{mask_path}: mask has mode {mode}; it must be a single-channel label map "
                    "(palette, 8- or 16-bit grey PNG) with 0 = background and one value per "
                    "instance"
                )
            array = np.array(image)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{mask_path}: cannot read mask ({exc}); replace the file") from None
    if array.ndim != 2:
        raise DataError(f"{mask_path}: mask has shape {array.shape}; it must be single-channel")
    return array.astype(np.int64)


def import_masks(src: Path, out: Path, label: str = "object") -> str:
    """Convert a dataset of instance label-map PNGs (Penn-Fudan style) to COCO.

    Layout: ``src/PNGImages`` + ``src/PedMasks`` or ``src/images`` + ``src/masks``; a mask matches
    the image with the same stem, optionally with a ``_mask`` suffix (``FudanPed00001.png`` <->
    ``FudanPed00001_mask.png``). Each mask stores one integer per instance, 0 = background. Every
    non-zero value becomes one instance of the single category ``label`` with compressed-RLE
    segmentation, the tight pixel box (``x = min column``, ``w = max column - min column + 1``)
    and ``area`` = its pixel count. Every image needs a mask of the same size.
    """
    src, out = Path(src), Path(out)
    _check_out(out)
    if not label or not label.strip():
        raise ConfigError("--label must be a non-empty class name")
    _require_dir(src, "mask dataset folder")
    for image_name, mask_name in _MASK_LAYOUTS:
        if (src / image_name).is_dir() and (src / mask_name).is_dir():
            image_dir, mask_dir = src / image_name, src / mask_name
            break
    else:
        layouts = " or ".join(f"{a}/ + {b}/" for a, b in _MASK_LAYOUTS)
        raise DataError(f"{src}: expected an image folder and a mask folder ({layouts})")
    try:
        from detect.data.coco import mask_annotation
    except ImportError:
        raise ConfigError(
            "`detect import masks` needs pycocotools for RLE; install the `train` extra: "
            + install_extra("train")
        ) from None

    image_paths = sorted((p for p in image_dir.iterdir() if is_image_file(p)), key=lambda p: p.name)
    if not image_paths:
        raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    masks: dict[str, Path] = {}
    for mask_path in sorted(mask_dir.iterdir()):
        if not (mask_path.is_file() and mask_path.suffix.lower() == ".png"):
            continue
        stem = mask_path.stem
        stem = stem.removesuffix("_mask")
        if stem in masks:
            raise DataError(
                f"{mask_path}: a second mask for image stem {stem!r} (also {masks[stem].name}); "
                "keep one"
            )
        masks[stem] = mask_path
    stems = [p.stem for p in image_paths]
    duplicate = next((s for s in stems if stems.count(s) > 1), None)
    if duplicate is not None:
        raise DataError(
            f"{image_dir}: two images with stem {duplicate!r}; masks are matched by stem, rename "
            "one"
        )

    entries = []
    for image_path in image_paths:
        mask_path = masks.pop(image_path.stem, None)
        if mask_path is None:
            raise DataError(
                f"{image_path}: no mask found (looked for {image_path.stem}.png and "
                f"{image_path.stem}_mask.png in {mask_dir}); add the mask or remove the image"
            )
        width, height = _image_size(image_path)
        label_map = _read_label_map(mask_path)
        if label_map.shape != (height, width):
            raise DataError(
                f"{mask_path}: mask is {label_map.shape[1]}x{label_map.shape[0]} but image "
                f"{image_path} is {width}x{height}; masks must have the image's size"
            )
        anns = []
        for value in np.unique(label_map):
            if value == 0:
                continue
            anns.append({"category_id": 1, **mask_annotation(label_map == value)})
        image = {
            "file_name": _relative_file_name(image_path, out.parent),
            "width": width,
            "height": height,
        }
        entries.append((image, anns))
    if masks:
        orphan = next(iter(masks.values()))
        raise DataError(
            f"{orphan}: mask has no matching image in {image_dir} ({len(masks)} such masks); "
            "add the images or remove the masks"
        )
    images, annotations = _assign_ids(entries)
    description = "converted from instance masks by `detect import masks`"
    _write_coco(out, description, images, annotations, _categories([label.strip()]))
    return _summary("masks", len(images), len(annotations), 1, [])


# --- `detect import`'s settings --------------------------------------------------------------

FORMATS = ("voc", "yolo", "masks")
"""The source layouts: `import_voc`, `import_yolo`, `import_masks`."""


@dataclass(frozen=True)
class ImportSettings:
    """`detect import`'s settings: the source layout and folder, the COCO JSON to write
    (`json_path`) and the class name of a `masks` dataset."""

    format: str = setting("", "source layout", choices=FORMATS, positional=True)
    dir: Path | None = setting(None, "dataset root folder", positional=True)
    out: Path | None = setting(
        None, "output COCO JSON (default: DIR/annotations.json)", check=output_file
    )
    label: str = setting("object", "class name for `masks` (one class)")

    def validate(self, spell: Spelling | None = None) -> None:
        spell = spell or Spelling(ImportSettings, FLAGS)
        if self.format not in FORMATS or self.dir is None:
            raise spell.problem(
                f"give {spell('format')} ({', '.join(FORMATS)}) and {spell('dir')}, the "
                "dataset's folder"
            )

    @property
    def json_path(self) -> Path:
        """``out``, or ``annotations.json`` in the dataset's folder."""
        return self.out or Path(self.dir or ".") / "annotations.json"

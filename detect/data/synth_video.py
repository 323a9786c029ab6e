"""Synthetic surveillance clips with identities: `detect synth --video OUT.mp4`.

A static scene (the `detect.data.synth` background and lighting) crossed by shapes of the five
classes. Each object keeps its identity, class, look and depth for the whole clip and moves at a
constant velocity, bouncing off the frame edges; objects painted later hide those painted
earlier, so objects occlude one another. With ``degrade`` every frame gets surveillance-like
blur, noise, low light and JPEG artefacts.

Writes ``OUT.mp4`` (mp4v) and ``OUT.json``: COCO instances with one image per frame (``id`` =
frame index + 1, ``frame_index``, ``timestamp_ms``) and one annotation per visible object and
frame carrying ``track_id`` (the object's identity), the visible mask as RLE, its ``bbox`` and
``area``, and ``occlusion`` (the hidden fraction of the object). The same arguments give the
same clip.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.data.synth import (
    CLASSES,
    apply_lighting,
    degrade_image,
    random_shape,
    render_background,
    render_scene,
    sample_lighting,
    shape_mask,
)
from detect.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class Mover:
    """An object of the clip: its identity, look (a `Shape` at frame 0) and velocity (px/frame)."""

    track_id: int
    shape: Any
    vx: float
    vy: float

    def at(self, frame: int, width: int, height: int) -> Any:
        """The shape at ``frame``: moved along its velocity, reflected at the frame edges."""
        r = self.shape.radius
        return dataclasses.replace(
            self.shape,
            cx=_bounce(self.shape.cx + self.vx * frame, r, width - r),
            cy=_bounce(self.shape.cy + self.vy * frame, r, height - r),
        )


def _bounce(x: float, low: float, high: float) -> float:
    """``x`` folded into ``[low, high]`` as a ball bouncing between two walls."""
    span = high - low
    if span <= 0:
        return (low + high) / 2
    t = (x - low) % (2 * span)
    return low + (t if t <= span else 2 * span - t)


def movers(
    seed: int, objects: int, width: int, height: int, speed: float, street: bool = False
) -> list[Mover]:
    """``objects`` objects of random class, look, place and direction (``speed`` px/frame);
    ``street``: left or right, within 15 degrees of horizontal, as along a street."""
    rng = np.random.default_rng([seed, 1_000_003])
    size = min(width, height)
    out = []
    for track_id in range(1, objects + 1):
        shape = random_shape(rng, size)
        shape = dataclasses.replace(
            shape,
            radius=min(shape.radius, 0.18 * size),
            cx=float(rng.uniform(0, width)),
            cy=float(rng.uniform(0, height)),
        )
        heading = rng.uniform(0, 2 * math.pi)
        if street:
            heading = math.radians(rng.uniform(-15, 15)) + math.pi * (heading > math.pi)
        pace = speed * rng.uniform(0.5, 1.5)
        out.append(Mover(track_id, shape, pace * math.cos(heading), pace * math.sin(heading)))
    return out


def write_clip(
    out: Path,
    frames: int,
    seed: int,
    width: int = 320,
    height: int = 240,
    fps: float = 10.0,
    objects: int = 6,
    speed: float = 4.0,
    degrade: bool = False,
    street: bool = False,
) -> Path:
    """Write ``out`` (an .mp4) and its ground truth ``out.with_suffix('.json')``; the JSON path.
    ``street``: objects move left or right (`movers`).

    Raises `ConfigError` for out-of-range arguments and `DataError` when ``out`` cannot be
    written.
    """
    if frames < 1 or objects < 0 or width < 32 or height < 32 or not fps > 0 or speed < 0:
        raise ConfigError(
            "synth --video: need frames >= 1, objects >= 0, a size of at least 32 px, fps > 0 "
            "and speed >= 0"
        )
    from detect.data.coco import mask_to_rle

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"--video {out}: name an .mp4 file")
    rng = np.random.default_rng([seed, 7])
    scene = render_background(rng, height, width)
    lighting = sample_lighting(rng)
    cast = movers(seed, objects, width, height, speed, street)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out.parent}: cannot create it ({exc.strerror})") from None
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"{out}: cannot write an MP4 there; pass a writable path")
    images, annotations = [], []
    try:
        for index in range(frames):
            shapes = [m.at(index, width, height) for m in cast]
            image, visible = render_scene(scene, shapes)
            image = apply_lighting(image, lighting)
            if degrade:
                image = degrade_image(np.random.default_rng([seed, 11, index]), image)
            writer.write(np.ascontiguousarray(image[:, :, ::-1]))
            images.append(
                {
                    "id": index + 1,
                    "file_name": f"{out.name}#{index}",
                    "frame_index": index,
                    "timestamp_ms": round(1000 * index / fps, 3),
                    "width": width,
                    "height": height,
                }
            )
            for mover, shape, mask in zip(cast, shapes, visible, strict=True):
                area = int(np.count_nonzero(mask))
                if not area:
                    continue
                full = int(np.count_nonzero(shape_mask(shape, height, width)))
                rows = np.flatnonzero(mask.any(axis=1))
                cols = np.flatnonzero(mask.any(axis=0))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index + 1,
                        "category_id": shape.category_id,
                        "track_id": mover.track_id,
                        "bbox": [
                            float(cols[0]),
                            float(rows[0]),
                            float(cols[-1] - cols[0] + 1),
                            float(rows[-1] - rows[0] + 1),
                        ],
                        "area": float(area),
                        "iscrowd": 0,
                        "occlusion": round(1 - area / max(full, 1), 4),
                        "segmentation": mask_to_rle(mask),
                    }
                )
    finally:
        writer.release()
    gt = {
        "info": {
            "description": "detect synth --video",
            "seed": seed,
            "frames": frames,
            "fps": fps,
            "objects": objects,
            "degrade": bool(degrade),
            "street": bool(street),
        },
        "images": images,
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES)
        ],
        "annotations": annotations,
    }
    json_path = out.with_suffix(".json")
    try:
        json_path.write_text(json.dumps(gt, separators=(",", ":")), encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{json_path}: cannot write it ({exc.strerror})") from None
    return json_path


def write_site(
    out: Path,
    cameras: int,
    frames: int,
    seed: int,
    width: int = 320,
    height: int = 240,
    **clip: Any,
) -> Path:
    """A synthetic site for `detect watch`: ``out/camK.mp4`` and ``out/camK.json`` (K = 1 ...
    ``cameras``; clip K is `write_clip` with seed ``seed * 1000 + K``, the keywords ``clip``
    (``fps``, ``objects``, ``speed``, ``degrade``) and objects moving along a street: left or
    right) and ``out/site.yaml``.

    Each camera has a zone ``centre`` (the middle third of the frame's width, full height) and a
    line ``middle`` (the vertical centre line, drawn bottom to top: ``forward`` is left to right);
    outputs go to ``out/out/`` (per-camera JSONL and MP4, the event log, the summary). The site
    names a server at 127.0.0.1:50051; ``detect watch --server`` or ``--model`` overrides it.
    Returns the path of site.yaml.
    """
    if cameras < 1:
        raise ConfigError(f"--cameras {cameras}: use 1 or more")
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        raise ConfigError(f"--video {out} with --cameras: name a folder for the site")
    w, h = width, height
    centre = [[w // 3, 0], [2 * w // 3, 0], [2 * w // 3, h], [w // 3, h]]
    entries = []
    for k in range(1, cameras + 1):
        path = out / f"cam{k}.mp4"
        write_clip(path, frames, seed * 1000 + k, width, height, **clip, street=True)
        entries.append(
            {
                "name": f"cam{k}",
                "source": path.name,
                "truth": path.with_suffix(".json").name,
                "zones": [{"name": "centre", "polygon": [list(p) for p in centre]}],
                "lines": [{"name": "middle", "points": [[w // 2, h], [w // 2, 0]]}],
                "jsonl": f"out/cam{k}.jsonl",
                "out_video": f"out/cam{k}.mp4",
            }
        )
    site = {
        "server": "127.0.0.1:50051",
        "events": "out/events.jsonl",
        "summary": "out/summary.json",
        "cameras": entries,
    }
    import yaml

    path = out / "site.yaml"
    text = "# detect watch site.yaml [--server HOST:PORT | --model NAME.onnx]\n"
    try:
        path.write_text(text + yaml.safe_dump(site, sort_keys=False, default_flow_style=None))
    except OSError as exc:
        raise DataError(f"{path}: cannot write it ({exc.strerror})") from None
    return path

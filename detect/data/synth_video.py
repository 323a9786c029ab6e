"""Synthetic surveillance clips with identities: `detect synth --video OUT.mp4`.

A static scene (the `detect.data.synth` background and lighting) crossed by shapes of the five
classes. Each object keeps its identity, class, look and depth for the whole clip and moves at a
constant velocity, bouncing off the frame edges; objects painted later (nearer; under
perspective, lower in the frame) hide those painted earlier, so objects occlude one another.
With ``degrade`` every frame gets surveillance-like blur, noise, low light and JPEG artefacts.
`ClipConditions` make it harder: perspective, static poles and trees in front of the objects, a
crowd crossing the middle, camera shake, night and motion blur (`detect.data.clip_conditions`).

Writes ``OUT.mp4`` (mp4v) and ``OUT.json``: COCO instances with one image per frame (``id`` =
frame index + 1, ``frame_index``, ``timestamp_ms``) and one annotation per visible object and
frame carrying ``track_id`` (the object's identity), the visible mask as RLE, its ``bbox`` and
``area``, and ``occlusion`` (the hidden fraction of the object's part inside the frame, hidden
by other objects or by occluders; an object hidden entirely has no annotation in that frame).
Masks are sharp: under motion blur an object's mask is where its unblurred self is visible.
With camera shake each image carries ``shake``: the picture's ``[dx, dy]`` translation in
pixels, which the ground truth includes. ``info`` records the arguments and conditions,
``empty_share`` (the fraction of frames without an annotation: no object visible), with
occluders ``occluder_mask`` (their pixels as RLE in an unshaken frame) and with ``quiet``
``light_drift`` (`LightDrift`'s fields). The same arguments give the same clip.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.data.clip_conditions import ClipConditions
from detect.data.occluders import render_occluders
from detect.data.synth import (
    CLASSES,
    Shape,
    add_sensor_noise,
    apply_lighting,
    degrade_image,
    random_shape,
    render_background,
    render_scene,
    sample_lighting,
    sample_night_lighting,
    shape_mask,
)
from detect.errors import ConfigError, DataError
from detect.settings import check


@dataclasses.dataclass(frozen=True)
class Mover:
    """An object of the clip: its identity, look (a `Shape` at frame 0) and velocity (px/frame);
    ``band``: the rows its centre stays within (None: the frame's, less its radius)."""

    track_id: int
    shape: Shape
    vx: float
    vy: float
    band: tuple[float, float] | None = None

    def at(self, frame: float, width: int, height: int) -> Shape:
        """The shape at ``frame``: moved along its velocity, reflected at the frame edges (and
        the edges of its band)."""
        r = self.shape.radius
        low, high = r, height - r
        if self.band is not None:
            low, high = max(low, self.band[0]), min(high, self.band[1])
        return dataclasses.replace(
            self.shape,
            cx=_bounce(self.shape.cx + self.vx * frame, r, width - r),
            cy=_bounce(self.shape.cy + self.vy * frame, low, high),
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


def crowd(
    seed: int, count: int, first_id: int, width: int, height: int, speed: float
) -> list[Mover]:
    """``count`` objects (track ids from ``first_id``) at most a tenth of the frame's smaller
    side across, walking through the middle third of its height, alternately right and left
    within 10 degrees of horizontal at ``speed`` x 0.5-1.5 px/frame: they keep crossing."""
    rng = np.random.default_rng([seed, 1_000_033])
    size = min(width, height)
    band = (height / 3, 2 * height / 3)
    out = []
    for k in range(count):
        shape = random_shape(rng, size)
        shape = dataclasses.replace(
            shape,
            radius=min(shape.radius, 0.05 * size),
            cx=float(rng.uniform(0, width)),
            cy=float(rng.uniform(*band)),
        )
        heading = math.radians(rng.uniform(-10, 10)) + math.pi * (k % 2)
        pace = speed * rng.uniform(0.5, 1.5)
        vx, vy = pace * math.cos(heading), pace * math.sin(heading)
        out.append(Mover(first_id + k, shape, vx, vy, band))
    return out


@dataclasses.dataclass(frozen=True)
class Passer:
    """A passer-by of a quiet clip: its identity and look (a `Shape`, its centre where it
    enters), its velocity (px/frame) while it walks, the frame ``enter`` at which it is at
    ``shape``'s centre and, for one that stops, the walking frames after ``enter`` at which it
    stops (``stop_after``) and the frames it stands still (``stop``). Before ``enter`` and after
    it has crossed, it walks on along the same line, out of the frame."""

    track_id: int
    shape: Shape
    vx: float
    vy: float
    enter: float
    stop_after: float = 0.0
    stop: float = 0.0

    def at(self, frame: float, width: int, height: int) -> Shape:
        """The shape at ``frame`` (``width`` and ``height`` unused: `Mover`'s signature)."""
        walked = frame - self.enter
        if walked > self.stop_after:
            walked = max(self.stop_after, walked - self.stop)
        return dataclasses.replace(
            self.shape, cx=self.shape.cx + self.vx * walked, cy=self.shape.cy + self.vy * walked
        )


STOP_AT = 0.4
"""How far across the frame's width a passer-by that stops stands: inside `site_layout`'s
zone, before its line."""

MIN_IN_VIEW = 4
"""The fewest frames a passer-by of a quiet clip may be in view."""


def passers(
    seed: int, objects: int, frames: int, quiet: float, width: int, height: int
) -> list[Passer]:
    """``objects`` passers-by of random class and look, one after another, that together leave
    about ``quiet`` of the ``frames`` frames without an object.

    Each enters at the left or right edge, crosses the frame once, level or along a diagonal
    (from the upper to the lower half or back), so it passes `site_layout`'s zone and line, and
    leaves at the other edge. The ``(1 - quiet) * frames`` frames with an object are shared out
    among them (each 0.7-1.3 times an equal share, in view for its share) and the quiet frames
    among the ``objects + 1`` stretches before, between and after them; so they do not overlap
    and a passer-by's pace follows from its share. Every third (track ids 3, 6, ...) stops for a
    third of its share `STOP_AT` of the way across, then walks on.

    Raises `ConfigError` when a passer-by would be in view fewer than `MIN_IN_VIEW` frames.
    """
    if not objects:
        return []
    busy = round((1 - quiet) * frames)
    if busy < MIN_IN_VIEW * objects:
        need = math.ceil(round(MIN_IN_VIEW * objects / (1 - quiet), 9))
        raise ConfigError(
            f"--quiet {quiet:g} with --objects {objects}: give at least {need} --frames (each "
            f"passer-by in view {MIN_IN_VIEW} frames or more), or fewer --objects"
        )
    rng = np.random.default_rng([seed, 1_000_037])
    size = min(width, height)
    weights = rng.uniform(0.7, 1.3, objects)
    in_view = busy * weights / weights.sum()
    gaps = (frames - busy) * rng.dirichlet(np.ones(objects + 1))
    out = []
    start = gaps[0]
    for k in range(objects):
        shape = random_shape(rng, size)
        radius = min(shape.radius, 0.18 * size)
        rightward = bool(rng.random() < 0.5)
        y0 = y1 = float(rng.uniform(0.25, 0.75) * height)
        if rng.random() < 0.5:  # a diagonal: from one half of the height to the other
            y0, y1 = (float(rng.uniform(a, b) * height) for a, b in ((0.1, 0.4), (0.6, 0.9)))
            if rng.random() < 0.5:
                y0, y1 = y1, y0
        x0, x1 = -radius, width + radius  # just out of the frame
        if not rightward:
            x0, x1 = x1, x0
        track_id = k + 1
        stop = in_view[k] / 3 if track_id % 3 == 0 else 0.0
        walking = in_view[k] - stop
        vx, vy = (x1 - x0) / walking, (y1 - y0) / walking
        stop_after = walking * (STOP_AT * width + radius) / (width + 2 * radius) if stop else 0.0
        shape = dataclasses.replace(shape, radius=radius, cx=x0, cy=y0)
        out.append(Passer(track_id, shape, vx, vy, float(start), stop_after, stop))
        start += in_view[k] + gaps[k + 1]
    return out


@dataclasses.dataclass(frozen=True)
class LightDrift:
    """The light and sensor of a quiet clip: the picture's brightness times
    ``1 + amplitude * sin(2 pi t / period_s + phase)`` at ``t`` seconds, and Gaussian noise of
    standard deviation ``noise`` grey levels added to each pixel of each frame (the same to its
    three channels: luminance noise, which the MP4 encoding keeps more of than colour noise)."""

    amplitude: float
    period_s: float
    phase: float
    noise: float

    def gain(self, seconds: float) -> float:
        """The brightness factor at ``seconds``."""
        return 1 + self.amplitude * math.sin(2 * math.pi * seconds / self.period_s + self.phase)


def sample_light_drift(rng: np.random.Generator) -> LightDrift:
    """A random `LightDrift`: 5-15 % brightness swings over 20-60 s, noise of 3-5 grey levels
    (after mp4v encoding, 1.5-4 grey levels' change of a still pixel from frame to frame)."""
    return LightDrift(
        amplitude=float(rng.uniform(0.05, 0.15)),
        period_s=float(rng.uniform(20, 60)),
        phase=float(rng.uniform(0, 2 * math.pi)),
        noise=float(rng.uniform(3, 5)),
    )


def drift_light(
    rng: np.random.Generator, image: np.ndarray, drift: LightDrift, seconds: float
) -> np.ndarray:
    """``HxWx3 uint8`` ``image`` under ``drift`` at ``seconds``: brightened or dimmed, and with
    this frame's sensor noise (drawn from ``rng``)."""
    out = image.astype(np.float32) * np.float32(drift.gain(seconds))
    out += rng.standard_normal((*out.shape[:2], 1), dtype=np.float32) * np.float32(drift.noise)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def in_perspective(shape: Shape, perspective: float, height: int) -> Shape:
    """``shape`` scaled by ``1 + perspective * (2 * cy / height - 1)``: nearer the camera (lower
    in the frame), larger."""
    scale = 1 + perspective * (2 * shape.cy / height - 1)
    return dataclasses.replace(shape, radius=shape.radius * scale)


def _painting_order(shapes: list[Shape], perspective: float) -> list[int]:
    """Indices of ``shapes`` far to near: by their centre's row under perspective (lower is
    nearer), else as listed."""
    if not perspective:
        return list(range(len(shapes)))
    return sorted(range(len(shapes)), key=lambda k: shapes[k].cy)


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
    conditions: ClipConditions | None = None,
) -> Path:
    """Write ``out`` (an .mp4) and its ground truth ``out.with_suffix('.json')``; the JSON path.
    ``street``: objects move left or right (`movers`); ``conditions``: see
    `detect.data.clip_conditions`, None: none (the crowd's track ids follow the ``objects``').
    With ``quiet`` the ``objects`` are passers-by (`passers`, whose pace follows from the quiet
    share; ``speed`` and ``street`` do not apply to them) under a `LightDrift`.

    The scene is painted on a canvas ``shake`` pixels larger on every side, and each frame is
    the frame-sized window of it moved by the shake; objects move within the unshaken frame.

    Raises `ConfigError` for out-of-range arguments and `DataError` when ``out`` cannot be
    written.
    """
    if frames < 1 or objects < 0 or width < 32 or height < 32 or not fps > 0 or speed < 0:
        raise ConfigError(
            "synth --video: need frames >= 1, objects >= 0, a size of at least 32 px, fps > 0 "
            "and speed >= 0"
        )
    conditions = conditions or ClipConditions()
    check(conditions)
    from detect.data.coco import mask_to_rle

    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"--video {out}: name an .mp4 file")
    applied = conditions.resolved()
    margin = applied.shake
    canvas = (height + 2 * margin, width + 2 * margin)
    rng = np.random.default_rng([seed, 7])
    scene = render_background(rng, *canvas)
    lighting = sample_lighting(rng)
    if applied.night:
        lighting = sample_night_lighting(np.random.default_rng([seed, 29]))
    cast: list[Mover | Passer] = []
    drift = None
    if applied.quiet:
        cast += passers(seed, objects, frames, applied.quiet, width, height)
        drift = sample_light_drift(np.random.default_rng([seed, 31]))
    else:
        cast += movers(seed, objects, width, height, speed, street)
    cast += crowd(seed, applied.crowd, objects + 1, width, height, speed)
    paint, hidden = render_occluders(np.random.default_rng([seed, 17]), applied.occluders, *canvas)
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
            shapes = [
                in_perspective(m.at(index, width, height), applied.perspective, height)
                for m in cast
            ]
            placed = [dataclasses.replace(s, cx=s.cx + margin, cy=s.cy + margin) for s in shapes]
            order = _painting_order(shapes, applied.perspective)
            streaks = None
            if applied.motion_blur:
                streaks = [
                    _streak(cast[k], index, width, height, applied.motion_blur) for k in order
                ]
            image, painted = render_scene(scene, [placed[k] for k in order], streaks)
            visible = [np.zeros(0)] * len(cast)
            for k, mask in zip(order, painted, strict=True):
                visible[k] = mask & ~hidden
            image[hidden] = paint[hidden]
            dx, dy = _shake(seed, index, margin)
            window = np.s_[margin - dy : margin - dy + height, margin - dx : margin - dx + width]
            image = apply_lighting(image[window], lighting)
            if drift is not None:
                noise = np.random.default_rng([seed, 37, index])
                image = drift_light(noise, image, drift, index / fps)
            if applied.night:
                image = add_sensor_noise(np.random.default_rng([seed, 23, index]), image)
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
                | ({"shake": [dx, dy]} if margin else {})
            )
            for mover, shape, seen in zip(cast, placed, visible, strict=True):
                mask = seen[window]
                area = int(np.count_nonzero(mask))
                if not area:
                    continue
                full = int(np.count_nonzero(shape_mask(shape, *canvas)[window]))
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
                        "segmentation": mask_to_rle(np.ascontiguousarray(mask)),
                    }
                )
    finally:
        writer.release()
    info = {
        "description": "detect synth --video",
        "seed": seed,
        "frames": frames,
        "fps": fps,
        "objects": objects,
        "degrade": bool(degrade),
        "street": bool(street),
    } | dataclasses.asdict(applied)
    seen_in = {annotation["image_id"] for annotation in annotations}
    info["empty_share"] = round(1 - len(seen_in) / frames, 4)
    if drift is not None:
        info["light_drift"] = dataclasses.asdict(drift)
    if applied.occluders:
        unshaken = np.s_[margin : margin + height, margin : margin + width]
        info["occluder_mask"] = mask_to_rle(np.ascontiguousarray(hidden[unshaken]))
    gt = {
        "info": info,
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


def clip_info(json_path: Path) -> dict[str, Any]:
    """The ``info`` of the ground truth `write_clip` wrote to ``json_path``; `DataError` when it
    cannot be read."""
    try:
        return json.loads(Path(json_path).read_text(encoding="utf-8"))["info"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{json_path}: cannot read a clip's ground truth ({exc})") from None


def _streak(
    mover: Mover | Passer, frame: int, width: int, height: int, exposure: float
) -> tuple[float, float]:
    """``mover``'s motion ``(dx, dy)`` in pixels over ``exposure`` frames centred on ``frame``."""
    before = mover.at(frame - exposure / 2, width, height)
    after = mover.at(frame + exposure / 2, width, height)
    return after.cx - before.cx, after.cy - before.cy


def _shake(seed: int, frame: int, pixels: int) -> tuple[int, int]:
    """The picture's translation ``(dx, dy)`` at ``frame``: whole pixels, ``-pixels..pixels``."""
    if not pixels:
        return 0, 0
    dx, dy = np.random.default_rng([seed, 13, frame]).integers(-pixels, pixels + 1, 2)
    return int(dx), int(dy)


def site_layout(width: int, height: int) -> dict[str, list[dict[str, Any]]]:
    """A synthetic site camera's ``zones`` and ``lines`` keys for a ``width`` x ``height``
    frame: zone ``centre`` (the middle third of the width, full height) and line ``middle`` (the
    vertical centre line, drawn bottom to top: ``forward`` is left to right), in pixels."""
    w, h = width, height
    centre = [[w // 3, 0], [2 * w // 3, 0], [2 * w // 3, h], [w // 3, h]]
    return {
        "zones": [{"name": "centre", "polygon": centre}],
        "lines": [{"name": "middle", "points": [[w // 2, h], [w // 2, 0]]}],
    }


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
    (``fps``, ``objects``, ``speed``, ``degrade``, ``conditions``) and objects moving along a
    street: left or right) and ``out/site.yaml``.

    Each camera has the zone and line of `site_layout` and its clip's ground truth (``truth``);
    outputs go to ``out/out/`` (per-camera JSONL and MP4, the event log, the summary). The site
    names a server at 127.0.0.1:50051; ``detect watch --server`` or ``--model`` overrides it.
    Returns the path of site.yaml.
    """
    if cameras < 1:
        raise ConfigError(f"--cameras {cameras}: use 1 or more")
    out = Path(out)
    if out.suffix.lower() == ".mp4":
        raise ConfigError(f"--video {out} with --cameras: name a folder for the site")
    entries = []
    for k in range(1, cameras + 1):
        path = out / f"cam{k}.mp4"
        write_clip(path, frames, seed * 1000 + k, width, height, **clip, street=True)
        entries.append(
            {
                "name": f"cam{k}",
                "source": path.name,
                "truth": path.with_suffix(".json").name,
                **site_layout(width, height),
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

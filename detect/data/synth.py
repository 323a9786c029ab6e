"""Synthetic instance segmentation data: textured shapes on cluttered backgrounds, as COCO JSON.

The building blocks are small pure functions (given a `numpy.random.Generator` they are
deterministic) so that other generators, e.g. a synthetic video of moving shapes, can reuse them:

* `sample_shapes` places 0-8 `Shape` instances so that each keeps >= 40% of its area visible,
* `render_background` paints a textured, cluttered background,
* `render_scene` paints the shapes over it in order (optionally motion-blurred) and returns
  each instance's visible mask,
* `sample_lighting` / `apply_lighting` change brightness, contrast and illumination,
* `degrade_image` adds surveillance-camera blur, noise, low light and JPEG artefacts,
* `sample_night_lighting` and `add_sensor_noise` make a night picture,
* `generate_image` chains them for image ``index`` of dataset ``seed``,
* `write_dataset` writes ``images/NNNNNN.jpg`` and ``annotations.json`` (project COCO conventions,
  see `detect.data.importers`);
* `SynthSettings` declares `detect synth`'s settings (`detect.commands.synth`).

Conventions: images are ``HxWx3 uint8 RGB`` arrays, masks ``HxW bool``. Coordinates are in pixels,
``x`` is the column and ``y`` the row, with integer values at pixel centres (pixel ``(x, y)`` is
``image[y, x]``). Angles are in radians, applied as ``x' = x cos a - y sin a``,
``y' = x sin a + y cos a``; since ``y`` points down, positive angles turn clockwise on screen.
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.data.clip_conditions import ClipConditions
from detect.errors import ConfigError, DataError, install_extra
from detect.progress import StartProgress, silent
from detect.settings import (
    FLAGS,
    Spelling,
    at_least,
    more_than,
    nested,
    output_folder,
    setting,
)

CLASSES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star", "ring")
"""Class names; the category id of ``CLASSES[k]`` is ``k + 1``."""

TEXTURES: tuple[str, ...] = ("gradient", "stripes", "dots")
"""Fill patterns of a shape, all on top of a two-colour linear gradient."""

MIN_SIZE = 64
"""Smallest image side `write_dataset` accepts, in pixels."""

MAX_OBJECTS = 8
EMPTY_PROBABILITY = 0.03
"""Probability that an image has no objects at all."""

EXTENT_RANGE = (0.06, 0.40)
"""Object extent (outer diameter) as a fraction of the image side, sampled log-uniformly."""

MIN_RADIUS = 6.0
"""Outer radius floor in pixels, so that small images still get objects of >= 30 pixels."""

MIN_VISIBLE_FRACTION = 0.4
MIN_VISIBLE_PIXELS = 30
"""Every instance keeps at least this fraction of its full (unclipped) area and pixel count
visible, after truncation by the image border and occlusion by shapes painted later."""

PLACEMENT_TRIES = 10
"""Placements tried per object before it is skipped."""

CLEAN_JPEG_QUALITY = 95

_SHIFT = 4  # fractional bits of the sub-pixel polygon vertices passed to cv2.fillPoly
_MARGIN = 2  # pixels around a shape's outer radius in its drawing window


@dataclass(frozen=True)
class Shape:
    """One object instance, in image pixel coordinates (see the module docstring).

    ``radius`` is the outer radius: every point of the shape lies within ``radius`` of
    ``(cx, cy)``. ``aspect`` is width / height of a rectangle (>= 1) or base / height of an
    isosceles triangle, and unused otherwise. ``inner`` is the inner-vertex radius of a star or
    the hole radius of a ring, as a fraction of ``radius``, and unused otherwise. The fill is a
    linear gradient from ``color`` to ``color2`` (RGB, 0-255) along ``gradient_angle`` in the
    shape's own frame, modulated by ``texture`` (one of `TEXTURES`) with ``texture_freq`` cycles
    per radius and relative depth ``texture_amp``; the pattern moves and turns with the shape.
    """

    category_id: int
    cx: float
    cy: float
    radius: float
    angle: float
    aspect: float
    inner: float
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    gradient_angle: float
    texture: str
    texture_freq: float
    texture_amp: float


@dataclass(frozen=True)
class Lighting:
    """Global illumination: ``out = 255 * gain * tint * ramp * vignette * (in / 255) ** gamma``.

    ``ramp`` varies linearly by +-``ramp_strength`` across the image along ``ramp_angle``;
    ``vignette`` darkens corners by the fraction ``vignette`` (quadratic in the distance from
    the centre); ``tint`` is a per-channel RGB gain.
    """

    gain: float
    gamma: float
    tint: tuple[float, float, float]
    ramp_angle: float
    ramp_strength: float
    vignette: float


# --- shapes ----------------------------------------------------------------------------------


def _random_color(
    rng: np.random.Generator, saturation: tuple[float, float], value: tuple[float, float]
) -> np.ndarray:
    """RGB float colour (0-255) with a uniform hue and saturation / value in the given ranges."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return np.array(rgb) * 255.0


def random_shape(rng: np.random.Generator, size: int) -> Shape:
    """One shape of a uniformly random class, centred anywhere in a ``size x size`` image."""
    category_id = int(rng.integers(1, len(CLASSES) + 1))
    low, high = EXTENT_RANGE
    radius = max(MIN_RADIUS, 0.5 * size * math.exp(rng.uniform(math.log(low), math.log(high))))
    name = CLASSES[category_id - 1]
    aspect = rng.uniform(1.0, 2.5) if name == "rectangle" else rng.uniform(0.8, 1.8)
    inner = rng.uniform(0.45, 0.7) if name == "ring" else rng.uniform(0.38, 0.55)
    color = _random_color(rng, saturation=(0.45, 1.0), value=(0.35, 1.0))
    color2 = np.clip(color * rng.uniform(0.45, 0.9) + rng.normal(0.0, 20.0, 3), 0.0, 255.0)
    return Shape(
        category_id=category_id,
        cx=float(rng.uniform(0.0, size)),
        cy=float(rng.uniform(0.0, size)),
        radius=float(radius),
        angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        aspect=float(aspect),
        inner=float(inner),
        color=tuple(int(c) for c in np.round(color)),
        color2=tuple(int(c) for c in np.round(color2)),
        gradient_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        texture_freq=float(rng.uniform(1.0, 4.0)),
        texture_amp=float(rng.uniform(0.05, 0.3)),
    )


def shape_polygons(shape: Shape) -> list[tuple[np.ndarray, int]]:
    """Outline of ``shape`` as ``(Nx2 float (x, y) image coordinates, fill value)`` pairs.

    Filling them in order (value 1 = inside, 0 = hole) gives the shape's mask.
    """
    r, name = shape.radius, CLASSES[shape.category_id - 1]
    if name in ("circle", "ring"):
        n = int(np.clip(math.pi * r, 24, 180))  # a vertex every ~2 pixels of circumference
        theta = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
        unit = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        local = [(r * unit, 1)]
        if name == "ring":
            local.append((r * shape.inner * unit, 0))
    elif name in ("rectangle", "triangle"):
        hh = r / math.hypot(1.0, shape.aspect)  # half height; the corners lie on the radius
        hw = shape.aspect * hh
        if name == "rectangle":
            corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        else:
            corners = [(0.0, -hh), (hw, hh), (-hw, hh)]
        local = [(np.array(corners), 1)]
    else:  # five-pointed star
        theta = -0.5 * math.pi + np.arange(10) * (math.pi / 5)
        radii = np.where(np.arange(10) % 2 == 0, r, r * shape.inner)
        local = [(np.stack([radii * np.cos(theta), radii * np.sin(theta)], axis=1), 1)]
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    rotation = np.array([[c, s], [-s, c]])  # row vectors: p @ rotation rotates p by the angle
    return [(pts @ rotation + (shape.cx, shape.cy), value) for pts, value in local]


def _rasterize(shape: Shape, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    """``hxw bool`` mask of ``shape`` on a canvas whose pixel (0, 0) is image pixel (x0, y0)."""
    canvas = np.zeros((h, w), np.uint8)
    for pts, value in shape_polygons(shape):
        fixed = np.round((pts - (x0, y0)) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(canvas, [fixed], value, cv2.LINE_8, _SHIFT)
    return canvas.view(bool)


def _window(shape: Shape, h: int, w: int) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` slice bounds of the image region that can hold ``shape``, or None."""
    reach = shape.radius + _MARGIN
    x0, x1 = max(0, math.floor(shape.cx - reach)), min(w, math.ceil(shape.cx + reach) + 1)
    y0, y1 = max(0, math.floor(shape.cy - reach)), min(h, math.ceil(shape.cy + reach) + 1)
    return (y0, y1, x0, x1) if x0 < x1 and y0 < y1 else None


def _full_area(shape: Shape) -> int:
    """Pixel count of ``shape`` as if the image were unbounded."""
    reach = shape.radius + _MARGIN
    x0, y0 = math.floor(shape.cx - reach), math.floor(shape.cy - reach)
    side = math.ceil(2 * reach) + 2
    return int(np.count_nonzero(_rasterize(shape, x0, y0, side, side)))


def shape_mask(shape: Shape, h: int, w: int) -> np.ndarray:
    """``HxW bool`` mask of the whole ``shape`` (ignoring occlusion), clipped to the image."""
    mask = np.zeros((h, w), bool)
    window = _window(shape, h, w)
    if window is not None:
        y0, y1, x0, x1 = window
        mask[y0:y1, x0:x1] = _rasterize(shape, x0, y0, y1 - y0, x1 - x0)
    return mask


def sample_shapes(rng: np.random.Generator, size: int) -> list[Shape]:
    """0-8 shapes for a ``size x size`` image, in painting order (later ones on top).

    No objects with probability `EMPTY_PROBABILITY`, else 1-8 uniformly. A placement is rejected
    (and retried up to `PLACEMENT_TRIES` times, then the object is skipped) unless, after it is
    painted, every instance so far still shows >= `MIN_VISIBLE_FRACTION` of its full area and
    >= `MIN_VISIBLE_PIXELS` pixels inside the image.
    """
    count = 0 if rng.random() < EMPTY_PROBABILITY else int(rng.integers(1, MAX_OBJECTS + 1))
    label = np.full((size, size), -1, np.int16)  # index of the topmost shape at each pixel
    shapes: list[Shape] = []
    visible = np.zeros(0, np.int64)  # visible pixel count of each placed shape
    required = np.zeros(0)  # least visible pixel count each placed shape must keep
    for _ in range(count):
        for _ in range(PLACEMENT_TRIES):
            shape = random_shape(rng, size)
            window = _window(shape, size, size)
            if window is None:
                continue
            y0, y1, x0, x1 = window
            mask = _rasterize(shape, x0, y0, y1 - y0, x1 - x0)
            own = np.count_nonzero(mask)
            need = max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * _full_area(shape))
            if own < need:
                continue
            covered = label[y0:y1, x0:x1][mask]
            lost = np.bincount(covered[covered >= 0], minlength=len(shapes))
            if np.any(visible - lost < required):
                continue
            label[y0:y1, x0:x1][mask] = len(shapes)
            visible = np.append(visible - lost, own)
            required = np.append(required, need)
            shapes.append(shape)
            break
    return shapes


def _shape_fill(shape: Shape, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    """``hxwx3 float32`` RGB fill pattern of ``shape`` over the window at image (x0, y0)."""
    dx = np.arange(w, dtype=np.float32) + np.float32(x0 - shape.cx)
    dy = np.arange(h, dtype=np.float32)[:, None] + np.float32(y0 - shape.cy)
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    u = (c * dx + s * dy) / np.float32(shape.radius)  # shape frame, in radii
    v = (c * dy - s * dx) / np.float32(shape.radius)
    ga = shape.gradient_angle
    t = np.clip(0.5 + 0.5 * (math.cos(ga) * u + math.sin(ga) * v), 0.0, 1.0)
    color, color2 = np.array(shape.color, np.float32), np.array(shape.color2, np.float32)
    fill = color + t[..., None] * (color2 - color)
    phase = 2.0 * math.pi * shape.texture_freq
    if shape.texture == "stripes":
        fill *= (1.0 + shape.texture_amp * np.sin(phase * u))[..., None]
    elif shape.texture == "dots":
        fill *= (1.0 + shape.texture_amp * np.sin(phase * u) * np.sin(phase * v))[..., None]
    return fill


def render_scene(
    background: np.ndarray,
    shapes: list[Shape],
    streaks: list[tuple[float, float]] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Paint ``shapes`` in order over ``background`` (HxWx3 uint8 RGB, not modified).

    Returns the ``HxWx3 uint8 RGB`` image and one ``HxW bool`` visible mask per shape, in the
    same order: the shape's own mask minus those of the shapes painted after it (possibly
    empty). Shape edges are slightly soft in the image; the masks are exact. ``streaks``: per
    shape, its motion ``(dx, dy)`` in pixels while the shutter is open; the shape is painted
    averaged along it, centred on its place (motion blur), while its mask stays the sharp one.
    """
    h, w = background.shape[:2]
    image = background.astype(np.float32)
    label = np.full((h, w), -1, np.int16)
    for index, shape in enumerate(shapes):
        window = _window(shape, h, w)
        if window is None:
            continue
        y0, y1, x0, x1 = window
        mask = _rasterize(shape, x0, y0, y1 - y0, x1 - x0)
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.6)[..., None]
        fill = _shape_fill(shape, x0, y0, y1 - y0, x1 - x0)
        kernel = _streak_kernel(*streaks[index]) if streaks is not None else None
        if kernel is None:
            region = image[y0:y1, x0:x1]
            region += alpha * (fill - region)
        else:
            _paint_streaked(image, alpha, fill, (y0, x0), kernel)
        label[y0:y1, x0:x1][mask] = index
    masks = [label == index for index in range(len(shapes))]
    return _to_uint8(image), masks


def _streak_kernel(dx: float, dy: float) -> np.ndarray | None:
    """The motion-blur kernel of a motion ``(dx, dy)`` pixels (`_motion_kernel`), or None when
    it is under 2 pixels long."""
    length = 2 * round(math.hypot(dx, dy) / 2) + 1  # odd, so the kernel is centred
    return _motion_kernel(length, math.atan2(dy, dx)) if length >= 3 else None


def _paint_streaked(
    image: np.ndarray,
    alpha: np.ndarray,
    fill: np.ndarray,
    origin: tuple[int, int],
    kernel: np.ndarray,
) -> None:
    """Paint a layer (``hxwx1`` coverage ``alpha``, ``hxwx3`` colours ``fill``; its pixel
    (0, 0) at image row, column ``origin``) over ``image`` (HxWx3 float32, in place), both
    convolved with ``kernel`` (LxL, L odd): the layer as the average of its moving copies."""
    h, w = image.shape[:2]
    pad = kernel.shape[0] // 2
    y0, x0 = origin
    y1, x1 = y0 + alpha.shape[0], x0 + alpha.shape[1]
    top, left = max(0, y0 - pad), max(0, x0 - pad)
    bottom, right = min(h, y1 + pad), min(w, x1 + pad)
    coverage = np.zeros((bottom - top, right - left, 1), np.float32)
    colour = np.zeros((bottom - top, right - left, 3), np.float32)
    inside = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    coverage[inside] = alpha
    colour[inside] = alpha * fill
    coverage = cv2.filter2D(coverage, -1, kernel, borderType=cv2.BORDER_CONSTANT)[..., None]
    colour = cv2.filter2D(colour, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    region = image[top:bottom, left:right]
    region *= 1.0 - coverage
    region += colour


# --- background and lighting -----------------------------------------------------------------


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8)


def _ramp(h: int, w: int, angle: float) -> np.ndarray:
    """``HxW float32`` linear ramp from about -1 to 1 across the image along ``angle``."""
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    return (math.cos(angle) * x + math.sin(angle) * y) / np.float32(
        abs(math.cos(angle)) + abs(math.sin(angle))
    )


def _smooth_noise(
    rng: np.random.Generator, cells: int, h: int, w: int, channels: int
) -> np.ndarray:
    """``HxW`` (one channel) or ``HxWxC float32`` noise with features ``~1/cells`` of the image.

    A ``cells x cells`` normal grid is upsampled 4x, blurred there (no lattice artefacts, cheap),
    scaled to unit standard deviation and upsampled to the image size.
    """
    grid = rng.standard_normal((cells, cells, channels), dtype=np.float32)
    mid = cv2.GaussianBlur(
        cv2.resize(grid, (4 * cells, 4 * cells), interpolation=cv2.INTER_CUBIC), (0, 0), 1.6
    )
    mid /= max(float(mid.std()), 1e-6)
    return cv2.resize(mid, (w, h), interpolation=cv2.INTER_CUBIC)


def render_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``HxWx3 uint8 RGB`` background: muted two-colour gradient, multi-scale luminance and
    colour noise, fine grain, soft irregular blobs and thin lines (none looks like a class)."""
    c0 = _random_color(rng, saturation=(0.0, 0.35), value=(0.15, 0.85))
    c1 = _random_color(rng, saturation=(0.0, 0.35), value=(0.15, 0.85))
    t = 0.5 + 0.5 * _ramp(h, w, rng.uniform(0.0, 2.0 * math.pi))
    image = (c0 + t[..., None] * (c1 - c0)).astype(np.float32)
    for cells, amplitude in ((4, 22.0), (12, 12.0), (40, 6.0)):
        image += _smooth_noise(rng, cells, h, w, 1)[..., None] * amplitude * rng.uniform(0.3, 1.5)
    image += _smooth_noise(rng, 6, h, w, 3) * rng.uniform(0.0, 12.0)
    image += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(1.0, 5.0)
    for _ in range(int(rng.integers(0, 4))):
        field = _smooth_noise(rng, 5, h, w, 1) + 0.6 * _smooth_noise(rng, 14, h, w, 1)
        threshold = rng.uniform(1.0, 1.8) * field.std()
        alpha = np.clip((field - threshold) / (0.3 * threshold), 0.0, 1.0) * rng.uniform(0.3, 0.8)
        blob_color = _random_color(rng, saturation=(0.0, 0.6), value=(0.1, 0.9))
        image += alpha[..., None] * (blob_color.astype(np.float32) - image)
    image = _to_uint8(image)
    for _ in range(int(rng.integers(0, 7))):
        points = rng.uniform(-0.1, 1.1, (int(rng.integers(2, 4)), 2)) * (w, h)  # open: 2-3 points
        color = _random_color(rng, saturation=(0.0, 0.7), value=(0.05, 0.95))
        cv2.polylines(
            image,
            [np.round(points).astype(np.int32)],
            isClosed=False,
            color=tuple(float(c) for c in color),
            thickness=int(rng.integers(1, 4)),
            lineType=cv2.LINE_AA,
        )
    return image


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """Random global illumination: dim to bright, low to high contrast, a gradient, a vignette."""
    return Lighting(
        gain=float(rng.uniform(0.65, 1.3)),
        gamma=float(np.exp(rng.uniform(math.log(0.7), math.log(1.4)))),
        tint=tuple(float(g) for g in rng.uniform(0.9, 1.1, 3)),
        ramp_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        ramp_strength=float(rng.uniform(0.0, 0.3)),
        vignette=float(rng.uniform(0.0, 0.45)),
    )


def sample_night_lighting(rng: np.random.Generator) -> Lighting:
    """Random night illumination: 0.4-0.55 of daylight's gain, deep shadows (gamma 1.2-1.5), a
    bluish tint and a strong vignette (street lamps light the middle)."""
    return Lighting(
        gain=float(rng.uniform(0.4, 0.55)),
        gamma=float(rng.uniform(1.2, 1.5)),
        tint=(float(rng.uniform(0.75, 0.85)), float(rng.uniform(0.85, 0.95)), 1.1),
        ramp_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        ramp_strength=float(rng.uniform(0.1, 0.4)),
        vignette=float(rng.uniform(0.5, 0.8)),
    )


def apply_lighting(image: np.ndarray, lighting: Lighting) -> np.ndarray:
    """``HxWx3 uint8 RGB`` image under ``lighting`` (see `Lighting` for the formula)."""
    h, w = image.shape[:2]
    table = np.arange(256, dtype=np.float32) / 255.0
    curved = cv2.LUT(image, (255.0 * table**lighting.gamma).astype(np.float32))
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    y = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    field = (1.0 + lighting.ramp_strength * _ramp(h, w, lighting.ramp_angle)) * (
        1.0 - 0.5 * lighting.vignette * (x * x + y * y)
    )
    gain = lighting.gain * np.array(lighting.tint, np.float32)
    return _to_uint8(curved * field[..., None] * gain)


# --- degradation -----------------------------------------------------------------------------


def _motion_kernel(length: int, angle: float) -> np.ndarray:
    """``LxL float32`` kernel averaging along a line of ``length`` pixels at ``angle``."""
    kernel = np.zeros((length, length), np.float32)
    half = (length - 1) / 2.0
    dx, dy = half * math.cos(angle), half * math.sin(angle)
    p0 = (round((half - dx) * 16), round((half - dy) * 16))
    p1 = (round((half + dx) * 16), round((half + dy) * 16))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_8, 4)
    return kernel / kernel.sum()


def degrade_image(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8 RGB`` image as a cheap surveillance camera would record it.

    In order: motion or Gaussian blur; sometimes low light (darker, steeper gamma); sometimes
    a night-mode grey image; sensor noise (stronger in low light); sometimes a downscale-upscale;
    a JPEG round trip at quality 15-40.
    """
    h, w = image.shape[:2]
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        length = 2 * int(rng.integers(1, 5)) + 1  # odd, so the kernel is centred
        out = cv2.filter2D(out, -1, _motion_kernel(length, rng.uniform(0.0, math.pi)))
    else:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.6, 1.8))
    low_light = rng.random() < 0.5
    if low_light:
        dark = np.float32(rng.uniform(0.4, 0.7))
        out = 255.0 * (out * np.float32(1.0 / 255.0)) ** rng.uniform(1.0, 1.3) * dark
    if rng.random() < 0.2:
        out = np.repeat(out @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=2)
    sigma = rng.uniform(3.0, 10.0) * (1.6 if low_light else 1.0)
    out += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(sigma)
    out = _to_uint8(out)
    if rng.random() < 0.5:
        scale = rng.uniform(0.35, 0.7)
        small = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (w, h))
    quality = int(rng.integers(15, 41))
    return _rgb(cv2.imdecode(_encode_jpeg(out, quality), cv2.IMREAD_COLOR))


def add_sensor_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """``HxWx3 uint8 RGB`` image with the noise of a sensor at high gain (night): shot noise
    (standard deviation ``1.5 * sqrt(value)``), read noise (standard deviation 6) and colour
    noise (3 per channel), stronger than `degrade_image`'s on a dark image."""
    h, w = image.shape[:2]
    out = image.astype(np.float32)
    grey = rng.standard_normal((h, w, 1), dtype=np.float32)
    out += grey * (1.5 * np.sqrt(out) + 6.0)
    out += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(3.0)
    return _to_uint8(out)


# --- dataset ---------------------------------------------------------------------------------


def _encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG bytes (as a uint8 array) of an ``HxWx3 uint8 RGB`` image."""
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError(f"cannot JPEG-encode an image of shape {image.shape}")
    return data


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


def generate_image(
    seed: int, index: int, size: int, degrade: bool = False
) -> tuple[np.ndarray, list[Shape], list[np.ndarray]]:
    """Image ``index`` of dataset ``seed``: ``(HxWx3 uint8 RGB, shapes, HxW bool visible masks)``.

    Uses its own generator ``np.random.default_rng([seed, index])``; degradation draws last, so
    the clean and degraded variants share shapes, masks and lighting.
    """
    rng = np.random.default_rng([seed, index])
    shapes = sample_shapes(rng, size)
    background = render_background(rng, size, size)
    image, masks = render_scene(background, shapes)
    image = apply_lighting(image, sample_lighting(rng))
    if degrade:
        image = degrade_image(rng, image)
    return image, shapes, masks


def _check_arguments(images: int, seed: int, size: int) -> None:
    if images < 1:
        raise ConfigError(f"--images must be at least 1 (got {images}); pass --images 1 or more")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0 (got {seed}); pass a non-negative seed")
    if size < MIN_SIZE:
        raise ConfigError(
            f"--size must be at least {MIN_SIZE} pixels (got {size}); pass --size {MIN_SIZE} "
            "or more"
        )


def write_dataset(
    out: Path,
    images: int,
    seed: int,
    size: int = 320,
    degrade: bool = False,
    progress: StartProgress = silent,
) -> Path:
    """Write ``out/images/000000.jpg ...`` and ``out/annotations.json``; return the JSON path.
    The images written go to ``progress``.

    Image ``i`` (COCO id ``i + 1``) is `generate_image` ``(seed, i, size, degrade)``, so the
    same arguments give byte-identical files and a longer dataset extends a shorter one. Clean
    images are saved at JPEG quality 95. Raises `ConfigError` for out-of-range arguments and
    `DataError` when ``out`` cannot be written.
    """
    _check_arguments(images, seed, size)
    try:
        from detect.data.coco import mask_annotation
    except ImportError:
        raise ConfigError(
            "`detect synth` needs pycocotools for RLE; install the `train` extra: "
            + install_extra("train")
        ) from None
    out = Path(out)
    json_path = out / "annotations.json"
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        bar = progress("synth", images, "images")
        for index in bar.each(range(images)):
            image, shapes, masks = generate_image(seed, index, size, degrade)
            file_name = f"images/{index:06d}.jpg"
            (out / file_name).write_bytes(_encode_jpeg(image, CLEAN_JPEG_QUALITY).tobytes())
            coco_images.append(
                {"id": index + 1, "file_name": file_name, "width": size, "height": size}
            )
            for shape, mask in zip(shapes, masks, strict=True):
                if mask.any():
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": index + 1,
                            "category_id": shape.category_id,
                            **mask_annotation(mask),
                        }
                    )
        bar.close()
        coco = {
            "info": {
                "description": "detect synth",
                "seed": seed,
                "size": size,
                "degrade": bool(degrade),
            },
            "images": coco_images,
            "categories": [
                {"id": k + 1, "name": name, "supercategory": "shape"}
                for k, name in enumerate(CLASSES)
            ],
            "annotations": annotations,
        }
        json_path.write_text(json.dumps(coco, separators=(",", ":")), encoding="utf-8")
    except OSError as exc:
        where = exc.filename or out
        raise DataError(
            f"{where}: cannot write the dataset ({exc.strerror or exc}); pass a writable --out "
            "folder"
        ) from None
    return json_path


# --- `detect synth`'s settings ---------------------------------------------------------------


def _frame_size(value: Any, root: Path, what: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` -> ``(width, height)`` in pixels."""
    try:
        width, height = (int(v) for v in str(value).lower().split("x"))
    except ValueError:
        raise ConfigError(f"{what} {value!r}: use WIDTHxHEIGHT, e.g. 320x240") from None
    return width, height


@dataclass(frozen=True)
class SynthSettings:
    """What `detect synth` writes: an image dataset into ``out`` (`write_dataset`), or a clip
    ``video`` (`detect.data.synth_video.write_clip`), or with ``cameras`` a site of clips in the
    folder ``video`` (`detect.data.synth_video.write_site`), filmed under ``conditions``."""

    out: Path | None = setting(
        None, "output folder of an image dataset", group="target", check=output_folder
    )
    video: Path | None = setting(
        None,
        "output .mp4 (ground truth: same name .json); with --cameras, the site's folder",
        group="target",
    )
    images: int = setting(100, "number of images", check=at_least(1))
    seed: int = setting(0, "random seed (same seed, same annotations)", check=at_least(0))
    size: int = setting(320, "image side in pixels", check=at_least(MIN_SIZE))
    degrade: bool = setting(False, "surveillance-like blur, noise, JPEG, low light")
    frames: int = setting(100, "--video: number of frames", check=at_least(1))
    fps: float = setting(10.0, "--video: frames per second", check=more_than(0))
    objects: int = setting(
        6, "--video: moving objects (with --quiet: passers-by)", check=at_least(0)
    )
    video_size: tuple[int, int] = setting(
        (320, 240),
        "--video: WIDTHxHEIGHT",
        parse=_frame_size,
        metavar="WIDTHxHEIGHT",
        shown_default="320x240",
    )
    cameras: int | None = setting(
        None,
        "--video: a site of this many clips plus site.yaml for `detect watch`",
        check=at_least(1),
    )
    conditions: ClipConditions = nested(ClipConditions)

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks that involve several settings; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(SynthSettings, FLAGS)
        if self.cameras is not None and self.video is None:
            raise spell.problem(
                f"{spell('cameras')} makes a site of clips: give {spell('video')} FOLDER with it"
            )
        if (self.out is None) == (self.video is None):
            raise spell.problem(
                f"give exactly one of {spell('out')} (images) or {spell('video')} (a clip)"
            )
        if self.video is None and self.conditions.given():
            raise spell.problem(
                f"{spell(self.conditions.given()[0])} is a condition of a clip: give "
                f"{spell('video')} with it"
            )

"""Static occluders of a synthetic clip: poles and trees standing between the camera and the
street, painted over the moving objects (`detect.data.synth_video`).

Occluder ``k`` of ``count`` stands around column ``(k + 0.5) / count`` of the picture's width:
a tree (a trunk under an irregular leafy crown in the upper part of the picture) when
``k % 3 == 1``, else a pole (a grey, cylinder-shaded bar from the top of the picture down to
its foot). Images are ``HxWx3 uint8 RGB``, masks ``HxW bool``, as in `detect.data.synth`.
"""

from __future__ import annotations

import colorsys

import numpy as np

from detect.data.synth import _smooth_noise


def render_occluders(
    rng: np.random.Generator, count: int, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` occluders of an ``h x w`` picture: ``(HxWx3 uint8 RGB paint, HxW bool mask)``;
    the picture with them is ``np.where(mask[..., None], paint, picture)``."""
    paint = np.zeros((h, w, 3), np.float32)
    mask = np.zeros((h, w), bool)
    for k in range(count):
        x = w * (k + 0.5 + rng.uniform(-0.25, 0.25)) / count
        layers = _tree(rng, x, h, w) if k % 3 == 1 else [_pole(rng, x, h, w)]
        for colour, shape in layers:
            paint[shape] = colour[shape]
            mask |= shape
    return np.clip(paint + 0.5, 0.0, 255.0).astype(np.uint8), mask


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(1xW column index, Hx1 row index)`` float32 grids."""
    return np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]


def _pole(rng: np.random.Generator, x: float, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A pole centred on column ``x``: ``(HxWx3 float32 colours, HxW bool mask)``."""
    half = max(1.5, rng.uniform(0.008, 0.016) * w)
    foot = h * rng.uniform(0.8, 1.0)
    cols, rows = _grid(h, w)
    across = (cols - x) / half  # -1 .. 1 over the pole's width
    shape = (np.abs(across) <= 1.0) & (rows <= foot)
    grey = rng.uniform(90.0, 170.0)
    shading = 0.55 + 0.45 * np.cos(np.clip(across + 0.3, -1.0, 1.0) * (np.pi / 2))  # lit left
    colour = np.broadcast_to((grey * shading)[..., None], (h, w, 3))
    return colour * np.float32(rng.uniform(0.95, 1.05)), shape


def _tree(
    rng: np.random.Generator, x: float, h: int, w: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A tree centred on column ``x``: its trunk and crown, each ``(HxWx3 float32 colours,
    HxW bool mask)``, in painting order."""
    cols, rows = _grid(h, w)
    crown_y = h * rng.uniform(0.18, 0.32)
    foot = h * rng.uniform(0.75, 0.95)
    half = max(2.0, rng.uniform(0.012, 0.02) * w)
    trunk = (np.abs(cols - x) <= half) & (rows >= crown_y) & (rows <= foot)
    bark = np.array(colorsys.hsv_to_rgb(rng.uniform(0.05, 0.1), 0.5, 0.35)) * 255.0
    bark_colour = np.broadcast_to(bark.astype(np.float32), (h, w, 3))
    rx, ry = rng.uniform(0.09, 0.14) * w, rng.uniform(0.14, 0.22) * h
    ellipse = ((cols - x) / rx) ** 2 + ((rows - crown_y) / ry) ** 2
    crown = ellipse + 0.35 * _smooth_noise(rng, 8, h, w, 1) < 1.0
    leaf = np.array(colorsys.hsv_to_rgb(rng.uniform(0.22, 0.38), 0.65, 0.45)) * 255.0
    texture = 1.0 + 0.3 * _smooth_noise(rng, 40, h, w, 1)
    leaf_colour = leaf.astype(np.float32) * texture[..., None]
    return [(bark_colour, trunk), (leaf_colour, crown)]

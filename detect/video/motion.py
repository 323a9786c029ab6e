"""Motion gating (`MotionGate`): a frame goes to the model only when its picture changed since the
last frame that did.

Frigate runs its detector only where motion is; this gate asks a narrower question, the one that
decides whether a model run can be saved: *are the last inferred frame's detections still
true?* Each frame is reduced to a grey, ``HEIGHT``-row copy (area-averaged, then Gaussian
blurred, which leaves sensor noise of a few grey levels far under ``threshold``) and compared
with the copy of the last inferred frame, after its brightness is scaled to that frame's (a
drifting daylight or an auto-exposure step changes every pixel by the same factor, not the
picture). Where the masked-out polygons (``mask``: a swaying tree, a clock) are left out, the
pixels that differ by more than ``threshold`` grey levels form regions; the frame goes to the
model (``motion``) when one region covers at least ``min_area`` of the frame. Otherwise
(``still``) nothing in the picture moved since the detections were made: they are kept, and the
tracks held where they are.

Comparing with the last *inferred* frame rather than the previous one or a running average
means that a slow object (one that creeps a pixel a frame) is caught once its displacement adds
up, an object that walks out leaves a difference until a frame without it is inferred, and an
object that stops stops costing model runs. A change over more than ``lighting`` of the frame
(lights switched, the sun out from a cloud) sends one frame to the model (``lighting``), whose
picture then becomes the reference: a change of light is never motion for more than that frame.
A frame also goes to the model when ``force_s`` seconds of video have passed since the last one
that did (``forced``): stationary objects stay detected, and a model's misses get another chance.

Cost: 0.2-0.7 ms per 320x240 frame on this project's 2-core CPU (the ``motion`` stage of
`benchmarks/site_cost.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.errors import ConfigError
from detect.settings import KEYS, Spelling, at_least, between, checked_keys, construct, setting

HEIGHT = 120
"""Rows of the grey copy the gate compares (its width keeps the frame's aspect)."""

URGENT = ("", "first", "motion")
"""Reasons whose frames go ahead in a site's budget (`detect.video.budget`; ``""``: a camera
without gating)."""
HELD = ("still", "budget")
"""Reasons of frames that do not go to the model: ``still`` (nothing moved since the last that
did), ``budget`` (no slot of the site's budget in time); they keep the last detections."""

Mask = tuple[tuple[tuple[float, float], ...], ...]
"""Polygons of ``(x, y)`` frame pixels, each at least 3 points."""


def _mask(value: Any, root: Path, what: str) -> Mask:
    """A list of polygons, each a list of at least 3 ``[x, y]`` points (frame pixels)."""
    fix = f"{what}: give a list of polygons, each a list of at least 3 [x, y] points (pixels)"
    if not isinstance(value, list | tuple):
        raise ConfigError(fix)
    polygons = []
    for polygon in value:
        if not isinstance(polygon, list | tuple) or len(polygon) < 3:
            raise ConfigError(fix)
        try:
            points = tuple((float(x), float(y)) for x, y in polygon)
        except (TypeError, ValueError):
            raise ConfigError(fix) from None
        polygons.append(points)
    return tuple(polygons)


@dataclass(frozen=True)
class MotionSettings:
    """A camera's motion gate (the keys of its ``motion`` mapping; see `detect.video.motion`)."""

    threshold: float = setting(
        12.0,
        "grey levels (of 255) a pixel of the blurred copy must change by to count as moving",
        check=between(1, 255),
    )
    min_area: float = setting(
        0.0005,
        "share of the frame one moving region must cover for the frame to go to the model",
        check=between(0, 1),
    )
    force_s: float = setting(
        5.0,
        "seconds of video after which a frame goes to the model whatever moved (0: never)",
        check=at_least(0),
    )
    lighting: float = setting(
        0.5,
        "a change over more than this share of the frame is light, not motion: one frame goes "
        "to the model and becomes the reference",
        check=between(0, 1),
    )
    mask: Mask = setting(
        (),
        "polygons of [x, y] frame pixels where motion is ignored (a swaying tree, a clock)",
        parse=_mask,
    )


def motion_setting(value: Any, root: Path, what: str) -> MotionSettings | bool:
    """The ``motion`` key or flag: true (the default tuning), false (off), or a mapping of
    `MotionSettings` keys."""
    if isinstance(value, bool):
        return MotionSettings() if value else False
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: use true, false or a mapping of threshold, min_area, ...")
    spell = Spelling(MotionSettings, KEYS, what)
    typed, problems = checked_keys(MotionSettings, value, spell, root)
    if problems:
        raise ConfigError("; ".join(problems))
    return construct(MotionSettings, typed, spell)


class MotionGate:
    """Decides, frame by frame, whether a frame goes to the model (see the module docstring).

    `decide` takes each frame in order; `refused` tells it that the frame it just sent was not
    run after all (the site's budget), `forget` that a frame it sent earlier was not run (the
    server dropped it): either way the next change is seen again."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        # float32 grey copy of the last inferred frame, its video time and its mean grey level
        self._reference: np.ndarray | None = None
        self._reference_ms = 0.0
        self._reference_level = 0.0
        self._keep: np.ndarray | None = None  # bool, the pixels the mask leaves
        self._kept = 0  # how many
        self._candidate: tuple[np.ndarray | None, float, float] | None = None

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        """The ``(HEIGHT, W')`` float32 blurred grey copy of an ``(H, W, 3)`` BGR frame."""
        height, width = frame.shape[:2]
        size = (max(1, round(width * HEIGHT / height)), HEIGHT)
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        if self._keep is None or self._keep.shape != small.shape:  # a stream reopened resized
            self._keep = np.ones(small.shape, bool)
            scale = HEIGHT / height
            for polygon in self.settings.mask:
                points = np.round(np.array(polygon) * scale).astype(np.int32)
                hole = np.zeros(small.shape, np.uint8)
                cv2.fillPoly(hole, [points], 1)
                self._keep &= hole == 0
            self._kept = int(self._keep.sum())
        return cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)

    def decide(self, frame: np.ndarray, timestamp_ms: float) -> str:
        """``first``, ``motion``, ``lighting`` or ``forced`` (the frame goes to the model and
        becomes the reference, unless `refused` says otherwise), or ``still``.
        ``frame``: ``(H, W, 3)`` uint8 BGR; ``timestamp_ms``: its video time."""
        grey = self._grey(frame)
        assert self._keep is not None
        level = float(grey[self._keep].mean()) if self._kept else 0.0
        why = self._why(grey, level, timestamp_ms)
        if why != "still":
            self._candidate = (self._reference, self._reference_ms, self._reference_level)
            self._reference, self._reference_ms, self._reference_level = grey, timestamp_ms, level
        return why

    def refused(self) -> None:
        """The frame just sent was not run (the site's compute budget): the reference stays the
        last frame that was, so its change is seen again next frame."""
        if self._candidate is not None:
            self._reference, self._reference_ms, self._reference_level = self._candidate
            self._candidate = None

    def forget(self) -> None:
        """A frame sent earlier was not run (a server dropped it, `--frame-deadline-ms`): the
        next frame goes to the model (``first``) and becomes the reference. Safe from another
        thread than `decide`'s."""
        self._reference = None

    def _why(self, grey: np.ndarray, level: float, timestamp_ms: float) -> str:
        """The reason for ``grey`` (`_grey`'s copy; ``level``: its mean over the pixels the
        mask leaves)."""
        reference, settings = self._reference, self.settings
        if reference is None or reference.shape != grey.shape:
            return "first"
        if settings.force_s and timestamp_ms - self._reference_ms >= settings.force_s * 1000:
            return "forced"
        if level > 1.0:  # the frame's light scaled to the reference's
            grey = grey * (self._reference_level / level)
        changed = (np.abs(grey - reference) > settings.threshold) & self._keep
        moved = int(changed.sum())
        if not moved:
            return "still"
        if moved > settings.lighting * max(1, self._kept):
            return "lighting"
        _, _, stats, _ = cv2.connectedComponentsWithStats(changed.view(np.uint8), connectivity=8)
        largest = int(stats[1:, cv2.CC_STAT_AREA].max())
        return "motion" if largest >= settings.min_area * grey.size else "still"

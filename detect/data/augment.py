"""Training augmentation (albumentations 2.x) that keeps image, boxes, masks and labels consistent.

Conventions: images are (H, W, 3) uint8 RGB; boxes are (N, 4) float32 xyxy pixels whose x2/y2 are
exclusive edges (a mask covering columns 3..7 has x1=3, x2=8); labels are (N,) int64; masks are
(N, H, W) uint8 in {0, 1}. Geometric transforms keep the image size, so batches stay simple.

Seeding: in albumentations 2.0.8, `Compose(seed=...)` / `Compose.set_random_seed` give every child
transform its own generator with the *same* seed, so their draws coincide (two p=0.5 transforms
would always run together). `build_transform` returns a Compose whose children share its one
generator instead: both ways of seeding give reproducible, independent draws. DataLoader workers
inherit identical generator states, so seed each one: `transform.set_random_seed(worker_seed)`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from typing import Any

import albumentations as A
import cv2
import numpy as np

from detect.errors import ConfigError

MIN_BOX_SIZE = 2  # px: instances whose box ends up narrower or lower than this are dropped
FILL_VALUE = 114  # grey for the border that zooming out or translating exposes


@dataclass
class AugmentConfig:
    """Probability of each transform (0 disables it) plus its strength."""

    hflip: float = 0.5
    color_jitter: float = 0.4  # brightness/contrast/saturation/hue jitter (A.ColorJitter)
    hsv: float = 0.3  # A.HueSaturationValue
    noise: float = 0.2  # Gaussian sensor noise
    blur: float = 0.1  # Gaussian or motion blur
    jpeg: float = 0.2  # JPEG compression artefacts
    downscale: float = 0.1  # downscale-upscale (low resolution cameras)
    low_light: float = 0.2  # darken: RandomBrightnessContrast with negative brightness / gamma
    degrade: float = 0.0  # the whole camera chain of `detect synth --degrade` (_surveillance_chain)
    scale: float = 0.5  # scale jitter / crop (zoom in and out), image size unchanged
    scale_range: tuple[float, float] = (0.6, 1.6)  # zoom factors, min <= 1 <= max

    def __post_init__(self) -> None:
        """Raise ConfigError naming the first bad key and its allowed range."""
        for name in self.probability_names():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got {value!r}")
            setattr(self, name, float(value))
        value = self.scale_range
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not 0 < value[0] <= 1 <= value[1]
        ):
            raise ConfigError(
                f"augment.scale_range must be [min, max] with 0 < min <= 1 <= max, got {value!r}"
            )
        self.scale_range = (float(value[0]), float(value[1]))

    @classmethod
    def probability_names(cls) -> list[str]:
        """Names of the per-transform probabilities (every field but scale_range)."""
        return [f.name for f in fields(cls) if f.name != "scale_range"]

    @classmethod
    def from_value(cls, value: bool | dict[str, Any] | None) -> AugmentConfig | None:
        """True -> defaults; False/None -> None (no augmentation); a mapping (YAML `augment:`)
        -> defaults overridden by its keys."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        names = [f.name for f in fields(cls)]
        if not isinstance(value, dict):
            raise ConfigError(
                f"augment must be true, false or a mapping of {', '.join(names)}; got {value!r}"
            )
        unknown = sorted(str(key) for key in value if key not in names)
        if unknown:
            raise ConfigError(
                f"augment: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}"
            )
        return cls(**value)


class _SharedRngCompose(A.Compose):
    """`A.Compose` whose children all draw from the Compose's own generators (see module doc)."""

    def set_random_seed(self, seed: int | None) -> None:
        super().set_random_seed(seed)
        self.set_random_state(self.random_generator, self.py_random)


def build_transform(config: AugmentConfig, seed: int | None = None) -> A.Compose:
    """The training pipeline: geometry first, then colour, then camera degradations.

    Transforms with probability 0 are left out. `seed` makes the sequence reproducible; reseed
    later with `transform.set_random_seed(seed)`. Call it through `apply_transform`.
    """
    transforms = [
        # Geometric: move image, boxes and masks together; output size = input size.
        A.HorizontalFlip(p=config.hflip),
        A.Affine(
            scale=config.scale_range,
            translate_percent=(-0.1, 0.1),
            keep_ratio=True,
            balanced_scale=True,  # zoom in or out with equal odds
            border_mode=cv2.BORDER_CONSTANT,
            fill=FILL_VALUE,
            fill_mask=0,
            p=config.scale,
        ),
        # Colour and light: image only.
        A.ColorJitter(
            brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=config.color_jitter
        ),
        A.HueSaturationValue(
            hue_shift_limit=10, sat_shift_limit=25, val_shift_limit=20, p=config.hsv
        ),
        A.OneOf(
            [
                A.RandomBrightnessContrast(
                    brightness_limit=(-0.45, -0.15), contrast_limit=(-0.3, 0)
                ),
                A.RandomGamma(gamma_limit=(140, 250)),  # gamma > 1 darkens
            ],
            p=config.low_light,
        ),
        # Camera, in signal order (optics, sensor, resolution, codec): image only. Blur kernels
        # are centred so that object edges do not shift relative to the boxes.
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.5, 1.5)),
                A.MotionBlur(blur_limit=(3, 7), allow_shifted=False, direction_range=(0, 0)),
            ],
            p=config.blur,
        ),
        A.GaussNoise(std_range=(0.02, 0.08), p=config.noise),  # sigma 5..20 grey levels
        A.Downscale(
            scale_range=(0.35, 0.75),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=config.downscale,
        ),
        A.ImageCompression(quality_range=(30, 90), p=config.jpeg),
        _surveillance_chain(p=config.degrade),
    ]
    with warnings.catch_warnings():
        # Boxes always go through (apply_transform filters and relabels them by instance id),
        # also when no geometric transform is enabled, which albumentations would warn about.
        warnings.filterwarnings("ignore", message="Got processor for bboxes")
        return _SharedRngCompose(
            [t for t in transforms if t.p > 0],
            bbox_params=A.BboxParams(
                format="pascal_voc",
                label_fields=["instance_ids"],
                clip=True,
                filter_invalid_bboxes=True,
            ),
            mask_interpolation=cv2.INTER_NEAREST,
            seed=seed,
        )


def _surveillance_chain(p: float) -> A.Sequential:
    """With probability `p`, a cheap surveillance camera's picture: the chain and ranges of
    `detect.data.synth.degrade_image`, built from albumentations transforms (image only).

    Always a motion or Gaussian blur; grey (night mode) one time in five; low light (gamma
    1.0-1.3, then x0.4-0.7) half the time, with sensor noise of sigma 4.8-16 grey levels, else
    sigma 3-10; a downscale-upscale (x0.35-0.7) half the time; always JPEG at quality 15-40.
    Grey comes before the darkening here (after it in `degrade_image`): a grey image stays grey
    through it, so only the gamma's tone curve differs.
    """
    low_light_and_noise = A.Sequential(
        [
            A.RandomGamma(gamma_limit=(100, 130), p=1),  # gamma 1.0-1.3
            # albumentations computes x * (1 + contrast) + brightness * 255: here x * 0.4-0.7.
            A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=(-0.6, -0.3), p=1),
            A.GaussNoise(std_range=(4.8 / 255, 16 / 255), p=1),  # 1.6x: gain in the dark
        ],
        p=1,
    )
    return A.Sequential(
        [
            A.OneOf(
                [
                    A.MotionBlur(
                        blur_limit=(3, 9),
                        angle_range=(0, 180),
                        direction_range=(0, 0),
                        allow_shifted=False,
                    ),
                    A.GaussianBlur(blur_limit=0, sigma_limit=(0.6, 1.8)),  # kernel from sigma
                ],
                p=1,
            ),
            A.ToGray(p=0.2),
            A.OneOf([low_light_and_noise, A.GaussNoise(std_range=(3 / 255, 10 / 255), p=1)], p=1),
            A.Downscale(
                scale_range=(0.35, 0.7),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=0.5,
            ),
            A.ImageCompression(quality_range=(15, 40), p=1),
        ],
        p=p,
    )


def apply_transform(
    transform: A.Compose,
    image: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """image HxWx3 uint8 RGB; boxes (N, 4) float32 xyxy pixels (x2, y2 exclusive edges, i.e. box of
    a mask covering columns 3..7 is x1=3, x2=8); labels (N,) int64; masks (N, H, W) uint8 {0,1} or
    None.

    Returns the same four after augmentation, with instances that left the image (or whose mask
    became empty, or whose box has become < 2 px wide/high) dropped from boxes, labels AND masks
    together. With masks, each box is the tight box of its transformed mask; without, it is the
    box albumentations moved, clipped to the image. Input boxes of zero size are dropped too.
    """
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(labels) != len(boxes) or (masks is not None and len(masks) != len(boxes)):
        raise ValueError("boxes, labels and masks must describe the same instances")
    data: dict[str, Any] = {"image": image, "bboxes": boxes, "instance_ids": np.arange(len(boxes))}
    if masks is not None and len(masks):
        data["masks"] = list(masks)
    out = transform(**data)

    kept = np.asarray(out["instance_ids"], dtype=np.int64).reshape(-1)
    if masks is None:
        new_masks = None
        new_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
    else:
        new_masks = np.zeros((0, height, width), dtype=np.uint8)
        if len(kept):
            new_masks = np.stack([out["masks"][i] for i in kept]).astype(np.uint8, copy=False)
        new_boxes = _tight_boxes(new_masks)
    sizes = new_boxes[:, 2:] - new_boxes[:, :2]
    keep = (sizes >= MIN_BOX_SIZE).all(axis=1)
    new_labels = np.asarray(labels, dtype=np.int64)[kept[keep]]
    return out["image"], new_boxes[keep], new_labels, None if new_masks is None else new_masks[keep]


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) masks -> (N, 4) float32 xyxy with exclusive x2/y2; all zeros for an empty mask."""
    width, height = masks.shape[2], masks.shape[1]
    cols = masks.any(axis=1)  # (N, W)
    rows = masks.any(axis=2)  # (N, H)
    boxes = np.stack(
        [
            cols.argmax(axis=1),
            rows.argmax(axis=1),
            width - cols[:, ::-1].argmax(axis=1),
            height - rows[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.float32)
    boxes[~cols.any(axis=1)] = 0
    return boxes

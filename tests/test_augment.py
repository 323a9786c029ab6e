"""Augmentation keeps image, boxes, masks and labels consistent (synthetic scene, no files)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detect.data.augment import AugmentConfig, apply_transform, build_transform
from detect.errors import ConfigError

H, W = 96, 128
BACKGROUND = (40, 40, 40)
COLOURS = {  # label -> RGB fill; labels are unique so each one names its instance
    1: (220, 40, 40),  # rectangle
    2: (40, 200, 60),  # ellipse cut by the right border
    3: (50, 70, 220),  # rectangle partly hidden behind label 4
    4: (230, 210, 40),  # ellipse on top of label 3
}
PROBABILITIES = AugmentConfig.probability_names()
PIXEL_LEVEL = [name for name in PROBABILITIES if name not in ("hflip", "scale")]
SEEDS = range(30)


def tight_box(mask: np.ndarray) -> list[float]:
    """xyxy with exclusive x2/y2 of a non-empty (H, W) mask."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def make_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image (H, W, 3), boxes (4, 4), labels (4,), masks (4, H, W) of the visible pixels."""
    shapes = {
        1: lambda m: cv2.rectangle(m, (10, 15), (41, 44), 1, -1),
        2: lambda m: cv2.ellipse(m, (118, 70), (18, 14), 0, 0, 360, 1, -1),
        3: lambda m: cv2.rectangle(m, (30, 55), (70, 85), 1, -1),
        4: lambda m: cv2.ellipse(m, (70, 62), (16, 12), 0, 0, 360, 1, -1),
    }
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BACKGROUND
    masks = np.zeros((len(shapes), H, W), np.uint8)
    for i, (label, draw) in enumerate(shapes.items()):
        draw(masks[i])
        masks[:i] &= 1 - masks[i]  # later shapes occlude earlier ones
        image[masks[i] > 0] = COLOURS[label]
    boxes = np.array([tight_box(m) for m in masks], np.float32)
    return image, boxes, np.array(list(shapes), np.int64), masks


def only(name: str, **extra: float) -> AugmentConfig:
    """Config with `name` at probability 1 and every other transform off."""
    return AugmentConfig(**{**dict.fromkeys(PROBABILITIES, 0.0), name: 1.0, **extra})


def run(config: AugmentConfig, seed: int, with_masks: bool = True):
    image, boxes, labels, masks = make_scene()
    transform = build_transform(config, seed=seed)
    return apply_transform(transform, image, boxes, labels, masks if with_masks else None)


def check_consistent(image, boxes, labels, masks) -> None:
    """Shapes, dtypes, binary masks, box == tight box of its mask, boxes inside the image."""
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
    assert labels.dtype == np.int64 and len(set(labels.tolist())) == len(labels)
    assert set(labels.tolist()) <= set(COLOURS)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert (boxes[:, 2:] - boxes[:, :2] >= 2).all()
    if masks is not None:
        assert masks.dtype == np.uint8 and masks.shape == (len(labels), H, W)
        assert set(np.unique(masks).tolist()) <= {0, 1}
        for box, mask in zip(boxes, masks, strict=True):
            assert box.tolist() == tight_box(mask)


def test_scene_is_as_described() -> None:
    image, boxes, labels, masks = make_scene()
    assert boxes[1, 2] == W  # label 2 touches the right border
    assert masks[2].sum() < (41 * 31)  # label 3 is partly occluded by label 4
    check_consistent(image, boxes, labels, masks)


@pytest.mark.parametrize("name", PROBABILITIES)
def test_each_transform_keeps_boxes_and_masks_consistent(name: str) -> None:
    clean, boxes0, labels0, masks0 = make_scene()
    changed = 0
    for seed in SEEDS:
        image, boxes, labels, masks = run(only(name), seed)
        check_consistent(image, boxes, labels, masks)
        changed += not np.array_equal(image, clean)
        if name in PIXEL_LEVEL:
            assert labels.tolist() == labels0.tolist()
            assert np.array_equal(boxes, boxes0) and np.array_equal(masks, masks0)
        elif name == "hflip":
            assert labels.tolist() == labels0.tolist()
            assert np.array_equal(boxes[:, [0, 2]], W - boxes0[:, [2, 0]])
            assert np.array_equal(boxes[:, [1, 3]], boxes0[:, [1, 3]])
            assert np.array_equal(masks, masks0[:, :, ::-1])
    assert changed >= len(SEEDS) - 1, f"{name} at p=1 left the image unchanged too often"


def test_scale_moves_objects_with_the_image() -> None:
    """Only geometric transforms run: each returned mask covers its object's colour."""
    _, boxes0, _, _ = make_scene()
    moved = checked = 0
    for seed in range(60):
        image, boxes, labels, masks = run(only("scale", hflip=0.5), seed)
        check_consistent(image, boxes, labels, masks)
        moved += len(boxes) != len(boxes0) or not np.array_equal(boxes, boxes0)
        for label, mask in zip(labels, masks, strict=True):
            core = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0  # edges blend with neighbours
            if core.sum() >= 10:
                mean = image[core].mean(axis=0)
                assert np.abs(mean - COLOURS[label]).max() <= 2, (seed, label, mean)
                checked += 1
    assert moved >= 50 and checked >= 3 * 60


def test_scale_zooms_in_and_out_within_range() -> None:
    masks0 = make_scene()[3]
    ratios = []
    for seed in range(60):
        _, boxes, labels, masks = run(only("scale"), seed)
        if 1 in labels.tolist():  # the red rectangle lies well inside the image
            i = labels.tolist().index(1)
            if boxes[i, 0] > 0 and boxes[i, 1] > 0 and boxes[i, 2] < W and boxes[i, 3] < H:
                ratios.append(np.sqrt(masks[i].sum() / masks0[0].sum()))
    assert min(ratios) < 0.85 and max(ratios) > 1.2
    assert min(ratios) >= 0.6 - 0.05 and max(ratios) <= 1.6 + 0.05


@pytest.mark.parametrize("seed", range(100))
def test_default_pipeline_is_consistent(seed: int) -> None:
    check_consistent(*run(AugmentConfig(), seed))


@pytest.mark.parametrize("config", [only("hflip"), only("scale"), only("scale", hflip=0.5)])
def test_boxes_without_masks_follow_the_objects(config: AugmentConfig) -> None:
    compared = 0
    for seed in SEEDS:
        image, boxes, labels, _ = run(config, seed)
        image_nm, boxes_nm, labels_nm, masks_nm = run(config, seed, with_masks=False)
        assert masks_nm is None and np.array_equal(image, image_nm)
        check_consistent(image_nm, boxes_nm, labels_nm, None)
        assert len(set(labels.tolist()) ^ set(labels_nm.tolist())) <= 1  # edge remnants may differ
        for label, box in zip(labels.tolist(), boxes, strict=True):
            # A box cut by the image border can't know how much of the object is left there.
            inside = box[0] > 0 and box[1] > 0 and box[2] < W and box[3] < H
            if inside and label in labels_nm.tolist():
                box_nm = boxes_nm[labels_nm.tolist().index(label)]
                assert np.abs(box - box_nm).max() <= 1.5, (seed, label, box, box_nm)
                compared += 1
    assert compared >= 2 * len(SEEDS)


def test_hflip_without_masks_mirrors_boxes_exactly() -> None:
    _, boxes0, labels0, _ = make_scene()
    _, boxes, labels, masks = run(only("hflip"), 0, with_masks=False)
    assert masks is None and labels.tolist() == labels0.tolist()
    assert np.array_equal(boxes[:, [0, 2]], W - boxes0[:, [2, 0]])
    assert np.array_equal(boxes[:, [1, 3]], boxes0[:, [1, 3]])


@pytest.mark.parametrize("with_masks", [True, False])
def test_image_without_objects(with_masks: bool) -> None:
    image, _, _, _ = make_scene()
    transform = build_transform(AugmentConfig(scale=1.0), seed=0)
    masks = np.zeros((0, H, W), np.uint8) if with_masks else None
    out = apply_transform(
        transform, image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), masks
    )
    assert out[0].shape == image.shape
    assert out[1].shape == (0, 4) and out[1].dtype == np.float32
    assert out[2].shape == (0,) and out[2].dtype == np.int64
    if with_masks:
        assert out[3].shape == (0, H, W) and out[3].dtype == np.uint8
    else:
        assert out[3] is None


def test_instances_are_dropped_together() -> None:
    """An object pushed out of the image leaves boxes, labels and masks together."""
    dropped = 0
    for seed in range(60):
        _, boxes, labels, masks = run(only("scale", scale_range=(1.0, 1.6)), seed)
        assert len(boxes) == len(labels) == len(masks)
        dropped += len(labels) < 4
    assert dropped > 0


def test_degenerate_input_box_is_dropped() -> None:
    image, boxes, labels, masks = make_scene()
    boxes[0, 2] = boxes[0, 0]  # zero width
    out = apply_transform(build_transform(only("hflip")), image, boxes, labels, masks)
    assert out[2].tolist() == [2, 3, 4] and len(out[1]) == len(out[3]) == 3


def test_mismatched_lengths_are_refused() -> None:
    image, boxes, labels, masks = make_scene()
    with pytest.raises(ValueError, match="same instances"):
        apply_transform(build_transform(AugmentConfig()), image, boxes, labels, masks[:2])


def test_same_seed_same_result() -> None:
    config = AugmentConfig()
    first, second = run(config, 7), run(config, 7)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    transform = build_transform(config)
    image, boxes, labels, masks = make_scene()
    results = []
    for _ in range(2):
        transform.set_random_seed(7)
        results.append(apply_transform(transform, image, boxes, labels, masks))
    assert all(np.array_equal(a, b) for a, b in zip(*results, strict=True))
    assert not np.array_equal(run(config, 8)[0], first[0])


def test_seeded_transforms_draw_independently() -> None:
    """Seeding must not make transforms fire together (albumentations 2.0.8 seeds all alike)."""
    clean, _, _, masks0 = make_scene()
    config = AugmentConfig(**{**dict.fromkeys(PROBABILITIES, 0.0), "hflip": 0.5, "low_light": 0.5})
    transform = build_transform(config)
    counts: dict[tuple[bool, bool], int] = {}
    for seed in range(200):
        transform.set_random_seed(seed)
        image, _, _, masks = apply_transform(transform, clean, *make_scene()[1:])
        key = (bool(np.array_equal(masks, masks0[:, :, ::-1])), bool(image.mean() < clean.mean()))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 4 and min(counts.values()) >= 25, counts


def sharpness(image: np.ndarray) -> float:
    """Steepest one-pixel step across the red rectangle's left and top edges, as a fraction of
    the step from outside to inside (1 for the scene's hard edges); the smaller of the two, so a
    motion blur along one edge still counts."""
    grey = image.astype(np.float32).mean(axis=2)
    across_left = grey[20:40, 4:17].mean(axis=0)  # columns 4..16 around x = 10, rows averaged
    across_top = grey[9:22, 15:36].mean(axis=1)  # rows 9..21 around y = 15
    return min(
        float(np.abs(np.diff(profile)).max() / abs(profile[-1] - profile[0]))
        for profile in (across_left, across_top)
    )


def test_degrade_blurs_adds_noise_and_darkens_but_keeps_annotations() -> None:
    clean, boxes0, labels0, masks0 = make_scene()
    background = np.ones((9, 9), np.uint8)  # erode: background pixels away from every object
    background = cv2.erode((masks0.sum(axis=0) == 0).astype(np.uint8), background) > 0
    assert sharpness(clean) == 1 and clean[background].std() == 0
    darker = 0
    for seed in range(60):
        image, boxes, labels, masks = run(only("degrade"), seed)
        assert labels.tolist() == labels0.tolist()
        assert np.array_equal(boxes, boxes0) and np.array_equal(masks, masks0)
        assert sharpness(image) < 0.7, seed  # always a motion or Gaussian blur
        assert image[background].std() > 0.5, seed  # sensor noise survives JPEG
        assert image.mean() < 1.1 * clean.mean(), seed
        darker += image.mean() < 0.8 * clean.mean()
    assert 15 <= darker <= 45, darker  # low light half the time


def test_degrade_is_a_probability() -> None:
    clean = make_scene()[0]
    degraded = [not np.array_equal(run(only("degrade", degrade=0.5), s)[0], clean) for s in SEEDS]
    assert 5 <= sum(degraded) <= 25, degraded


def test_degrade_is_reproducible_with_a_seed() -> None:
    first, second = run(only("degrade"), 3), run(only("degrade"), 3)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b)
    transform = build_transform(only("degrade"))
    transform.set_random_seed(3)
    again = apply_transform(transform, *make_scene())
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(run(only("degrade"), 4)[0], first[0])


def test_degrade_is_off_by_default_and_leaves_the_pipeline_as_it_was() -> None:
    """At 0 the chain is not built, so it draws nothing: the default pipeline (and the cached
    fixture models trained with it) sees the same transforms and random draws as before."""
    assert AugmentConfig().degrade == 0
    names = [type(t).__name__ for t in build_transform(AugmentConfig()).transforms]
    assert names == [
        "HorizontalFlip",
        "Affine",
        "ColorJitter",
        "HueSaturationValue",
        "OneOf",
        "OneOf",
        "GaussNoise",
        "Downscale",
        "ImageCompression",
    ]
    names = [type(t).__name__ for t in build_transform(AugmentConfig(degrade=0.5)).transforms]
    assert names[-1] == "Sequential"


def test_all_probabilities_zero_is_identity() -> None:
    config = AugmentConfig(**dict.fromkeys(PROBABILITIES, 0.0))
    assert len(build_transform(config).transforms) == 0
    image, boxes, labels, masks = make_scene()
    out = run(config, 0)
    for a, b in zip(out, (image, boxes, labels, masks), strict=True):
        assert np.array_equal(a, b)


def test_from_value() -> None:
    assert AugmentConfig.from_value(True) == AugmentConfig()
    assert AugmentConfig.from_value(False) is None
    assert AugmentConfig.from_value(None) is None
    config = AugmentConfig.from_value({"hflip": 0.0, "scale_range": [0.8, 1.25], "noise": 1})
    assert config == AugmentConfig(hflip=0.0, scale_range=(0.8, 1.25), noise=1.0)
    assert isinstance(config.scale_range, tuple)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ({"flip": 0.5}, "flip"),
        ({"hflip": 1.5}, "augment.hflip must be a probability in [0, 1]"),
        ({"jpeg": -0.1}, "augment.jpeg"),
        ({"degrade": 1.5}, "augment.degrade must be a probability in [0, 1], got 1.5"),
        ({"blur": "often"}, "augment.blur"),
        ({"noise": True}, "augment.noise"),
        ({"scale_range": [1.2, 1.6]}, "augment.scale_range must be [min, max]"),
        ({"scale_range": [0.0, 1.6]}, "0 < min <= 1 <= max"),
        ({"scale_range": [0.8]}, "augment.scale_range"),
        ("yes", "augment must be true, false or a mapping"),
    ],
)
def test_from_value_rejects_bad_values(value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as error:
        AugmentConfig.from_value(value)  # type: ignore[arg-type]
    assert needle in str(error.value)

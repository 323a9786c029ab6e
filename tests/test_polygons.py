"""Mask -> polygons -> mask round trips of `detect.runtime.polygons` (no torch involved)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import shapely

from detect.data import synth
from detect.runtime.polygons import (
    MAX_HOLES,
    MAX_JOINT_RINGS,
    MAX_PARTS,
    Polygon,
    mask_to_polygons,
    polygons_to_coco,
    polygons_to_mask,
)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _round_trip(mask: np.ndarray, **kwargs) -> float:
    """IoU of ``mask`` with its polygons rasterised back."""
    return _iou(polygons_to_mask(mask_to_polygons(mask, **kwargs), *mask.shape), mask)


def _shape(name: str, radius: float, size: int | None = None, **fields) -> np.ndarray:
    """Mask of a `synth` shape of class ``name``, centred off the pixel grid in a ``size`` square
    image (by default, a tight one)."""
    size = size or int(2 * radius + 12)
    shape = replace(
        synth.random_shape(np.random.default_rng(0), 256),
        category_id=synth.CLASSES.index(name) + 1,
        cx=size / 2 + 0.3,
        cy=size / 2 - 0.2,
        radius=radius,
        **{"angle": 0.3, "aspect": 1.6, "inner": 0.5, **fields},
    )
    return synth.shape_mask(shape, size, size)


def _drawn(height: int, width: int, *draws) -> np.ndarray:
    """Mask of the ``cv2`` drawings ``draws`` (each called with a ``uint8`` canvas, fill 1)."""
    canvas = np.zeros((height, width), np.uint8)
    for draw in draws:
        draw(canvas)
    return canvas.astype(bool)


def _cases() -> dict[str, np.ndarray]:
    """Synthetic masks of shapes from about 8 to 200 pixels across, thin parts and edge cases."""
    return {
        **{f"circle r{r}": _shape("circle", r) for r in (4, 8, 16, 50, 100)},
        **{
            f"ellipse {a}x{b}": _drawn(
                2 * a + 12,
                2 * a + 12,
                lambda m, a=a, b=b: cv2.ellipse(m, (a + 6, a + 6), (a, b), 25, 0, 360, 1, -1),
            )
            for a, b in ((12, 5), (40, 15), (100, 35))
        },
        **{f"rectangle r{r}": _shape("rectangle", r, angle=0.5) for r in (6, 20, 100)},
        **{f"triangle r{r}": _shape("triangle", r) for r in (8, 40)},
        **{f"star r{r}": _shape("star", r) for r in (10, 30, 100)},
        "ring r12": _shape("ring", 12),
        "ring r40": _shape("ring", 40),
        "line 2px": _drawn(40, 60, lambda m: cv2.rectangle(m, (5, 20), (54, 21), 1, -1)),
        "line 2px diagonal": _drawn(60, 80, lambda m: cv2.line(m, (5, 10), (70, 50), 1, 2)),
        "line 3px diagonal": _drawn(60, 80, lambda m: cv2.line(m, (5, 10), (70, 50), 1, 3)),
        "L 3px": _drawn(
            50,
            50,
            lambda m: cv2.rectangle(m, (5, 5), (7, 44), 1, -1),
            lambda m: cv2.rectangle(m, (5, 42), (39, 44), 1, -1),
        ),
        "two blobs": _drawn(
            60,
            90,
            lambda m: cv2.circle(m, (20, 30), 12, 1, -1),
            lambda m: cv2.circle(m, (65, 25), 18, 1, -1),
        ),
        "touching all borders": _drawn(100, 120, lambda m: cv2.circle(m, (60, 50), 75, 1, -1)),
        "full image": np.ones((30, 40), bool),
    }


def test_shapes_round_trip_at_default_tolerance() -> None:
    cases = _cases()
    ious = {name: _round_trip(mask) for name, mask in cases.items()}
    assert np.mean(list(ious.values())) >= 0.95, ious
    assert min(ious.values()) >= 0.8, ious
    # the untouched outline (tolerance 0) covers exactly the mask's pixels
    assert all(_round_trip(mask, tolerance=0.0, min_area=0.0) == 1.0 for mask in cases.values())


def test_part_counts_and_order() -> None:
    cases = _cases()
    for name, mask in cases.items():
        assert len(mask_to_polygons(mask)) == (2 if name == "two blobs" else 1), name
    large, small = mask_to_polygons(cases["two blobs"])  # largest first: the right-hand blob
    assert large.area > small.area
    assert large.exterior[:, 0].min() > 40 > small.exterior[:, 0].max()


def test_rectangle_traces_pixel_edges() -> None:
    mask = np.zeros((20, 40), bool)
    mask[5:15, 10:30] = True  # rows 5..14, columns 10..29
    (polygon,) = mask_to_polygons(mask, tolerance=0.0)
    corners = {tuple(p) for p in polygon.exterior.tolist()}
    assert corners == {(10.0, 5.0), (30.0, 5.0), (30.0, 15.0), (10.0, 15.0)}
    assert polygon.holes == ()
    assert polygon.area == 200.0
    x, y = polygon.exterior.T.astype(float)
    assert np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) > 0  # counter-clockwise in x, y


def test_full_and_empty_masks() -> None:
    (full,) = mask_to_polygons(np.ones((30, 40), bool))
    assert full.area == 1200.0
    assert {tuple(p) for p in full.exterior.tolist()} == {(0, 0), (40, 0), (40, 30), (0, 30)}
    assert mask_to_polygons(np.zeros((30, 40), bool)) == []
    assert not polygons_to_mask([], 30, 40).any()


def test_single_pixel_dropped_by_min_area() -> None:
    mask = np.zeros((5, 6), bool)
    mask[2, 3] = True
    assert mask_to_polygons(mask) == []
    (pixel,) = mask_to_polygons(mask, min_area=0.0)
    assert {tuple(p) for p in pixel.exterior.tolist()} == {(3, 2), (4, 2), (4, 3), (3, 3)}
    assert np.array_equal(polygons_to_mask([pixel], 5, 6), mask)


def test_ring_comes_back_with_its_hole() -> None:
    mask = _shape("ring", 30, inner=0.5)
    (ring,) = mask_to_polygons(mask)
    assert len(ring.holes) == 1 and len(ring.rings()) == 2
    filled = shapely.Polygon(ring.exterior).area
    assert ring.area == pytest.approx(filled - shapely.Polygon(ring.holes[0]).area)
    assert ring.area == pytest.approx(np.count_nonzero(mask), rel=0.03)
    back = polygons_to_mask([ring], *mask.shape)
    centre = mask.shape[0] // 2
    assert not mask[centre, centre] and not back[centre, centre]
    assert _iou(back, mask) >= 0.95


def test_hole_beside_a_one_pixel_wall_and_spur() -> None:
    # the hole's outline shares the wall's pixels with the outer one, and a 1-pixel spur sticks
    # into the hole: Polygon(outer, holes) would be invalid here
    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    mask[3:9, 3:9] = False
    mask[2:10, 2] = True  # 1-pixel wall on the left
    mask[2, 3:9] = True  # and on the top
    mask[5, 3:6] = True  # spur
    assert _round_trip(mask, tolerance=0.0) == 1.0
    (polygon,) = mask_to_polygons(mask, tolerance=0.0)
    assert len(polygon.holes) == 1


def test_random_masks_round_trip_exactly_at_tolerance_zero() -> None:
    """Noise masks: pinches, diagonal links, 1-pixel spurs, holes sharing edges, islands."""
    rng = np.random.default_rng(0)
    for _ in range(150):
        h, w = rng.integers(1, 30, 2)
        mask = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        assert _round_trip(mask, tolerance=0.0, min_area=0.0) == 1.0


def _ragged(height: int, width: int) -> np.ndarray:
    """An under-trained model's mask: an ellipse with 10% of its pixels off (hundreds of
    pinholes, most of 1 pixel) among specks, 2% of the pixels around it on."""
    rng = np.random.default_rng(4)
    blob = _drawn(
        height,
        width,
        lambda m: cv2.ellipse(
            m, (width // 2, height // 2), (width // 3, height // 3), 0, 0, 360, 1, -1
        ),
    )
    return np.where(blob, rng.random(blob.shape) < 0.9, rng.random(blob.shape) < 0.02)


def _dropped_after_tracing(polygons: list[Polygon], min_area: float) -> list[Polygon]:
    """``polygons`` without the parts and holes of less than ``min_area`` square pixels."""
    return [
        Polygon(p.exterior, tuple(h for h in p.holes if shapely.Polygon(h).area >= min_area))
        for p in polygons
        if p.area >= min_area
    ]


def test_pinholes_and_specks_round_trip_exactly_at_min_area_zero() -> None:
    mask = _ragged(80, 100)  # 223 holes and 83 parts: within the caps
    polygons = mask_to_polygons(mask, tolerance=0.0, min_area=0.0)
    assert sum(len(p.holes) for p in polygons) > 200 and len(polygons) > 50
    assert np.array_equal(polygons_to_mask(polygons, *mask.shape), mask)


def test_parts_and_holes_under_min_area_go_as_if_dropped_after_tracing() -> None:
    """Dropping specks and filling pinholes before tracing gives the pixels of tracing them all
    and then dropping the polygons and holes of less than ``min_area`` square pixels."""
    mask = _ragged(120, 160)
    traced = mask_to_polygons(mask, tolerance=0.0, min_area=0.0)
    for min_area in (2.0, 4.0):
        polygons = mask_to_polygons(mask, tolerance=0.0, min_area=min_area)
        assert sum(len(p.holes) for p in polygons) < 50
        expected = _dropped_after_tracing(traced, min_area)
        assert np.array_equal(
            polygons_to_mask(polygons, *mask.shape), polygons_to_mask(expected, *mask.shape)
        )
    (blob,) = mask_to_polygons(mask)
    assert _iou(polygons_to_mask([blob], *mask.shape), mask) >= 0.85


def test_hole_with_an_island_is_not_filled_for_its_own_pixels() -> None:
    # a 1-pixel moat of 28 pixels around a 6x6 island: the hole's outline holds 64 square pixels
    mask = np.ones((16, 16), bool)
    mask[4:12, 4:12] = False
    mask[5:11, 5:11] = True
    polygons = mask_to_polygons(mask, tolerance=0.0, min_area=30.0)
    assert [len(p.holes) for p in polygons] == [1, 0]
    assert np.array_equal(polygons_to_mask(polygons, *mask.shape), mask)
    # a hole of 28 pixels with nothing inside is filled
    mask = np.ones((16, 16), bool)
    mask[4:8, 4:11] = False
    assert [len(p.holes) for p in mask_to_polygons(mask, tolerance=0.0, min_area=30.0)] == [0]


def test_holes_touching_at_corners_round_trip_exactly() -> None:
    # a checkerboard in a frame: 200 holes of 1 pixel, each touching its neighbours at corners
    mask = np.ones((24, 24), bool)
    mask[2:22, 2:22] = np.indices((20, 20)).sum(axis=0) % 2 == 0
    (polygon,) = mask_to_polygons(mask, tolerance=0.0, min_area=0.0)
    assert len(polygon.holes) == 200
    assert np.array_equal(polygons_to_mask([polygon], *mask.shape), mask)


def _cells(sizes: list[tuple[int, int]], value: bool) -> np.ndarray:
    """A square grid of 6x6 cells in a 1-pixel frame, each cell of ``not value`` with a
    ``(rows, cols)`` rectangle of ``value`` at its top left, one per ``sizes`` (row by row)."""
    side = int(np.ceil(np.sqrt(len(sizes))))
    mask = np.full((6 * side + 2, 6 * side + 2), not value)
    mask[[0, -1]] = mask[:, [0, -1]] = True
    for index, (rows, cols) in enumerate(sizes):
        top, left = 6 * (index // side) + 2, 6 * (index % side) + 2
        mask[top : top + rows, left : left + cols] = value
    return mask


def test_an_object_keeps_its_largest_holes() -> None:
    # 330 holes of 1 to 12 pixels in random order; the 256 largest are those of 4 pixels or more
    rng = np.random.default_rng(5)
    sizes = [(3, 4)] * 100 + [(3, 3)] * 80 + [(2, 2)] * 76 + [(1, 3)] * 40 + [(1, 1)] * 34
    sizes = [sizes[i] for i in rng.permutation(len(sizes))]
    mask = _cells(sizes, False)
    small = _cells([s if s[0] * s[1] < 4 else (0, 0) for s in sizes], False)
    expected = mask | ~small  # the holes of fewer than 4 pixels filled
    _, _, stats, _ = cv2.connectedComponentsWithStats((~expected).view(np.uint8), connectivity=4)
    assert sorted(stats[1:, cv2.CC_STAT_AREA]) == [4] * 76 + [9] * 80 + [12] * 100
    for tolerance, min_area in ((0.0, 0.0), (0.0, 2.0)):
        (polygon,) = mask_to_polygons(mask, tolerance=tolerance, min_area=min_area)
        assert len(polygon.holes) == MAX_HOLES
        assert np.array_equal(polygons_to_mask([polygon], *mask.shape), expected)
    # at the default settings too, however the outlines simplify
    (polygon,) = mask_to_polygons(mask)
    assert len(polygon.holes) <= MAX_HOLES


def test_an_object_keeps_its_largest_parts() -> None:
    # 300 parts of 1 to 12 pixels in random order, one of them the frame (the largest)
    rng = np.random.default_rng(6)
    sizes = [(3, 4)] * 150 + [(3, 3)] * 105 + [(2, 2)] * 30 + [(1, 2)] * 14
    sizes = [sizes[i] for i in rng.permutation(len(sizes))]
    mask = _cells(sizes, True)
    expected = _cells([s if s[0] * s[1] > 4 else (0, 0) for s in sizes], True)
    polygons = mask_to_polygons(mask, tolerance=0.0, min_area=0.0)
    assert len(polygons) == MAX_PARTS
    assert sorted(p.area for p in polygons)[:-1] == [9.0] * 105 + [12.0] * 150
    assert np.array_equal(polygons_to_mask(polygons, *mask.shape), expected)
    assert len(mask_to_polygons(mask)) <= MAX_PARTS


def test_random_masks_keep_at_most_the_capped_outlines() -> None:
    """Noise masks with hundreds of parts and holes. The caps count the mask's 8-connected parts
    and 4-connected holes: a part that pinches (pixels touching only at a corner) comes out as a
    polygon per piece, and a notch of the background whose 1-pixel opening is closed off by the
    mitres of two 45-degree corners as one more hole, with the same pixels."""
    rng = np.random.default_rng(7)
    for _ in range(6):
        mask = rng.random((100, 120)) < rng.uniform(0.3, 0.8)
        polygons = mask_to_polygons(mask, tolerance=0.0, min_area=0.0)
        back = polygons_to_mask(polygons, *mask.shape)
        assert cv2.connectedComponents(back.view(np.uint8), connectivity=8)[0] - 1 <= MAX_PARTS
        _, _, stats, _ = cv2.connectedComponentsWithStats((~back).view(np.uint8), connectivity=4)
        left, top, width, height = stats[1:, :4].T
        inside = (left > 0) & (top > 0) & (left + width < 120) & (top + height < 100)
        assert np.count_nonzero(inside) <= MAX_HOLES
        assert sum(len(p.holes) for p in mask_to_polygons(mask)) <= MAX_HOLES


def _valid(polygons: list[Polygon]) -> bool:
    return all(shapely.Polygon(p.exterior, p.holes).is_valid for p in polygons)


def test_parts_pinched_thousands_of_times_simplify_ring_by_ring() -> None:
    """Diagonal chains of 2x2-pixel blocks touching at corners: 93 parts within the cap, but
    their outlines split into a ring per block and one per link, 12,707 in all, over
    `MAX_JOINT_RINGS`, so the rings are simplified one by one (together: 0.4 s, quadratic)."""
    rows, cols = np.indices((240, 320)) // 2
    mask = (rows - cols) % 3 == 0
    assert np.count_nonzero(mask) // 4 > MAX_JOINT_RINGS  # the blocks alone
    polygons = mask_to_polygons(mask)
    assert _valid(polygons)
    assert _iou(polygons_to_mask(polygons, *mask.shape), mask) >= 0.9
    exact = mask_to_polygons(mask, tolerance=0.0)
    assert len(exact) == 93 and _valid(exact)
    assert np.array_equal(polygons_to_mask(exact, *mask.shape), mask)


def test_rings_simplified_one_by_one_round_trip_exactly_at_tolerance_zero(monkeypatch) -> None:
    """With every mask's rings simplified one by one, the exact round trip still holds and the
    polygons stay valid, if not as close to the mask at the default tolerance."""
    monkeypatch.setattr("detect.runtime.polygons.MAX_JOINT_RINGS", 0)
    rng = np.random.default_rng(0)
    masks = [rng.random(rng.integers(1, 30, 2)) < rng.uniform(0.1, 0.9) for _ in range(100)]
    for mask in [*masks, _ragged(80, 100), *_cases().values()]:
        assert _round_trip(mask, tolerance=0.0, min_area=0.0) == 1.0
        assert _valid(mask_to_polygons(mask))
    assert _round_trip(_ragged(80, 100)) >= 0.85


def test_tolerance_trades_points_for_fidelity() -> None:
    mask = _shape("star", 60) & ~_shape("circle", 15, size=132)  # a star with a round hole
    counts, ious = [], []
    for tolerance in (0.0, 0.5, 1.0, 2.0, 4.0):
        polygons = mask_to_polygons(mask, tolerance=tolerance)
        counts.append(sum(len(ring) for p in polygons for ring in p.rings()))
        ious.append(_iou(polygons_to_mask(polygons, *mask.shape), mask))
    assert counts == sorted(counts, reverse=True) and counts[0] > 3 * counts[2] > counts[-1]
    assert ious[0] == 1.0 and ious == sorted(ious, reverse=True)
    # tolerance 0 keeps the traced outline: it passes within 1/sqrt(2) of every boundary pixel
    (traced,) = mask_to_polygons(mask, tolerance=0.0)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    boundary = mask & ~cv2.erode(mask.astype(np.uint8), cross).astype(bool)  # 4-neighbour
    rows, cols = np.nonzero(boundary)
    edge = shapely.Polygon(traced.exterior, traced.holes).boundary
    assert shapely.distance(edge, shapely.points(cols + 0.5, rows + 0.5)).max() <= 2**-0.5 + 1e-6


def test_offset_shifts_every_point() -> None:
    mask = _shape("ring", 15)
    plain = mask_to_polygons(mask)
    shifted = mask_to_polygons(mask, offset=(7.0, 11.0))
    for a, b in zip(plain, shifted, strict=True):
        for ring_a, ring_b in zip(a.rings(), b.rings(), strict=True):
            assert np.allclose(ring_b, ring_a + np.array([7.0, 11.0]))
    canvas = np.zeros((mask.shape[0] + 20, mask.shape[1] + 20), bool)
    canvas[11 : 11 + mask.shape[0], 7 : 7 + mask.shape[1]] = mask
    traced = mask_to_polygons(mask, tolerance=0.0, offset=(7.0, 11.0))
    assert np.array_equal(polygons_to_mask(traced, *canvas.shape), canvas)


def test_probabilities_are_thresholded_at_half() -> None:
    mask = _shape("star", 25)
    rng = np.random.default_rng(1)
    probabilities = np.where(
        mask, rng.uniform(0.51, 1.0, mask.shape), rng.uniform(0.0, 0.5, mask.shape)
    )
    assert mask_to_polygons(np.full((8, 8), 0.5, np.float32)) == []
    expected = mask_to_polygons(mask)
    for variant in (probabilities.astype(np.float32), mask.astype(np.uint8) * 255):
        got = mask_to_polygons(variant)
        assert len(got) == len(expected)
        assert all(
            np.array_equal(a.exterior, b.exterior) for a, b in zip(got, expected, strict=True)
        )


def test_polygons_to_mask_samples_pixel_centres() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        outer = shapely.Point(rng.uniform(5, 35, 2)).buffer(rng.uniform(3, 15), quad_segs=3)
        hole = shapely.Point(outer.centroid).buffer(outer.length / 30, quad_segs=2)
        shape = outer.difference(hole)
        polygon = Polygon(
            np.asarray(shape.exterior.coords[:-1], np.float32),
            tuple(np.asarray(h.coords[:-1], np.float32) for h in shape.interiors),
        )
        rows, cols = np.mgrid[0:40, 0:45]
        expected = shapely.contains_xy(shape, cols + 0.5, rows + 0.5)
        assert np.array_equal(polygons_to_mask([polygon], 40, 45), expected)


def test_synthetic_visible_masks() -> None:
    """~200 visible masks of synthetic scenes (occluded, truncated, split into several parts)."""
    rng = np.random.default_rng(3)
    masks = []
    while len(masks) < 200:
        _, visible = synth.render_scene(
            np.zeros((320, 320, 3), np.uint8), synth.sample_shapes(rng, 320)
        )
        masks += [m for m in visible if m.any()]
    ious = [_round_trip(m) for m in masks]
    assert np.mean(ious) >= 0.95
    assert any(len(mask_to_polygons(m)) > 1 for m in masks)  # multi-part masks were covered
    assert all(_round_trip(m, tolerance=0.0, min_area=0.0) == 1.0 for m in masks)


def test_coco_polygons_match_pycocotools() -> None:
    mask_utils = pytest.importorskip("pycocotools.mask")

    def decode(polygons: list[Polygon], h: int, w: int) -> np.ndarray:
        segmentation = polygons_to_coco(polygons)
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in segmentation)
        assert all(isinstance(v, float) for p in segmentation for v in p)
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))) > 0

    ious = []
    for name, mask in _cases().items():
        if "ring" in name:
            continue
        # pycocotools rasterises with the same pixel convention: the traced outline is exact
        assert np.array_equal(decode(mask_to_polygons(mask, tolerance=0.0), *mask.shape), mask)
        polygons = mask_to_polygons(mask)
        decoded = decode(polygons, *mask.shape)
        assert _iou(decoded, polygons_to_mask(polygons, *mask.shape)) >= 0.95, name
        ious.append(_iou(decoded, mask))
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.8
    ring = _shape("ring", 30)  # COCO polygons cannot hold the hole: it comes out filled
    filled = decode(mask_to_polygons(ring), *ring.shape)
    assert filled[ring.shape[0] // 2, ring.shape[1] // 2] and _iou(filled, ring) < 0.8


def test_rejects_a_mask_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="H, W"):
        mask_to_polygons(np.ones((2, 3, 4), bool))


def test_imports_without_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import detect.runtime.polygons"
    subprocess.run([sys.executable, "-c", code], check=True)

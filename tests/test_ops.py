"""detect.ops (NumPy box ops for serving) against torchvision.

Floating results are compared bit for bit with torchvision wherever torchvision defines them
(the ops replay its arithmetic in the same dtype), and indices exactly. The two documented
departures are tested explicitly: box_iou gives 0 where torchvision gives 0/0 = nan, and NMS
breaks exact score ties by increasing index where torchvision's CPU sort is unstable.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchvision.ops as tvo

from detect import ops

DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------- helpers


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def random_boxes(
    rng: np.random.Generator, n: int, dtype: type = np.float64, *, integer: bool = False
) -> np.ndarray:
    """(n, 4) xyxy boxes in a 200-px image; often clustered so that NMS has work to do."""
    centres = rng.uniform(0, 200, (n, 2))
    if n and rng.random() < 0.5:  # clusters of near-duplicates
        centres = centres[rng.integers(0, max(1, n // 5), n)] + rng.normal(0, 3, (n, 2))
    sizes = rng.uniform(0, 60, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    if integer:  # integer coordinates: identical boxes, touching edges, exact IoU values
        boxes = np.round(boxes)
    return boxes.astype(dtype)


def distinct_scores(rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:
    return (rng.permutation(n) + 1).astype(dtype) / (n + 1)


def stable_descending(scores: np.ndarray) -> np.ndarray:
    """Written independently of detect.ops: decreasing score, equal scores by increasing index."""
    return np.lexsort((np.arange(len(scores)), -scores))


def tie_free_scores(scores: np.ndarray) -> np.ndarray:
    """Distinct scores ranking the boxes as a stable descending sort of ``scores`` does.

    Fed to torchvision, they make its unstable sort visit tied boxes in increasing index order,
    which is the tie-breaking detect.ops documents.
    """
    n = len(scores)
    ranks = np.empty(n, dtype=scores.dtype)
    ranks[stable_descending(scores)] = np.arange(n, 0, -1)
    return ranks


def assert_same(actual: np.ndarray, expected: torch.Tensor | np.ndarray) -> None:
    """Same dtype, same shape, bit-identical values (NaN equal to NaN)."""
    expected = expected.numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected, strict=True)


# --------------------------------------------------------------------------- conversions

CONVERSIONS = [
    (ops.xyxy_to_xywh, "xyxy", "xywh"),
    (ops.xywh_to_xyxy, "xywh", "xyxy"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("fn", "in_fmt", "out_fmt"), CONVERSIONS)
def test_conversion_matches_torchvision_box_convert(fn, in_fmt, out_fmt, dtype) -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        boxes = random_boxes(rng, int(rng.integers(0, 300)), dtype)
        assert_same(fn(boxes), tvo.box_convert(_t(boxes), in_fmt, out_fmt))


def test_tlwh_explicit_example() -> None:
    np.testing.assert_array_equal(ops.xyxy_to_tlwh([[10, 20, 50, 80]]), [[20, 10, 40, 60]])
    np.testing.assert_array_equal(ops.tlwh_to_xyxy([[20, 10, 40, 60]]), [[10, 20, 50, 80]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tlwh_is_coco_xywh_with_top_and_left_swapped(dtype) -> None:
    boxes = random_boxes(np.random.default_rng(0), 200, dtype)
    xywh = tvo.box_convert(_t(boxes), "xyxy", "xywh").numpy()
    assert_same(ops.xyxy_to_tlwh(boxes), xywh[:, [1, 0, 2, 3]])
    assert_same(ops.tlwh_to_xyxy(xywh[:, [1, 0, 2, 3]]), tvo.box_convert(_t(xywh), "xywh", "xyxy"))


ROUND_TRIPS = [
    (ops.xyxy_to_tlwh, ops.tlwh_to_xyxy),
    (ops.xyxy_to_xywh, ops.xywh_to_xyxy),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("forward", "backward"), ROUND_TRIPS)
def test_conversion_round_trips(forward, backward, dtype) -> None:
    rng = np.random.default_rng(1)
    # Integer coordinates round-trip exactly, both ways.
    boxes = random_boxes(rng, 300, dtype, integer=True)
    np.testing.assert_array_equal(backward(forward(boxes)), boxes)
    converted = forward(boxes)
    np.testing.assert_array_equal(forward(backward(converted)), converted)
    # Arbitrary coordinates round-trip to within rounding.
    boxes = random_boxes(rng, 300, dtype)
    out = backward(forward(boxes))
    assert out.dtype == boxes.dtype and out.shape == boxes.shape
    np.testing.assert_allclose(out, boxes, rtol=1e-6, atol=1e-4)


def test_conversions_keep_leading_dims_and_float_inputs_unmodified() -> None:
    boxes = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    before = boxes.copy()
    for forward, backward in ROUND_TRIPS:
        out = forward(boxes)
        assert out.shape == (2, 3, 4) and out.dtype == np.float32
        np.testing.assert_array_equal(backward(out), boxes)
    np.testing.assert_array_equal(boxes, before)
    # Integer (and list) input becomes float64; empty input stays empty.
    assert ops.xyxy_to_xywh(np.array([[0, 0, 2, 2]])).dtype == np.float64
    assert ops.xyxy_to_xywh(np.zeros((0, 4), np.float32)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        ops.xyxy_to_xywh(np.zeros((3, 5)))


# --------------------------------------------------------------------------- area, IoU


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_area_and_iou_match_torchvision(dtype) -> None:
    for seed in range(30):
        rng = np.random.default_rng(seed)
        a = random_boxes(rng, int(rng.integers(0, 300)), dtype, integer=seed % 2 == 0)
        b = random_boxes(rng, int(rng.integers(0, 60)), dtype, integer=seed % 2 == 0)
        assert_same(ops.box_area(a), tvo.box_area(_t(a)))
        ours = ops.box_iou(a, b)
        expected = tvo.box_iou(_t(a), _t(b)).numpy()
        undefined = np.isnan(expected)  # integer rounding makes some zero-area boxes
        np.testing.assert_array_equal(ours[undefined], 0)
        assert_same(ours[~undefined], expected[~undefined])
        assert ours.shape == expected.shape and ours.dtype == expected.dtype


ADVERSARIAL_BOXES = np.array(
    [
        [0, 0, 10, 10],
        [0, 0, 10, 10],  # identical to 0
        [10, 0, 20, 10],  # touches 0 along an edge: IoU 0
        [10, 10, 20, 20],  # touches 0 at a corner
        [2, 2, 8, 8],  # inside 0
        [0, 0, 10, 3],  # IoU with 0 is exactly 0.3 (0.3 + 1 ulp in float32)
        [0, 0, 10, 5],  # IoU with 0 is exactly 0.5
        [5, 5, 5, 5],  # zero-area point inside 0
        [5, 5, 5, 5],  # the same point
        [0, 4, 10, 4],  # zero-height segment inside 0
        [100, 100, 110, 110],  # far away
        [-5, -5, 5, 5],  # partly outside the image
    ]
)


@pytest.mark.parametrize("dtype", DTYPES)
def test_box_iou_adversarial_cases_and_zero_union(dtype) -> None:
    boxes = ADVERSARIAL_BOXES.astype(dtype)
    ours = ops.box_iou(boxes, boxes)
    expected = tvo.box_iou(_t(boxes), _t(boxes)).numpy()
    undefined = np.isnan(expected)  # torchvision: 0 / 0 where both boxes have zero area
    assert undefined.sum() == 9  # the 3 zero-area boxes with each other
    np.testing.assert_array_equal(ours[undefined], 0)
    assert_same(ours[~undefined], expected[~undefined])
    assert ours[0, 1] == 1 and ours[0, 2] == 0 and ours[0, 3] == 0
    assert ours[0, 6] == 0.5 and ours[0, 5] == dtype(0.3)
    assert ours[7, 8] == 0  # a point with itself
    assert ops.box_iou(np.zeros((0, 4)), boxes).shape == (0, len(boxes))
    assert ops.box_iou(boxes, np.zeros((0, 4))).shape == (len(boxes), 0)


# --------------------------------------------------------------------------- nms


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_matches_torchvision_on_random_boxes(dtype) -> None:
    for seed in range(150):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(0, 300))
        boxes = random_boxes(rng, n, dtype, integer=seed % 3 == 0)
        scores = distinct_scores(rng, n, dtype)
        threshold = float(rng.choice([0.0, 0.3, 0.5, 0.7, 1.0, rng.random()]))
        expected = tvo.nms(_t(boxes), _t(scores), threshold)
        assert_same(ops.nms(boxes, scores, threshold), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.99, 1.0])
def test_nms_matches_torchvision_on_adversarial_boxes(dtype, threshold) -> None:
    boxes = ADVERSARIAL_BOXES.astype(dtype)
    n = len(boxes)
    for seed in range(10):  # every box gets to be the top one
        scores = distinct_scores(np.random.default_rng(seed), n, dtype)
        expected = tvo.nms(_t(boxes), _t(scores), threshold)
        assert_same(ops.nms(boxes, scores, threshold), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_iou_exactly_at_threshold(dtype) -> None:
    """IoU == threshold is kept (strict >), with the comparison done in float64 as the kernel."""
    scores = np.array([0.9, 0.8], dtype)
    half = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype)  # IoU 0.5 exactly
    third = np.array([[0, 0, 10, 10], [0, 0, 10, 3]], dtype)  # IoU 3/10, rounded in dtype
    np.testing.assert_array_equal(ops.nms(half, scores, 0.5), [0, 1])
    np.testing.assert_array_equal(ops.nms(half, scores, np.nextafter(0.5, 0)), [0])
    # float32(0.3) > 0.3: the float32 IoU of 3/10 exceeds the float64 threshold 0.3, so
    # torchvision suppresses; comparing in float32 would keep the box.
    np.testing.assert_array_equal(
        ops.nms(third, scores, 0.3), [0] if dtype == np.float32 else [0, 1]
    )
    for boxes in (half, third):
        for threshold in (0.3, 0.5, float(np.float32(0.3))):
            expected = tvo.nms(_t(boxes), _t(scores), threshold)
            assert_same(ops.nms(boxes, scores, threshold), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nms_ties_visit_equal_scores_by_increasing_index(dtype) -> None:
    # Identical boxes, identical scores: the first one wins (torchvision: any of them).
    boxes = np.tile(np.array([[0, 0, 10, 10]], dtype), (40, 1))
    scores = np.full(40, 0.5, dtype)
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), [0])
    assert len(tvo.nms(_t(boxes), _t(scores), 0.5)) == 1
    # Disjoint boxes, tied scores: all kept, ties in index order.
    disjoint = np.array([[20 * i, 0, 20 * i + 10, 10] for i in range(6)], dtype)
    tied = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5], dtype)
    np.testing.assert_array_equal(ops.nms(disjoint, tied, 0.5), [1, 3, 0, 2, 5, 4])
    np.testing.assert_array_equal(np.sort(tvo.nms(_t(disjoint), _t(tied), 0.5).numpy()), range(6))
    # Random boxes with heavily tied scores: equal to torchvision once its sort is made
    # deterministic by giving it distinct scores in the same (stable) order.
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 300))
        boxes = random_boxes(rng, n, dtype, integer=True)
        scores = (rng.integers(0, 4, n) / 4).astype(dtype)
        expected = tvo.nms(_t(boxes), _t(tie_free_scores(scores)), 0.5)
        assert_same(ops.nms(boxes, scores, 0.5), expected)


def test_nms_nan_scores_and_boxes_as_torchvision() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 9], [np.nan, 0, 10, 10], [1, 1, 9, 9], [0, 0, 10, 10]],
        np.float32,
    )
    scores = np.array([0.5, np.nan, 0.9, 0.7, np.inf], np.float32)
    for threshold in (0.0, 0.5, 0.9):
        expected = tvo.nms(_t(boxes), _t(scores), threshold)
        assert_same(ops.nms(boxes, scores, threshold), expected)


def test_nms_edge_inputs() -> None:
    empty = ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    assert ops.nms(np.zeros((0,)), np.zeros(0), 0.5).shape == (0,)
    single = ops.nms([[0, 0, 1, 1]], [0.3], 0.5)
    assert single.dtype == np.int64
    np.testing.assert_array_equal(single, [0])
    # float16 is computed in float32 (torchvision's CPU kernel rejects it); ints as float64.
    boxes16 = ADVERSARIAL_BOXES.astype(np.float16)
    scores16 = distinct_scores(np.random.default_rng(0), len(boxes16), np.float16)
    expected = tvo.nms(_t(boxes16.astype(np.float32)), _t(scores16.astype(np.float32)), 0.4)
    assert_same(ops.nms(boxes16, scores16, 0.4), expected)
    expected = tvo.nms(_t(ADVERSARIAL_BOXES.astype(np.float64)), _t(scores16.astype(float)), 0.4)
    assert_same(ops.nms(ADVERSARIAL_BOXES, scores16.astype(float), 0.4), expected)
    with pytest.raises(ValueError, match="scores"):
        ops.nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(ValueError, match="boxes"):
        ops.nms(np.zeros((3, 5)), np.zeros(3), 0.5)


# --------------------------------------------------------------------------- no torch


def test_ops_import_and_run_with_torch_blocked() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        sys.modules["torchvision"] = None
        import numpy as np
        import detect.ops as ops
        boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
        scores = np.array([0.9, 0.8, 0.7], np.float32)
        assert ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
        assert ops.box_iou(boxes, boxes).shape == (3, 3)
        assert ops.xyxy_to_tlwh([[10, 20, 50, 80]]).tolist() == [[20, 10, 40, 60]]
        loaded = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")]
        assert all(sys.modules[m] is None for m in loaded), loaded
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

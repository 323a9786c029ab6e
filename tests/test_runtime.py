"""`detect.runtime.Detector`: the exported model on ONNX Runtime, images in, TLWH + polygons out."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from detect.errors import ConfigError
from detect.runtime.detector import Detector
from detect.runtime.masks import paste_masks
from detect.runtime.polygons import polygons_to_mask


@pytest.fixture(scope="module")
def detector(mask_model: Path) -> Detector:
    return Detector(mask_model, device="cpu", backend="onnxruntime")


@pytest.fixture(scope="module")
def image_bytes(shapes_small: Path) -> bytes:
    return sorted((shapes_small / "images").glob("*.jpg"))[0].read_bytes()


def test_detector_runs_on_the_cpu_provider_with_the_card_labels(detector: Detector) -> None:
    assert detector.provider == "CPUExecutionProvider"
    assert detector.labels == ["circle", "rectangle", "triangle", "star", "ring"]
    assert detector.card.has_masks


def test_bytes_rgb_and_bgr_arrays_give_the_same_detections(
    detector: Detector, image_bytes: bytes
) -> None:
    bgr = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
    from_bytes = detector.detect(image_bytes, score_threshold=0.0, polygons=False)
    from_rgb = detector.detect(bgr[:, :, ::-1], color="RGB", score_threshold=0.0, polygons=False)
    from_bgr = detector.detect(bgr, color="BGR", score_threshold=0.0, polygons=False)
    assert from_bytes
    assert from_bytes == from_rgb == from_bgr


def test_an_array_needs_its_colour_order(detector: Detector) -> None:
    with pytest.raises(ConfigError, match="color='RGB' or color='BGR'"):
        detector.detect(np.zeros((32, 32, 3), np.uint8))


def test_boxes_are_top_left_width_height_of_the_graph_xyxy(
    detector: Detector, image_bytes: bytes
) -> None:
    rgb = detector.prepare(image_bytes)
    raw = detector.infer(rgb)
    detections = detector.detect(image_bytes, score_threshold=0.0, polygons=False)
    order = np.argsort(-raw.scores, kind="stable")
    assert len(detections) == len(raw)
    for det, i in zip(detections, order, strict=True):
        x1, y1, x2, y2 = raw.boxes[i]
        assert (det.top, det.left) == pytest.approx((y1, x1))
        assert (det.width, det.height) == pytest.approx((x2 - x1, y2 - y1))
        assert det.label == detector.labels[raw.labels[i] - 1]
        assert det.class_id == detector.card.category_ids[raw.labels[i] - 1]
        assert det.line() == (
            f"{det.top:.2f},{det.left:.2f},{det.width:.2f},{det.height:.2f},"
            f"{det.label},{det.score:.4f}"
        )


def test_score_threshold_class_filter_and_max_detections(
    detector: Detector, image_bytes: bytes
) -> None:
    everything = detector.detect(image_bytes, score_threshold=0.0, polygons=False)
    scores = [d.score for d in everything]
    assert scores == sorted(scores, reverse=True)
    middle = float(np.median(scores))
    assert all(d.score >= middle for d in detector.detect(image_bytes, score_threshold=middle))
    assert len(detector.detect(image_bytes, score_threshold=0.0, max_detections=2)) == 2
    label = everything[0].label
    only = detector.detect(image_bytes, score_threshold=0.0, classes=[label], polygons=False)
    assert only and all(d.label == label for d in only)
    by_id = detector.detect(
        image_bytes, score_threshold=0.0, classes=[everything[0].class_id], polygons=False
    )
    assert by_id == only
    assert all(d.score == 1.0 for d in detector.detect(image_bytes, score_threshold=1.0))
    at_top = detector.detect(image_bytes, score_threshold=scores[0], polygons=False)
    assert at_top and all(d.score == scores[0] for d in at_top)  # the threshold keeps its equal
    with pytest.raises(ConfigError, match=r"score_threshold 1.01: use a value in \[0, 1\]"):
        detector.detect(image_bytes, score_threshold=1.01)  # refused, as the server refuses it
    with pytest.raises(ConfigError, match="unknown class 'dog'"):
        detector.detect(image_bytes, classes=["dog"])


def test_polygons_outline_the_pasted_masks(detector: Detector, image_bytes: bytes) -> None:
    rgb = detector.prepare(image_bytes)
    height, width = rgb.shape[:2]
    raw = detector.infer(rgb)
    order = np.argsort(-raw.scores, kind="stable")
    masks = paste_masks(raw.mask_probs, raw.boxes, height, width)[order]
    exact = detector.detect(
        image_bytes, score_threshold=0.0, polygon_tolerance=0.0, min_polygon_area=0.0
    )
    simplified = detector.detect(image_bytes, score_threshold=0.0)
    overlap = union = 0
    for mask, det, simple in zip(masks, exact, simplified, strict=True):
        np.testing.assert_array_equal(polygons_to_mask(det.polygons, height, width), mask)
        traced = polygons_to_mask(simple.polygons, height, width)
        overlap += (traced & mask).sum()
        union += (traced | mask).sum()
    # Simplifying at 1 px moves each outline by up to a pixel, which costs small masks (the tiny
    # model's are 50-100 px) about 10 % IoU: measured over all the masks' pixels together.
    assert overlap / union >= 0.85


def test_zero_detections_and_tiny_or_odd_sized_images(
    detector: Detector, image_bytes: bytes
) -> None:
    assert detector.detect(np.zeros((1, 1, 3), np.uint8), color="RGB", score_threshold=1.0) == []
    noise = np.random.default_rng(0)
    images = [noise.integers(0, 255, (*shape, 3), dtype=np.uint8) for shape in [(1, 1), (7, 300)]]
    scene = cv2.cvtColor(cv2.imdecode(np.frombuffer(image_bytes, np.uint8), 1), cv2.COLOR_BGR2RGB)
    images += [cv2.resize(scene, (width, height)) for height, width in [(131, 97), (89, 103)]]
    checked = 0
    for image in images:
        height, width = image.shape[:2]
        for det in detector.detect(image, color="RGB", score_threshold=0.0):
            assert det.left >= 0 and det.left + det.width <= width + 1e-3
            assert det.top >= 0 and det.top + det.height <= height + 1e-3
            checked += 1
    assert checked > 0  # the rescaled scenes gave boxes to check


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here"
)
def test_cuda_without_a_cuda_provider_is_a_clear_error(mask_model: Path) -> None:
    with pytest.raises(ConfigError, match="no CUDAExecutionProvider"):
        Detector(mask_model, device="cuda")
    auto = Detector(mask_model, device="auto", backend="onnxruntime")
    assert auto.provider == "CPUExecutionProvider"


def test_unknown_device_is_refused(mask_model: Path) -> None:
    with pytest.raises(ConfigError, match="use one of auto, cpu, cuda"):
        Detector(mask_model, device="gpu")

"""The backend protocol: the ONNX Runtime `Detector`, the gRPC `DetectorClient` (a real server)
and the torch `EagerModel` run the same images through `prepare -> infer_batch -> postprocess`
and answer alike; `detect_each` reports a bad image and goes on with the others."""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from helpers import run_detect
from serving import start_server

from detect.errors import ConfigError, InputError, ModelError
from detect.messages import detection_from_message, detection_message
from detect.ops import box_iou
from detect.runtime.backend import Detected, detect_batch, detect_each, open_backend
from detect.runtime.detector import Detector, plan_batches
from detect.runtime.engines import installed_engines
from detect.runtime.image import decode_image
from detect.runtime.model_card import ModelCard, batch_graph_path, card_path
from detect.structures import Detection, DetectOptions, RawDetections

ALL = DetectOptions(score_threshold=0.0, polygons=True, polygon_tolerance=0.0)


def _images(shapes_small: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((shapes_small / "images").glob("*.jpg"))[:4]]


def _same(a: RawDetections, b: RawDetections, score: float, box: float, mask: float) -> int:
    """Assert two runs' raw detections agree (labels exactly, the rest within the tolerances);
    how many there are."""
    assert a.image_size == b.image_size and len(a) == len(b)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=score)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=box)
    np.testing.assert_allclose(a.mask_probs, b.mask_probs, atol=mask)
    return len(a)


def _rows(detected: list[Detected]) -> list[list[tuple[str, int]]]:
    return [[(d.label, d.class_id) for d in image.detections] for image in detected]


def test_local_and_server_backends_give_the_same_detections(
    shapes_small: Path, mask_model: Path
) -> None:
    images = _images(shapes_small)
    local = open_backend(model=mask_model, device="cpu", engine="onnxruntime")
    server = start_server(mask_model, "--backend", "onnxruntime")
    try:
        remote = open_backend(server=server.address)
        mine, theirs = asdict(local.info), asdict(remote.info)  # through GetModelInfo
        for key, value in mine.items():  # the thresholds are float32 on the wire
            assert theirs[key] == (pytest.approx(value) if isinstance(value, float) else value)
        here = detect_batch(local, images, ALL)
        there = detect_batch(remote, images, ALL)
        remote.close()
    finally:
        assert server.stop() == 0
    assert any(image.detections for image in here)
    assert _rows(there) == _rows(here)
    for a, b in zip(here, there, strict=True):
        assert a.image_size == b.image_size
        boxes_a = np.array([d.box for d in a.detections]).reshape(-1, 4)
        boxes_b = np.array([d.box for d in b.detections]).reshape(-1, 4)
        np.testing.assert_allclose(boxes_b, boxes_a, atol=1e-3)  # float32 on the wire
        assert [len(d.polygons) for d in a.detections] == [len(d.polygons) for d in b.detections]


def test_eager_checkpoint_backend_matches_its_export(
    shapes_small: Path, tiny_runs: dict, mask_model: Path
) -> None:
    """The same weights in torch eager and on ONNX Runtime: same labels, boxes within parity's
    IoU, for the detections both keep above the model's default threshold."""
    images = _images(shapes_small)
    eager = open_backend(checkpoint=tiny_runs["mask_rcnn", "align"])
    onnx = open_backend(model=mask_model, device="cpu")
    assert (eager.info.labels, eager.info.category_ids) == (
        onnx.info.labels,
        onnx.info.category_ids,
    )
    options = DetectOptions(score_threshold=0.3)
    compared = 0
    for ours, theirs in zip(
        detect_batch(eager, images, options), detect_batch(onnx, images, options), strict=True
    ):
        assert ours.raw.proposals is not None and len(ours.raw.proposals)  # eager only
        assert [d.label for d in ours.detections] == [d.label for d in theirs.detections]
        if ours.detections:
            iou = box_iou(
                np.array([d.box for d in ours.detections]),
                np.array([d.box for d in theirs.detections]),
            )
            assert np.diag(iou).min() > 0.99
            compared += len(ours.detections)
    assert compared > 0


def test_detect_each_reports_a_bad_image_and_goes_on(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    local = open_backend(model=mask_model, device="cpu")
    good = sorted((shapes_small / "images").glob("*.jpg"))[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    items = [(0, good[0]), (1, broken), (2, tmp_path / "missing.jpg"), (3, good[1])]
    answers = dict(detect_each(local, items, ALL, batch_size=4))
    assert isinstance(answers[0], Detected) and isinstance(answers[3], Detected)
    assert isinstance(answers[1], InputError) and isinstance(answers[2], InputError)
    assert "cannot read it" in str(answers[2])


def test_options_are_checked_when_built_whoever_builds_them() -> None:
    with pytest.raises(ConfigError, match=r"score_threshold 1.5: use a value in \[0, 1\]"):
        DetectOptions(score_threshold=1.5)
    with pytest.raises(ConfigError, match="max_detections 0: use 1 or more"):
        DetectOptions(max_detections=0)
    with pytest.raises(ConfigError, match="polygon_tolerance -1: use 0 or more"):
        DetectOptions(polygon_tolerance=-1)
    assert DetectOptions(classes=["circle", 3]).classes == ("circle", "3")


def test_detection_keeps_xyxy_and_shows_tlwh_at_the_edges() -> None:
    detection = Detection((10.0, 20.0, 50.0, 80.0), "car", 3, 0.9)
    assert detection.tlwh == (20.0, 10.0, 40.0, 60.0)  # top = y1, left = x1, width, height
    assert detection.line() == "20.00,10.00,40.00,60.00,car,0.9000"
    message = detection_message(detection)
    assert (message.box.top, message.box.left, message.box.width, message.box.height) == (
        20.0,
        10.0,
        40.0,
        60.0,
    )
    assert detection_from_message(message).box == detection.box


def test_openvino_engine_matches_onnx_runtime_on_the_same_model(
    shapes_small: Path, mask_model: Path
) -> None:
    pytest.importorskip("openvino")
    images = _images(shapes_small)
    ort_model = open_backend(model=mask_model, device="cpu", engine="onnxruntime")
    ov_model = open_backend(model=mask_model, device="cpu", engine="openvino")
    assert (ort_model.provider, ov_model.provider) == ("CPUExecutionProvider", "OpenVINO CPU")
    compared = 0
    for image in images:
        rgb = ort_model.prepare(image)
        compared += _same(ort_model.infer(rgb), ov_model.infer(rgb), 1e-4, 1e-2, 1e-3)
    assert compared > 0


@pytest.mark.slow
def test_serve_with_the_openvino_backend_reports_it_and_answers_alike(
    shapes_small: Path, mask_model: Path
) -> None:
    pytest.importorskip("openvino")
    images = _images(shapes_small)
    here = detect_batch(open_backend(model=mask_model, device="cpu"), images, ALL)
    server = start_server(mask_model, "--backend", "openvino")
    try:
        remote = open_backend(server=server.address)
        assert remote.model_info().provider == "OpenVINO CPU"
        there = detect_batch(remote, images, ALL)
        remote.close()
    finally:
        assert server.stop() == 0
    assert _rows(there) == _rows(here)


def test_auto_is_openvino_on_the_cpu_when_installed_and_onnx_runtime_otherwise(
    mask_model: Path,
) -> None:
    detector = Detector(mask_model, device="cpu")  # backend "auto" is the default
    if "openvino" in installed_engines():
        assert (detector.engine.name, detector.provider) == ("openvino", "OpenVINO CPU")
    else:
        assert detector.provider == "CPUExecutionProvider"


# --------------------------------------------------------------------------- batch graphs


def test_plan_batches_uses_the_largest_graphs_first() -> None:
    assert plan_batches(7, [2, 4]) == [4, 2, 1]
    assert plan_batches(8, [2, 4, 8]) == [8]
    assert plan_batches(3, []) == [1, 1, 1]
    assert plan_batches(1, [2]) == [1]


@pytest.fixture(scope="module")
def batch_model(tiny_runs: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Mask R-CNN exported with graphs for 2 and 4 images."""
    out = tmp_path_factory.mktemp("batch_model") / "tiny_batch.onnx"
    checkpoint = str(tiny_runs["mask_rcnn", "align"])
    result = run_detect(
        "export", "--checkpoint", checkpoint, "--out", str(out), "--batch-sizes", "4,2"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_a_batch_is_one_call_per_batch_graph_and_equals_single_images(
    shapes_small: Path, batch_model: Path, engine: str
) -> None:
    if engine == "openvino":
        pytest.importorskip("openvino")
    card = ModelCard.read(card_path(batch_model))
    assert card.batch_sizes == [2, 4]
    assert all(batch_graph_path(batch_model, b).is_file() for b in (2, 4))
    detector = Detector(batch_model, device="cpu", backend=engine)
    if engine == "openvino":  # wrong masks after an image without detections: not used
        assert detector.batch_engines == {}
    else:
        assert sorted(detector.batch_engines) == [2, 4]
    paths = sorted((shapes_small / "images").glob("*.jpg"))[:7]
    rgbs = [decode_image(p.read_bytes()) for p in paths]
    rgbs.insert(3, rgbs[0][:80, :90].copy())  # another size: runs on its own
    calls = {b: 0 for b in (2, 4)}
    for b, engine_b in detector.batch_engines.items():
        run = engine_b.run

        def counted(inputs: dict, run=run, b=b) -> dict:
            calls[b] += 1
            assert inputs["images"].shape[0] == b
            return run(inputs)

        engine_b.run = counted
    batched = detector.infer_batch(rgbs)
    if engine == "onnxruntime":  # 7 images of one size: 4 + 2 + 1; the odd one alone
        assert calls == {4: 1, 2: 1}
    compared = 0
    for rgb, raw in zip(rgbs, batched, strict=True):
        compared += _same(raw, detector.infer(rgb), 1e-5, 1e-3, 1e-4)
    assert compared > 0


def test_a_missing_or_changed_batch_graph_is_named_at_load(
    batch_model: Path, tmp_path: Path
) -> None:
    for name in ("tiny_batch.onnx", "tiny_batch.json", "tiny_batch.b2.onnx"):
        (tmp_path / name).write_bytes((batch_model.parent / name).read_bytes())
    with pytest.raises(ModelError, match=r"tiny_batch\.b4\.onnx not found; its model card"):
        Detector(tmp_path / "tiny_batch.onnx", device="cpu", backend="onnxruntime")
    (tmp_path / "tiny_batch.b4.onnx").write_bytes(b"changed")
    with pytest.raises(ModelError, match=r"tiny_batch\.b4\.onnx does not match its model card"):
        Detector(tmp_path / "tiny_batch.onnx", device="cpu", backend="onnxruntime")


@pytest.mark.slow
def test_a_server_with_batch_graphs_answers_concurrent_calls_as_single_images(
    shapes_small: Path, batch_model: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from detect.client import DetectorClient

    images = _images(shapes_small)
    local = Detector(batch_model, device="cpu", backend="onnxruntime")
    expected = [local.detect(image, options=ALL) for image in images]
    server = start_server(batch_model, "--backend", "onnxruntime", "--batch-timeout-ms", "200")
    try:
        with DetectorClient(server.address) as client, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.detect(images[i % 4], options=ALL), range(8)))
    finally:
        assert server.stop() == 0
    assert max(r.timings["batch_size"] for r in results) > 1  # the batch graphs ran
    for i, result in enumerate(results):
        want = expected[i % 4]
        assert [d.label for d in result.detections] == [d.label for d in want]
        got_boxes = np.array([d.box for d in result.detections]).reshape(-1, 4)
        want_boxes = np.array([d.box for d in want]).reshape(-1, 4)
        np.testing.assert_allclose(got_boxes, want_boxes, atol=1e-3)


@pytest.mark.parametrize("backend", ["onnxruntime", "eager"])
def test_an_image_far_larger_than_the_model_is_shrunk_first_and_answers_in_its_pixels(
    shapes_small: Path, tiny_runs: dict, mask_model: Path, backend: str
) -> None:
    """The tiny model's input is 96 px, the images' size. The same image blown up 4x (each pixel
    a 4x4 block) is shrunk back to exactly it by area averaging, so it gives the same detections
    at 4x the coordinates, masks included, on ONNX Runtime and in torch eager alike."""
    if backend == "eager":
        model = open_backend(checkpoint=tiny_runs["mask_rcnn", "align"])
    else:
        model = open_backend(model=mask_model, device="cpu", engine="onnxruntime")
    rgb = decode_image(_images(shapes_small)[0])
    big = np.repeat(np.repeat(rgb, 4, axis=0), 4, axis=1)
    small_raw, big_raw = model.infer_batch([rgb, big])
    assert big_raw.image_size == (4 * rgb.shape[0], 4 * rgb.shape[1])
    assert len(small_raw) == len(big_raw) > 0
    np.testing.assert_array_equal(small_raw.labels, big_raw.labels)
    np.testing.assert_allclose(big_raw.boxes, 4 * small_raw.boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(big_raw.scores, small_raw.scores, atol=1e-6)
    small, big_detections = (model.postprocess(r, ALL) for r in (small_raw, big_raw))
    areas = [(sum(p.area for p in d.polygons), sum(p.area for p in b.polygons))
             for d, b in zip(small, big_detections, strict=True)]  # fmt: skip
    assert all(abs(b - 16 * a) <= 0.1 * 16 * a + 64 for a, b in areas)


@pytest.mark.parametrize("engine", installed_engines())
def test_threads_set_the_engines_intra_op_threads_and_keep_its_answers(engine: str) -> None:
    demo = Path(__file__).resolve().parents[1] / "models" / "demo.onnx"
    image = (demo.parents[1] / "samples/images/000000.jpg").read_bytes()
    answers = []
    for threads in (1, 2):
        with closing(open_backend(model=demo, engine=engine, device="cpu", threads=threads)) as b:
            if engine == "onnxruntime":
                used = b.engine.session.get_session_options().intra_op_num_threads
            else:
                used = b.engine.compiled.get_property("INFERENCE_NUM_THREADS")
            assert used == threads
            (found,) = detect_batch(b, [image], DetectOptions())
            answers.append([d.line() for d in found.detections])
    assert answers[0] == answers[1] and answers[0]

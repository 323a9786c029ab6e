"""Class-agnostic NMS in the runtime: one object gets one box, whatever classes the model gave it.

Real parts throughout: the committed demo model (`models/demo.onnx` and its card, which predates
the option) on ONNX Runtime, synthetic images it labels some shapes of twice, a real
`detect serve` process, and the real CLI. What the runtime keeps is checked against
``torchvision.ops.nms`` on the same arrays.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import run_detect
from serving import start_server

from detect.cli import build_parser
from detect.client import ClientSettings, DetectorClient
from detect.commands.flags import from_flags
from detect.data.synth import write_dataset
from detect.errors import ModelError
from detect.evaluate import EvalConfig, predict_with
from detect.local_server import LocalServer
from detect.metrics.coco import load_gt
from detect.predict import PredictConfig
from detect.runtime.backend import open_backend
from detect.runtime.detector import Detector
from detect.runtime.model_card import AGNOSTIC_NMS_IOU, ModelCard
from detect.structures import Detection, RawDetections
from detect.video.config import VideoConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo.onnx"

# Two boxes on one object, labelled circle (1) and rectangle (2): IoU 38 * 38 / (40 * 40) = 0.9025;
# and a rectangle elsewhere. xyxy pixels of a 100 x 100 image.
ONE_OBJECT_TWO_CLASSES = RawDetections(
    boxes=np.array([[10, 10, 50, 50], [12, 12, 50, 50], [60, 60, 90, 90]], np.float32),
    scores=np.array([0.9, 0.8, 0.7], np.float32),
    labels=np.array([1, 2, 2], np.int64),
    image_size=(100, 100),
)


def _summary(detections: list[Detection]) -> list[tuple[str, float, float]]:
    """``(label, left, top)`` of each detection, in order."""
    return [(d.label, d.left, d.top) for d in detections]


def _xyxy(detections: list[Detection]) -> np.ndarray:
    return np.array([[d.left, d.top, d.left + d.width, d.top + d.height] for d in detections])


def _demo_copy(folder: Path, **thresholds: object) -> Path:
    """The demo model with its card's thresholds updated by ``thresholds``."""
    model = folder / "demo.onnx"
    shutil.copy(DEMO, model)
    card = json.loads(DEMO.with_suffix(".json").read_text())
    card["thresholds"].update(thresholds)
    model.with_suffix(".json").write_text(json.dumps(card))
    return model


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(DEMO, device="cpu", warmup_runs=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six synthetic 256-px images (``images/``) and their ``annotations.json``."""
    root = tmp_path_factory.mktemp("agnostic")
    write_dataset(root, images=6, seed=5, size=256)
    return root


@pytest.fixture(scope="module")
def images(dataset: Path) -> list[Path]:
    return sorted((dataset / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    # the local runs use the same engine and file (not its int8 model, which a CPU would serve)
    process = start_server(DEMO, "--backend", "onnxruntime", "--precision", "fp32")
    yield process
    assert process.stop() == 0


# --------------------------------------------------------------------------- runtime


def test_one_object_labelled_twice_keeps_both_boxes_by_default_and_the_best_with_agnostic_nms(
    detector: Detector,
) -> None:
    raw = ONE_OBJECT_TWO_CLASSES
    both = [("circle", 10.0, 10.0), ("rectangle", 12.0, 12.0), ("rectangle", 60.0, 60.0)]
    assert _summary(detector.postprocess(raw, polygons=False)) == both
    assert _summary(detector.postprocess(raw, agnostic_nms=False)) == both
    best = detector.postprocess(raw, agnostic_nms=True)
    assert _summary(best) == [("circle", 10.0, 10.0), ("rectangle", 60.0, 60.0)]
    assert [d.score for d in best] == pytest.approx([0.9, 0.7])


def test_agnostic_nms_runs_after_the_class_filter_and_before_max_detections(
    detector: Detector,
) -> None:
    raw = ONE_OBJECT_TWO_CLASSES
    # the circle is filtered out first, so it cannot suppress the rectangle on the same object
    only = detector.postprocess(raw, classes=["rectangle"], agnostic_nms=True)
    assert _summary(only) == [("rectangle", 12.0, 12.0), ("rectangle", 60.0, 60.0)]
    # the best two after suppression, not the best two before it
    two = detector.postprocess(raw, max_detections=2, agnostic_nms=True)
    assert _summary(two) == [("circle", 10.0, 10.0), ("rectangle", 60.0, 60.0)]


def test_agnostic_nms_keeps_what_torchvision_nms_keeps_of_the_models_own_detections(
    detector: Detector, images: list[Path]
) -> None:
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    suppressed = 0
    for path in images:
        rgb = detector.prepare(path.read_bytes())
        raw = detector.infer(rgb)
        for threshold in (0.0, detector.card.thresholds["score"]):
            got = detector.postprocess(
                raw, score_threshold=threshold, agnostic_nms=True, polygons=False
            )
            above = np.flatnonzero(raw.scores >= threshold)
            kept = ops.nms(
                torch.from_numpy(raw.boxes[above]),
                torch.from_numpy(raw.scores[above]),
                AGNOSTIC_NMS_IOU,
            ).numpy()
            expected = above[kept]
            assert [d.label for d in got] == [detector.labels[k - 1] for k in raw.labels[expected]]
            np.testing.assert_allclose([d.score for d in got], raw.scores[expected])
            np.testing.assert_allclose(_xyxy(got).reshape(-1, 4), raw.boxes[expected], atol=1e-4)
            suppressed += len(above) - len(expected)
    assert suppressed > 0  # the demo model does label some shapes as two classes


# --------------------------------------------------------------------------- model card


def test_a_card_without_the_fields_loads_with_agnostic_nms_off_at_iou_0_7(tmp_path: Path) -> None:
    old = json.loads(DEMO.with_suffix(".json").read_text())
    for key in ("agnostic_nms", "agnostic_nms_iou"):
        old["thresholds"].pop(key, None)  # as cards written before the option have it
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    card = ModelCard.read(path)
    assert card.agnostic_nms is False
    assert card.agnostic_nms_iou == AGNOSTIC_NMS_IOU == 0.7


def test_the_cards_default_and_iou_apply_when_a_call_does_not_say(tmp_path: Path) -> None:
    raw = ONE_OBJECT_TWO_CLASSES
    on = Detector(_demo_copy(tmp_path, agnostic_nms=True), device="cpu", warmup_runs=0)
    assert len(on.postprocess(raw)) == 2
    assert len(on.postprocess(raw, agnostic_nms=False)) == 3
    loose = tmp_path / "loose"
    loose.mkdir()
    model = _demo_copy(loose, agnostic_nms=True, agnostic_nms_iou=0.95)  # above 0.9025
    assert len(Detector(model, device="cpu", warmup_runs=0).postprocess(raw)) == 3


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"agnostic_nms": "yes"}, "thresholds.agnostic_nms must be true or false"),
        ({"agnostic_nms_iou": 1.5}, r"thresholds.agnostic_nms_iou must be a number in \[0, 1\]"),
        ({"agnostic_nms_iou": True}, r"thresholds.agnostic_nms_iou must be a number in \[0, 1\]"),
    ],
)
def test_bad_agnostic_nms_values_in_a_card_are_refused_naming_the_field(
    thresholds: dict, message: str, tmp_path: Path
) -> None:
    card = json.loads(DEMO.with_suffix(".json").read_text())
    card["thresholds"].update(thresholds)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match=message):
        ModelCard.read(path)


# --------------------------------------------------------------------------- server and client


def test_server_honours_agnostic_nms_per_request_and_reports_the_cards_default(
    server: LocalServer, detector: Detector, images: list[Path]
) -> None:
    plain_total = agnostic_total = 0
    with DetectorClient(server.address) as client:
        info = client.model_info()
        assert info.default_agnostic_nms is False
        assert info.agnostic_nms_iou == pytest.approx(AGNOSTIC_NMS_IOU)
        for path in images:
            data = path.read_bytes()
            plain = client.detect(data, score_threshold=0.0, polygons=False).detections
            off = client.detect(data, score_threshold=0.0, agnostic_nms=False, polygons=False)
            on = client.detect(data, score_threshold=0.0, agnostic_nms=True, polygons=False)
            local = detector.detect(data, score_threshold=0.0, agnostic_nms=True, polygons=False)
            assert _summary(off.detections) == _summary(plain)  # unset: the card's default, off
            assert len(on.detections) <= len(plain)
            assert [d.label for d in on.detections] == [d.label for d in local]
            np.testing.assert_allclose(
                _xyxy(on.detections).reshape(-1, 4), _xyxy(local).reshape(-1, 4), atol=1e-3
            )
            plain_total += len(plain)
            agnostic_total += len(on.detections)
    assert agnostic_total < plain_total


@pytest.mark.slow
def test_video_through_the_server_and_locally_give_the_same_agnostic_detections(
    server: LocalServer, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.mp4"
    made = run_detect("synth", "--video", str(clip), "--frames", "6", "--seed", "3")
    assert made.returncode == 0, made.stderr

    def detections(*args: str) -> list[list[dict]]:
        jsonl = tmp_path / "out.jsonl"
        result = run_detect("video", str(clip), "--score", "0", "--no-polygons", "--jsonl",
                            str(jsonl), *args)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        return [json.loads(line)["detections"] for line in jsonl.read_text().splitlines()]

    fp32 = ("--model", str(DEMO), "--device", "cpu", "--precision", "fp32")  # as the server's
    local = detections(*fp32, "--backend", "onnxruntime", "--agnostic-nms")
    remote = detections("--server", server.address, "--agnostic-nms")
    plain = detections(*fp32)
    assert len(local) == len(remote) == len(plain) == 6
    assert [[d["label"] for d in frame] for frame in remote] == [
        [d["label"] for d in frame] for frame in local
    ]
    assert all(len(a) <= len(p) for a, p in zip(local, plain, strict=True))


def test_eval_model_and_server_sources_score_the_same_agnostic_detections(
    server: LocalServer, dataset: Path, images: list[Path], tmp_path: Path
) -> None:
    gt_path = dataset / "annotations.json"
    gt = load_gt(gt_path)
    paths = {i + 1: path for i, path in enumerate(images)}  # synth: image i has COCO id i + 1

    def results(agnostic: bool, **source: object) -> list[tuple[int, int]]:
        config = EvalConfig(gt=gt_path, out=tmp_path, agnostic_nms=agnostic)
        backend = open_backend(**source)
        found = predict_with(backend, config, paths, gt, str(source)).evaluator.results
        backend.close()
        return sorted((r["image_id"], r["category_id"]) for r in found)

    model = results(True, model=DEMO, device="cpu", engine="onnxruntime")
    assert results(True, server=server.address) == model
    assert len(model) < len(results(False, model=DEMO, device="cpu"))


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_predict_agnostic_nms_flag_writes_fewer_predictions(
    images: list[Path], tmp_path: Path
) -> None:
    counts = {}
    for flag in ("--agnostic-nms", "--no-agnostic-nms"):
        out = tmp_path / flag
        result = run_detect("predict", *map(str, images), "--model", str(DEMO), "--out",
                            str(out), "--score", "0", "--device", "cpu", flag)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        counts[flag] = len(json.loads((out / "predictions.json").read_text()))
    assert counts["--agnostic-nms"] < counts["--no-agnostic-nms"]


@pytest.mark.parametrize("verb", ["predict", "video", "eval", "client"])
def test_agnostic_nms_flags_default_to_the_cards_choice(verb: str) -> None:
    required = {
        "predict": ["x.jpg", "--model", "m.onnx", "--out", "o"],
        "video": ["clip.mp4", "--model", "m.onnx"],
        "eval": ["--gt", "gt.json", "--out", "o", "--model", str(DEMO)],  # it must exist
        "client": ["--server", "127.0.0.1:1", "--info"],
    }[verb]
    parser = build_parser()

    def agnostic(*flags: str) -> bool | None:
        args = parser.parse_args([verb, *required, *flags])
        if verb == "video":  # declared settings: the options the run will ask for
            return from_flags(VideoConfig, args).options.agnostic_nms
        if verb == "predict":
            return from_flags(PredictConfig, args).options.agnostic_nms
        if verb == "eval":
            return from_flags(EvalConfig, args).agnostic_nms
        return from_flags(ClientSettings, args).detection.agnostic_nms

    assert agnostic() is None
    assert agnostic("--agnostic-nms") is True
    assert agnostic("--no-agnostic-nms") is False


def test_eval_refuses_agnostic_nms_for_a_predictions_file(tmp_path: Path) -> None:
    result = run_detect("eval", "--gt", str(tmp_path / "gt.json"), "--out", str(tmp_path / "o"),
                        "--predictions", str(tmp_path / "p.json"), "--agnostic-nms")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: --agnostic-nms with --predictions")
    assert len(result.stderr.strip().splitlines()) == 1

"""The model repository of `detect serve --models DIR`, its reloads and load shedding, end to end:
real `detect serve` processes on 127.0.0.1, real gRPC clients, real ONNX Runtime, real files
copied into and changed in the repository while the server runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from helpers import run_detect
from serving import add_version, metric_value, start_server

from detect.client import DetectorClient, Frame, ServerError
from detect.runtime.detector import Detector

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo.onnx"
LOW = 0.01  # the tiny model's scores are low: ask for everything it finds


@pytest.fixture(scope="module")
def image(shapes_small: Path) -> bytes:
    return sorted((shapes_small / "images").glob("*.jpg"))[0].read_bytes()


def _boxes(detections: list) -> np.ndarray:
    return np.array([d.box for d in detections], np.float32).reshape(-1, 4)


def test_two_models_are_served_side_by_side_by_name(
    mask_model: Path, image: bytes, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    add_version(repository, "shapes", 1, mask_model)
    add_version(repository, "demo", 1, DEMO)
    add_version(repository, "demo", 2, DEMO)
    (repository / "demo" / "notes").mkdir()  # not a version: ignored
    args = ("--backend", "onnxruntime", "--default-model", "shapes", "--versions", "2")
    with start_server(repository, *args) as server:
        ready = server.wait_for("ready: ")
        assert "demo (version 2," in ready and "shapes (version 1," in ready
        assert ready.endswith("default model shapes")
        with DetectorClient(server.address) as client:
            listed = client.list_models()
            assert listed.default_model == "shapes"
            assert [(m.name, m.version) for m in listed.models] == [
                ("demo", "2"),
                ("demo", "1"),
                ("shapes", "1"),
            ]
            assert all(len(m.sha256) == 64 for m in listed.models)
            default = client.detect(image, score_threshold=LOW)
            assert (default.model_name, default.model_version) == ("shapes", "1")
        with DetectorClient(server.address, model="demo") as demo:
            result = demo.detect(image, score_threshold=LOW)
            assert (result.model_name, result.model_version) == ("demo", "2")
            info = demo.model_info()
            assert (info.name, info.version, info.backbone) == ("demo", "2", "mobilenet_v3_fpn")
            local = Detector(DEMO, device="cpu", backend="onnxruntime", warmup_runs=0)
            expected = local.detect(image, score_threshold=LOW)
            np.testing.assert_allclose(_boxes(result.detections), _boxes(expected), atol=1e-3)
            assert [d.label for d in result.detections] == [d.label for d in expected]
        with DetectorClient(server.address, model="demo", model_version="1") as older:
            assert older.detect(image).model_version == "1"
        for model, version, problem in [
            ("person", "", "model 'person' is not served; served models: demo, shapes"),
            ("demo", "7", "model 'demo' has no version '7' serving; serving versions: 2, 1"),
        ]:
            with DetectorClient(server.address, model=model, model_version=version) as client:
                with pytest.raises(ServerError, match=problem) as refused:
                    client.detect(image)
                assert refused.value.code == grpc.StatusCode.NOT_FOUND
        metrics = server.metrics()
    for model, version in [("demo", "2"), ("demo", "1"), ("shapes", "1")]:
        labels = {"method": "Detect", "model": model, "version": version}
        assert metric_value(metrics, "detect_request_latency_seconds_count", **labels) == 1
        assert metric_value(metrics, "detect_model_info", name=model, version=version) == 1


def _stream(image: bytes, switched: threading.Event, after: int = 10) -> Iterator[Frame]:
    """Frames every 50 ms until ``after`` frames have gone since ``switched`` (at most 600)."""
    since = 0
    for index in range(600):
        if switched.is_set():
            since += 1
            if since > after:
                return
        time.sleep(0.05)
        yield Frame(image, str(index))


@pytest.mark.slow
def test_a_new_version_under_a_running_stream_loses_no_frame_and_changes_model_version(
    mask_model: Path, image: bytes, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    add_version(repository, "shapes", 1, mask_model)
    with start_server(repository, "--backend", "onnxruntime", "--poll", "0.2") as server:
        switched = threading.Event()
        versions, frame_ids = [], []
        with DetectorClient(server.address, timeout=120) as client:
            frames = _stream(image, switched)
            for result in client.detect_stream(frames, score_threshold=LOW):
                frame_ids.append(result.frame_id)
                versions.append(result.model_version)
                if len(frame_ids) == 5:  # copied while the stream runs: the watcher finds it
                    add_version(repository, "shapes", 2, mask_model)
                if result.model_version == "2":
                    switched.set()
            assert frame_ids == [str(i) for i in range(len(frame_ids))]  # none lost, in order
            assert versions == sorted(versions) and versions[0] == "1" and versions[-1] == "2"
            server.wait_for("loaded shapes 2")
            server.wait_for("unloaded shapes 1")
            assert [m.version for m in client.list_models().models] == ["2"]
        metrics = server.metrics()
    assert metric_value(metrics, "detect_model_info", name="shapes", version="1") == 0
    assert metric_value(metrics, "detect_model_info", name="shapes", version="2") == 1
    assert 'version="1"' not in metrics  # the unloaded version's series are gone


@pytest.mark.parametrize("corruption", ["half-copied", "not-onnx"])
def test_a_corrupt_new_version_is_refused_while_the_old_one_answers(
    mask_model: Path, image: bytes, tmp_path: Path, corruption: str
) -> None:
    repository = tmp_path / "models"
    add_version(repository, "shapes", 1, mask_model)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("s3cret\n")
    args = ("--backend", "onnxruntime", "--poll", "0", "--auth-token-file", str(tokens))
    with start_server(repository, *args) as server:
        with DetectorClient(server.address) as anonymous:
            with pytest.raises(ServerError) as denied:
                anonymous.reload_models()
            assert denied.value.code == grpc.StatusCode.UNAUTHENTICATED
        with DetectorClient(server.address, token="s3cret") as client:
            new = add_version(repository, "shapes", 2, mask_model)
            if corruption == "half-copied":
                data = mask_model.read_bytes()
                (new / "model.onnx").write_bytes(data[: len(data) // 2])
                reason = "sha256"
            else:  # a card that matches a file ONNX Runtime cannot read
                (new / "model.onnx").write_bytes(b"not an onnx graph")
                card = json.loads((new / "model.json").read_text())
                card["sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
                (new / "model.json").write_text(json.dumps(card))
                reason = "cannot load"
            changes = list(client.reload_models().changes)
            assert len(changes) == 1 and changes[0].startswith("refused shapes 2: ")
            assert reason in changes[0]
            assert client.detect(image).model_version == "1"  # the old one keeps serving
            assert list(client.reload_models().changes) == []  # not tried again until it changes
            shutil.copy(mask_model, new / "model.onnx")
            shutil.copy(mask_model.with_suffix(".json"), new / "model.json")
            reloaded = client.reload_models()
            assert list(reloaded.changes) == ["loaded shapes 2", "unloaded shapes 1"]
            assert [m.version for m in reloaded.models] == ["2"]
            assert client.detect(image).model_version == "2"
    assert "refused shapes 2" in server.process.stderr.read()


def test_a_model_file_replaced_in_place_is_reloaded_under_its_new_version(
    mask_model: Path, image: bytes, tmp_path: Path
) -> None:
    model = tmp_path / "live.onnx"
    shutil.copy(mask_model, model)
    shutil.copy(mask_model.with_suffix(".json"), model.with_suffix(".json"))
    card = json.loads(model.with_suffix(".json").read_text())
    demo_version = json.loads(DEMO.with_suffix(".json").read_text())["sha256"][:12]
    with (
        start_server(model, "--backend", "onnxruntime", "--poll", "0") as server,
        DetectorClient(server.address) as client,
    ):
        before = client.detect(image)
        assert before.model_version == card["sha256"][:12]
        shutil.copy(DEMO, model)
        shutil.copy(DEMO.with_suffix(".json"), model.with_suffix(".json"))
        changes = list(client.reload_models().changes)
        assert changes == [f"loaded live {demo_version}", f"unloaded live {before.model_version}"]
        after = client.detect(image)
        assert (after.model_name, after.model_version) == ("live", demo_version)


def test_under_overload_calls_past_their_deadline_are_shed_at_once(image: bytes) -> None:
    args = ("--backend", "onnxruntime", "--max-batch", "1", "--batch-timeout-ms", "0")
    with start_server(DEMO, *args) as server:
        with DetectorClient(server.address, timeout=60) as client:
            client.detect(image)  # the first batch measures the model's time per image
        deadline_s = 1.0
        outcomes: list[tuple[str, float, float | None]] = []

        def call(client: DetectorClient) -> None:
            started = time.monotonic()
            try:
                client.detect(image)
                outcome, retry = "OK", None
            except ServerError as exc:
                outcome, retry = exc.code.name, exc.retry_after_s
            outcomes.append((outcome, time.monotonic() - started, retry))

        with (
            DetectorClient(server.address, timeout=deadline_s) as client,
            ThreadPoolExecutor(48) as pool,
        ):
            list(pool.map(lambda _: call(client), range(96)))
        metrics = server.metrics()
    shed = [
        (seconds, retry) for outcome, seconds, retry in outcomes if outcome == "RESOURCE_EXHAUSTED"
    ]
    late = [o for o in outcomes if o[0] == "DEADLINE_EXCEEDED"]
    answered = [o for o in outcomes if o[0] == "OK"]
    assert shed and answered, outcomes
    assert all(seconds < deadline_s and retry and retry > 0 for seconds, retry in shed)
    assert float(np.median([seconds for seconds, _ in shed])) < deadline_s / 2
    assert len(late) < len(shed)  # the queue holds only what it can answer in time
    code = metric_value(
        metrics, "detect_requests_total", method="Detect", code="RESOURCE_EXHAUSTED"
    )
    assert code == len(shed)


def test_an_empty_repository_or_a_missing_default_stops_serve_with_one_line(
    mask_model: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "person" / "latest").mkdir(parents=True)  # not a version folder
    repository = tmp_path / "models"
    add_version(repository, "shapes", 1, mask_model)
    for args, problem in [
        ((str(empty),), "no model found; put each model at NAME/VERSION/model.onnx"),
        ((str(repository), "--default-model", "person"), "--default-model person: no such"),
        ((str(tmp_path / "nowhere"),), "no such folder"),
    ]:
        result = run_detect("serve", "--models", *args, "--port", "0", "--metrics-port", "0")
        assert result.returncode == 2
        assert "listening" not in result.stdout
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and problem in errors[0], result.stderr

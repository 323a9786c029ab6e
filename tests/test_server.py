"""The gRPC service end to end: a real `detect serve` process on 127.0.0.1 (ephemeral ports),
real gRPC clients (`detect.client.DetectorClient`, raw stubs, health and reflection clients),
real ONNX Runtime on the tiny exported Mask R-CNN, and Prometheus scraped over HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import run_detect
from PIL import Image
from serving import certificate, metric_value, start_server

from detect.client import DetectorClient, Frame, ServerError
from detect.local_server import LocalServer
from detect.runtime.detector import Detector
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc

RGB8 = pb.PIXEL_FORMAT_RGB8
LOW = 0.01  # the tiny model's scores are low: ask for everything it finds


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(shapes_small: Path) -> list[bytes]:
    """The 12 synthetic JPEGs, plus two other sizes, as encoded bytes."""
    files = sorted((shapes_small / "images").glob("*.jpg"))
    blobs = [p.read_bytes() for p in files]
    rgb = np.asarray(Image.open(files[0]).convert("RGB"))
    return [*blobs, _png(rgb[:, :60]), _png(np.ascontiguousarray(rgb.transpose(1, 0, 2)))]


@pytest.fixture(scope="module")
def server(mask_model: Path) -> LocalServer:
    """A server with default settings (batching on), shared by the tests that leave it as is."""
    process = start_server(mask_model, "--batch-timeout-ms", "20", "--backend", "onnxruntime")
    yield process
    assert process.stop() == 0


@pytest.fixture
def client(server: LocalServer) -> DetectorClient:
    with DetectorClient(server.address) as c:
        yield c


def _stub(server: LocalServer) -> pb_grpc.DetectorStub:
    return pb_grpc.DetectorStub(grpc.insecure_channel(server.address))


def _code(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    """The status code and message a call ends with."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def _still_serving(server: LocalServer, image: bytes) -> None:
    with DetectorClient(server.address) as c:
        assert c.detect(image, score_threshold=LOW).model_name
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
        status = health.Check(health_pb2.HealthCheckRequest(service="detect.v1.Detector"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING


# --------------------------------------------------------------------------- unary and stream


def test_detect_returns_the_runtimes_detections_as_tlwh_label_score_polygons(
    client: DetectorClient, mask_model: Path, images: list[bytes]
) -> None:
    local = Detector(mask_model, device="cpu")
    total = 0
    for image in images:
        result = client.detect(image, score_threshold=LOW, frame_id="f", timestamp_ms=42)
        expected = local.detect(image, score_threshold=LOW)
        assert result.frame_id == "f" and result.timestamp_ms == 42
        assert result.model_name == "tiny_mask" and len(result.model_version) == 12
        rgb = local.prepare(image)
        assert (result.height, result.width) == rgb.shape[:2]
        assert len(result.detections) == len(expected)
        total += len(expected)
        for got, want in zip(result.detections, expected, strict=True):
            assert (got.label, got.class_id) == (want.label, want.class_id)
            np.testing.assert_allclose(
                [got.top, got.left, got.width, got.height, got.score],
                [want.top, want.left, want.width, want.height, want.score],
                atol=1e-4,
            )
            assert len(got.polygons) == len(want.polygons)
            for p, q in zip(got.polygons, want.polygons, strict=True):
                np.testing.assert_allclose(p.exterior, q.exterior, atol=1e-4)
        t = result.timings
        assert t["total_ms"] >= t["inference_ms"] > 0 and t["batch_size"] >= 1
        assert min(t["decode_ms"], t["queue_ms"], t["postprocess_ms"]) >= 0
    assert total > len(images)


def test_options_threshold_max_detections_classes_and_no_polygons(
    client: DetectorClient, images: list[bytes]
) -> None:
    everything = client.detect(images[0], score_threshold=LOW).detections
    assert len(everything) > 2
    top2 = client.detect(images[0], score_threshold=LOW, max_detections=2).detections
    assert [d.score for d in top2] == [d.score for d in everything[:2]]
    label = everything[0].label
    only = client.detect(images[0], score_threshold=LOW, classes=[label]).detections
    assert only and {d.label for d in only} == {label}
    by_id = client.detect(images[0], score_threshold=LOW, classes=[everything[0].class_id])
    assert [d.score for d in by_id.detections] == [d.score for d in only]
    bare = client.detect(images[0], score_threshold=LOW, polygons=False).detections
    assert len(bare) == len(everything) and not any(d.polygons for d in bare)
    default = client.detect(images[0]).detections  # the card's 0.5 (a training image)
    assert default, "no detection at the card's threshold: the check below would hold on nothing"
    assert all(d.score >= 0.5 for d in default)


def test_raw_rgb_bgr_gray_and_rgba_pixels_match_the_encoded_image(
    client: DetectorClient, images: list[bytes]
) -> None:
    # A PNG (lossless: its pixels are exactly the raw arrays below), not square (a transposed
    # layout would show), of the scene the tiny model finds most in.
    scenes = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))[:, :-7] for b in images[:12]]
    pngs = [_png(np.ascontiguousarray(rgb)) for rgb in scenes]
    png = max(pngs, key=lambda p: len(client.detect(p, score_threshold=LOW).detections))
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert rgb.shape[0] != rgb.shape[1]
    want = [d.line() for d in client.detect(png, score_threshold=LOW).detections]
    assert want
    assert [d.line() for d in client.detect(rgb, "RGB", score_threshold=LOW).detections] == want
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert [d.line() for d in client.detect(bgr, "BGR", score_threshold=LOW).detections] == want
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert [d.line() for d in client.detect(rgba, "RGB", score_threshold=LOW).detections] == want
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    from_gray_png = client.detect(_png(gray), score_threshold=LOW).detections
    from_gray_raw = client.detect(gray, "RGB", score_threshold=LOW).detections
    assert [d.line() for d in from_gray_raw] == [d.line() for d in from_gray_png]


def test_stream_answers_every_frame_in_order_with_its_frame_id(
    client: DetectorClient, images: list[bytes]
) -> None:
    frames = [Frame(images[i % len(images)], f"cam1-{i}", 1000 + 40 * i) for i in range(40)]
    results = list(client.detect_stream(frames, score_threshold=LOW))
    assert [r.frame_id for r in results] == [f.frame_id for f in frames]
    assert [r.timestamp_ms for r in results] == [f.timestamp_ms for f in frames]
    single = {i: client.detect(images[i], score_threshold=LOW) for i in range(len(images))}
    for i, result in enumerate(results):
        expected = single[i % len(images)]
        assert (result.width, result.height) == (expected.width, expected.height)
        assert [d.line() for d in result.detections] == [d.line() for d in expected.detections]


def test_stream_with_a_bad_frame_ends_invalid_argument_naming_it_after_the_good_ones(
    server: LocalServer, images: list[bytes]
) -> None:
    frames = [Frame(images[0], "ok-0"), Frame(images[1], "ok-1"), Frame(b"garbage", "bad-2")]
    got = []
    with DetectorClient(server.address) as c, pytest.raises(ServerError) as info:
        for result in c.detect_stream(frames, score_threshold=LOW):
            got.append(result.frame_id)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "bad-2" in str(info.value)
    assert got == ["ok-0", "ok-1"]
    _still_serving(server, images[0])


def test_a_stream_behind_a_full_queue_drops_frames_with_deadlines_and_goes_on(
    mask_model: Path, images: list[bytes]
) -> None:
    """Frames with their own deadline that find the queue full come back `dropped` (no
    detections, in order) and the stream ends OK; without one, the full queue ends the stream."""
    process = start_server(mask_model, "--max-batch", "1", "--max-queue", "2")
    try:
        frames = [Frame(images[i % len(images)], f"f{i}", i) for i in range(16)]
        with DetectorClient(process.address) as client:
            results = list(client.detect_stream(frames, frame_deadline_ms=60_000))
            assert [r.frame_id for r in results] == [f.frame_id for f in frames]
            dropped = [r for r in results if r.dropped]
            assert 1 <= len(dropped) < len(frames)
            assert all(not r.detections and r.width > 0 for r in dropped)
            metrics = process.metrics()
            assert metric_value(metrics, "detect_frames_dropped_total") == len(dropped)
            assert (
                metric_value(metrics, "detect_requests_total", method="DetectStream", code="OK")
                == 1
            )
            with pytest.raises(ServerError) as info:
                list(client.detect_stream(frames))
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        assert process.stop() == 0


def test_model_info_names_the_model_classes_input_provider_and_batching(
    client: DetectorClient, mask_model: Path
) -> None:
    info = client.model_info()
    card = json.loads(mask_model.with_suffix(".json").read_text())
    assert info.name == "tiny_mask" and info.version == card["sha256"][:12]
    assert (info.arch, info.backbone, info.roi) == ("mask_rcnn", "resnet18_fpn", "align")
    assert [c.name for c in info.classes] == card["labels"]
    assert [c.class_id for c in info.classes] == card["category_ids"]
    assert info.has_masks and info.input.color == "RGB"
    assert info.input.min_size == card["input"]["min_size"]
    assert info.provider == "CPUExecutionProvider" and info.precision == "fp32"
    assert info.batching.max_batch == 8 and info.batching.max_queue == 256
    assert info.batching.batch_timeout_ms == pytest.approx(20)
    assert info.max_message_bytes == 16 * 1024 * 1024 and info.max_pixels == 50_000_000


# --------------------------------------------------------------------------- batching, metrics


def test_32_concurrent_calls_form_batches_visible_in_the_metrics(
    server: LocalServer, images: list[bytes]
) -> None:
    before = server.metrics()
    with DetectorClient(server.address) as c, ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda i: c.detect(images[i % 12], score_threshold=LOW), range(32)))
    after = server.metrics()
    assert sum(len(r.detections) for r in results) > 32
    assert max(r.timings["batch_size"] for r in results) > 1
    images_run = metric_value(after, "detect_batch_size_sum") - metric_value(
        before, "detect_batch_size_sum"
    )
    calls = metric_value(after, "detect_batch_size_count") - metric_value(
        before, "detect_batch_size_count"
    )
    assert images_run == 32 and calls < 32  # several images per model call
    ok = metric_value(after, "detect_requests_total", method="Detect", code="OK")
    assert ok - metric_value(before, "detect_requests_total", method="Detect", code="OK") == 32
    assert metric_value(after, "detect_request_latency_seconds_count", method="Detect") >= 32
    for stage in ("decode", "queue", "inference", "postprocess"):
        assert metric_value(after, "detect_stage_seconds_count", stage=stage) >= 32
    assert metric_value(after, "detect_queue_depth") == 0
    assert (
        metric_value(after, "detect_model_info", provider="CPUExecutionProvider", name="tiny_mask")
        == 1
    )


# --------------------------------------------------------------------------- health, reflection


@pytest.mark.slow
def test_health_not_serving_while_loading_serving_when_ready_not_serving_while_draining(
    mask_model: Path, images: list[bytes]
) -> None:
    process = start_server(mask_model, "--warmup-runs", "100", "--grace", "5", wait_ready=False)
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(process.address))
        watch = health.Watch(
            health_pb2.HealthCheckRequest(service="detect.v1.Detector"), timeout=180
        )
        statuses = [next(watch).status]
        assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]
        code, message = _code(_stub(process).Detect, pb.DetectRequest(encoded_image=images[0]))
        assert code == grpc.StatusCode.UNAVAILABLE and "loading" in message
        statuses.append(next(watch).status)
        assert statuses[-1] == health_pb2.HealthCheckResponse.SERVING
        process.wait_for("ready: ")
        overall = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert overall.status == health_pb2.HealthCheckResponse.SERVING
        process.process.send_signal(signal.SIGTERM)
        statuses.append(next(watch).status)
        assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        assert process.stop() == 0


def test_reflection_lists_the_detector_health_and_reflection_services(
    server: LocalServer,
) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(server.address))
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for s in next(responses).list_services_response.service}
    assert {"detect.v1.Detector", "grpc.health.v1.Health"} <= names
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="detect.v1.Detector")])
    )
    descriptor = next(responses).file_descriptor_response.file_descriptor_proto
    assert descriptor and b"DetectStream" in descriptor[0]


# --------------------------------------------------------------------------- status codes


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (pb.DetectRequest(), "no image"),
        (pb.DetectRequest(encoded_image=b"not an image at all"), "image"),
        (pb.DetectRequest(encoded_image=b"\xff\xd8\xff\xe0" + b"\0" * 64), "JPEG"),
        (
            pb.DetectRequest(
                raw_image=pb.RawImage(data=b"", width=0, height=0, channels=3, pixel_format=RGB8)
            ),
            "0x0",
        ),
        (
            pb.DetectRequest(
                raw_image=pb.RawImage(
                    data=b"\0" * 10, width=4, height=4, channels=3, pixel_format=RGB8
                )
            ),
            "needs 48",
        ),
        (
            pb.DetectRequest(
                raw_image=pb.RawImage(
                    data=b"\0" * 48, width=4, height=4, channels=4, pixel_format=RGB8
                )
            ),
            "channels",
        ),
        (
            pb.DetectRequest(raw_image=pb.RawImage(data=b"\0" * 48, width=4, height=4, channels=3)),
            "pixel_format",
        ),
        (
            pb.DetectRequest(encoded_image=b"x", options=pb.DetectOptions(score_threshold=1.5)),
            "score_threshold",
        ),
        (
            pb.DetectRequest(encoded_image=b"x", options=pb.DetectOptions(classes=["zebra"])),
            "zebra",
        ),
        (
            pb.DetectRequest(encoded_image=b"x", options=pb.DetectOptions(polygon_tolerance=-1)),
            "polygon_tolerance",
        ),
    ],
    ids=[
        "no-image",
        "undecodable",
        "truncated-jpeg",
        "zero-size-raw",
        "raw-length",
        "raw-channels",
        "raw-format",
        "score-range",
        "unknown-class",
        "negative-tolerance",
    ],
)
def test_bad_requests_are_invalid_argument_and_the_server_keeps_serving(
    server: LocalServer, images: list[bytes], request_: pb.DetectRequest, fragment: str
) -> None:
    code, message = _code(_stub(server).Detect, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert fragment in message
    _still_serving(server, images[0])


def test_empty_encoded_image_is_invalid_argument(server: LocalServer, images: list) -> None:
    request = pb.DetectRequest(encoded_image=b"")
    request.ClearField("encoded_image")
    request.encoded_image = b""  # set but empty: the oneof says encoded_image
    code, message = _code(_stub(server).Detect, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "empty" in message or "no image" in message
    _still_serving(server, images[0])


def test_limits_over_pixel_limit_and_oversize_message_and_full_queue(
    mask_model: Path, images: list[bytes]
) -> None:
    process = start_server(
        mask_model,
        "--max-pixels",
        "5000",
        "--max-message-mb",
        "1",
        "--max-queue",
        "2",
        "--max-batch",
        "1",
    )
    try:
        stub = _stub(process)
        big = _png(np.zeros((100, 100, 3), np.uint8))  # 10000 pixels > 5000
        code, message = _code(stub.Detect, pb.DetectRequest(encoded_image=big))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "pixel" in message.lower()
        raw = pb.RawImage(data=b"\0" * 30000, width=100, height=100, channels=3, pixel_format=1)
        code, message = _code(stub.Detect, pb.DetectRequest(raw_image=raw))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "pixel" in message.lower()
        huge = pb.DetectRequest(encoded_image=b"\0" * (2 * 1024 * 1024))
        code, _ = _code(stub.Detect, huge)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        small = _png(np.asarray(Image.open(io.BytesIO(images[0])).convert("RGB"))[:60, :60])
        with ThreadPoolExecutor(24) as pool:
            codes = list(
                pool.map(
                    lambda _: _code(stub.Detect, pb.DetectRequest(encoded_image=small))[0],
                    range(24),
                )
            )
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        metrics = process.metrics()
        assert metric_value(
            metrics, "detect_requests_total", method="Detect", code="RESOURCE_EXHAUSTED"
        ) == codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        _still_serving(process, small)
    finally:
        assert process.stop() == 0


def test_a_deadline_the_queue_cannot_meet_never_runs_and_cancelled_calls_free_their_slots(
    mask_model: Path, images: list[bytes]
) -> None:
    """A 20 ms call behind six queued images is either shed at once (RESOURCE_EXHAUSTED, once the
    server has timed an image) or expires in the queue (DEADLINE_EXCEEDED, before it has): which
    one depends on how fast the first image ran, but in neither case does the model run it."""
    process = start_server(mask_model, "--max-batch", "1", "--max-queue", "8")
    try:
        stub = _stub(process)
        request = pb.DetectRequest(encoded_image=images[0])
        with ThreadPoolExecutor(8) as pool:
            busy = [pool.submit(_code, stub.Detect, request) for _ in range(6)]
            deadline = time.monotonic() + 30
            while metric_value(process.metrics(), "detect_queue_depth") < 2:
                assert time.monotonic() < deadline, "the six calls never queued"
                time.sleep(0.01)
            code, _ = _code(stub.Detect, request, timeout=0.02)
            assert code in {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
            assert {f.result()[0] for f in busy} == {grpc.StatusCode.OK}
        time.sleep(0.2)
        assert metric_value(process.metrics(), "detect_batch_size_sum") == 6
        # 8 calls fill the queue, are cancelled, and the next 8 still find room
        futures = [stub.Detect.future(request) for _ in range(8)]
        for future in futures:
            future.cancel()
        time.sleep(0.5)
        with ThreadPoolExecutor(8) as pool:
            codes = [f.result()[0] for f in [pool.submit(_code, stub.Detect, request)] * 1]
            codes += list(pool.map(lambda _: _code(stub.Detect, request)[0], range(7)))
        assert set(codes) == {grpc.StatusCode.OK}
        metrics = process.metrics()
        assert metric_value(metrics, "detect_queue_depth") == 0
    finally:
        assert process.stop() == 0


def test_unexpected_failure_is_internal_and_the_server_keeps_serving(
    mask_model: Path, tmp_path: Path, images: list[bytes]
) -> None:
    """A card naming fewer classes than the graph predicts, on a model exported before the class
    count was recorded in the ONNX file (so the load cannot see it): postprocessing fails
    inside."""
    onnx = pytest.importorskip("onnx")
    model = tmp_path / "short_card.onnx"
    graph = onnx.load(str(mask_model))
    del graph.metadata_props[:]  # as older exports are
    onnx.save(graph, str(model))
    card = json.loads(mask_model.with_suffix(".json").read_text())
    card["labels"], card["category_ids"] = card["labels"][:1], card["category_ids"][:1]
    card["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    model.with_suffix(".json").write_text(json.dumps(card))
    process = start_server(model)
    try:
        stub = _stub(process)
        code, message = _code(
            stub.Detect,
            pb.DetectRequest(encoded_image=images[0], options=pb.DetectOptions(score_threshold=0)),
        )
        assert code == grpc.StatusCode.INTERNAL and "server log" in message
        nothing_kept = pb.DetectOptions(score_threshold=1.0)  # no label to look up: succeeds
        answer = stub.Detect(pb.DetectRequest(encoded_image=images[0], options=nothing_kept))
        assert answer.image_width > 0 and not answer.detections
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.name == "short_card"
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(process.address))
        check = health.Check(health_pb2.HealthCheckRequest(service=""))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert process.stop() == 0
    stderr = process.process.stderr.read()
    assert "Detect failed" in stderr and "Traceback" in stderr  # logged for the operator


# --------------------------------------------------------------------------- TLS and auth


def test_tls_with_a_self_signed_certificate_and_token_auth(
    mask_model: Path, tmp_path: Path, images: list[bytes]
) -> None:
    cert, key = certificate(tmp_path, "server")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# one per line\nold-token\nnew-token\n")
    process = start_server(
        mask_model, "--tls-cert", str(cert), "--tls-key", str(key), "--auth-token-file", str(tokens)
    )
    try:
        assert "(TLS, token auth)" in process.seen[0]
        for token in ("old-token", "new-token"):
            with DetectorClient(process.address, ca=cert, token=token) as c:
                assert c.detect(images[0], score_threshold=LOW).detections
                assert c.model_info().name == "tiny_mask"
                results = list(c.detect_stream([images[0], images[1]], score_threshold=LOW))
                assert [r.frame_id for r in results] == ["0", "1"]
        for token in (None, "wrong-token"):
            with DetectorClient(process.address, ca=cert, token=token) as c:
                for call in (
                    lambda c=c: c.detect(images[0]),
                    lambda c=c: c.model_info(),
                    lambda c=c: list(c.detect_stream([images[0]])),
                ):
                    with pytest.raises(ServerError) as info:
                        call()
                    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        channel = grpc.secure_channel(
            process.address, grpc.ssl_channel_credentials(cert.read_bytes())
        )
        health = health_pb2_grpc.HealthStub(channel)  # probes need no token
        assert health.Check(health_pb2.HealthCheckRequest()).status == 1
        with DetectorClient(process.address, token="new-token", timeout=5) as plain:
            with pytest.raises(ServerError) as info:
                plain.detect(images[0])  # plaintext client, TLS server
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
        metrics = process.metrics()
        assert (
            metric_value(metrics, "detect_requests_total", method="Detect", code="UNAUTHENTICATED")
            == 2
        )
    finally:
        assert process.stop() == 0


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(
    mask_model: Path, tmp_path: Path, images: list[bytes]
) -> None:
    server_cert, server_key = certificate(tmp_path, "server")
    client_ca = certificate(tmp_path, "client-ca")
    client_cert, client_key = certificate(tmp_path, "client", issuer=client_ca)
    stranger_cert, stranger_key = certificate(tmp_path, "stranger")  # not from the client CA
    process = start_server(
        mask_model,
        "--tls-cert",
        str(server_cert),
        "--tls-key",
        str(server_key),
        "--tls-client-ca",
        str(client_ca[0]),
    )
    try:
        with DetectorClient(process.address, ca=server_cert, cert=client_cert, key=client_key) as c:
            assert c.detect(images[0], score_threshold=LOW).detections
        for cert, key in ((None, None), (stranger_cert, stranger_key)):
            with (
                DetectorClient(process.address, ca=server_cert, cert=cert, key=key, timeout=5) as c,
                pytest.raises(ServerError) as info,
            ):
                c.detect(images[0])
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        assert process.stop() == 0


# --------------------------------------------------------------------------- lifecycle


def test_sigterm_answers_every_call_in_flight_then_exits_0(
    mask_model: Path, images: list[bytes]
) -> None:
    process = start_server(mask_model, "--max-batch", "2", "--grace", "60")
    stub = _stub(process)
    options = pb.DetectOptions(score_threshold=LOW)
    request = pb.DetectRequest(encoded_image=images[0], options=options)
    with ThreadPoolExecutor(64) as pool:
        calls = [pool.submit(stub.Detect, request, timeout=120) for _ in range(64)]
        time.sleep(0.05)
        assert sum(f.done() for f in calls) < 64  # still working on them
        process.process.send_signal(signal.SIGTERM)
        responses = [f.result() for f in calls]
    assert all(r.detections for r in responses)
    assert process.process.wait(timeout=60) == 0
    process.wait_for("stopped")
    assert any(line.startswith("draining") for line in process.seen)
    code, _ = _code(stub.Detect, request, timeout=5)
    assert code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("problem", ["missing", "corrupt", "sha256", "classes"])
def test_missing_or_corrupt_model_stops_serve_with_one_line(
    mask_model: Path, tmp_path: Path, problem: str
) -> None:
    model = tmp_path / "m.onnx"
    if problem != "missing":
        shutil.copy(mask_model, model)
        shutil.copy(mask_model.with_suffix(".json"), model.with_suffix(".json"))
    if problem == "corrupt":
        model.write_bytes(b"not onnx")
        card = json.loads(model.with_suffix(".json").read_text())
        card["sha256"] = hashlib.sha256(b"not onnx").hexdigest()
        model.with_suffix(".json").write_text(json.dumps(card))
    if problem == "sha256":
        with model.open("r+b") as f:
            f.seek(100)
            f.write(b"\0\0\0\0")
    if problem == "classes":  # a card naming fewer classes than the export recorded
        card = json.loads(model.with_suffix(".json").read_text())
        card["labels"], card["category_ids"] = card["labels"][:1], card["category_ids"][:1]
        model.with_suffix(".json").write_text(json.dumps(card))
    result = run_detect("serve", "--model", str(model), "--port", "0", "--metrics-port", "0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(model) in errors[0], result.stderr
    assert "listening" not in result.stdout or problem in ("corrupt", "classes")
    if problem == "classes":
        assert "predicts 5 classes" in errors[0] and "names 1" in errors[0], errors[0]


def test_bad_flags_stop_serve_with_one_line(mask_model: Path, tmp_path: Path) -> None:
    cases = [
        (["--max-batch", "0"], "--max-batch"),
        (["--tls-cert", str(tmp_path / "nope.pem")], "--tls-key"),
        (["--auth-token-file", str(tmp_path / "none.txt")], "--auth-token-file"),
        (["--port", "70000"], "--port"),
    ]
    for args, fragment in cases:
        result = run_detect("serve", "--model", str(mask_model), "--metrics-port", "0", *args)
        assert result.returncode == 2 and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_port_in_use_is_one_clear_line(server: LocalServer, mask_model: Path) -> None:
    result = run_detect(
        "serve", "--model", str(mask_model), "--port", str(server.port), "--metrics-port", "0"
    )
    assert result.returncode == 1 and "--port" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the client CLI


def test_client_cli_prints_tlwh_lines_and_reports_bad_files(
    server: LocalServer, shapes_small: Path, tmp_path: Path
) -> None:
    good = sorted((shapes_small / "images").glob("*.jpg"))[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    result = run_detect(
        "client", *map(str, [*good, bad]), "--server", server.address, "--score", "0.01"
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert str(good[0]) in {line.split(",")[0] for line in lines}
    assert {line.split(",")[0] for line in lines} <= {str(p) for p in good}
    for line in lines:
        _, _, _, width, height, _, score = line.rsplit(",", 6)
        assert float(width) > 0 and float(height) > 0 and 0.01 <= float(score) <= 1
    assert [e for e in result.stderr.splitlines() if e.startswith("error:")] == [
        line for line in result.stderr.splitlines() if str(bad) in line
    ]


def test_client_info_prints_readable_lines_and_with_json_every_field(
    server: LocalServer, mask_model: Path
) -> None:
    card = json.loads(mask_model.with_suffix(".json").read_text())
    info = run_detect("client", "--server", server.address, "--info")
    assert info.returncode == 0, info.stderr[-2000:]
    lines = dict(line.split(":", 1) for line in info.stdout.splitlines())
    assert lines["model"].strip() == f"tiny_mask version {card['sha256'][:12]}"
    assert lines["sha256"].strip() == card["sha256"]
    assert lines["architecture"].strip().startswith("mask_rcnn, backbone ")
    assert lines["classes"].strip().startswith(f"{card['labels'][0]} (id 1), ")
    assert lines["thresholds"].strip().startswith(f"score {card['thresholds']['score']:g}, mask ")
    assert {"input", "engine", "batching", "limits", "server"} <= lines.keys()
    as_json = run_detect("client", "--server", server.address, "--info", "--json")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    fields = json.loads(as_json.stdout)
    assert fields["name"] == "tiny_mask" and fields["sha256"] == card["sha256"]
    assert fields["default_score_threshold"] == card["thresholds"]["score"]  # not float32's
    assert isinstance(fields["max_pixels"], int) and fields["max_pixels"] > 0
    assert [c["name"] for c in fields["classes"]] == card["labels"]
    alone = run_detect("client", "--server", server.address, "--json")
    assert alone.returncode != 0 and "Traceback" not in alone.stderr
    assert "error: --json prints the model information as JSON: give it with --info" in (
        alone.stderr
    )


def test_client_cli_unreachable_server_is_one_clear_line(shapes_small: Path) -> None:
    image = sorted((shapes_small / "images").glob("*.jpg"))[0]
    result = run_detect("client", str(image), "--server", "127.0.0.1:1", "--timeout", "5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot reach the detection server at 127.0.0.1:1" in result.stderr


def test_server_answers_from_several_client_threads_and_a_stream_at_once(
    server: LocalServer, images: list[bytes]
) -> None:
    stop = threading.Event()
    errors: list[Exception] = []

    def hammer() -> None:
        with DetectorClient(server.address) as c:
            while not stop.is_set():
                try:
                    c.detect(images[3], score_threshold=LOW)
                except Exception as exc:  # collected and reported below
                    errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with DetectorClient(server.address) as c:
            ids = [r.frame_id for r in c.detect_stream(images * 2, score_threshold=LOW)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert ids == [str(i) for i in range(2 * len(images))]
    assert not errors


# --------------------------------------------------------------------------- detect bench


@pytest.mark.slow
def test_bench_prints_latency_percentiles_per_level_and_the_eager_ratio(
    server: LocalServer, tiny_runs: dict
) -> None:
    result = run_detect(
        "bench",
        "--server",
        server.address,
        "--concurrency",
        "1,3",
        "--duration",
        "1.5",
        "--synthetic",
        "3",
        "--size",
        "96",
        "--compare-eager",
        str(tiny_runs["mask_rcnn", "align"]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("server", "eager") and parts[1].isdigit():
            rows[parts[0], int(parts[1])] = [float(v) for v in parts[2:8]]
    assert set(rows) == {("server", 1), ("server", 3), ("eager", 1)}, result.stdout
    for requests, errors, per_s, p50, p90, p99 in rows.values():
        assert requests > 0 and errors == 0 and per_s > 0 and 0 < p50 <= p90 <= p99
    assert "p50 latency, server at concurrency 1 / eager:" in result.stdout
    assert "throughput, server best" in result.stdout


def test_bench_without_a_server_is_one_clear_line() -> None:
    result = run_detect("bench", "--server", "127.0.0.1:1", "--duration", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cannot reach the detection server" in result.stderr

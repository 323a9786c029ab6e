"""A request's own ``deadline_ms``, end to end: a real `detect serve` process (the committed demo
model) and real gRPC clients. The model never runs an image whose deadline cannot be met: a
unary `Detect` is refused (RESOURCE_EXHAUSTED at once when the expected wait is longer,
DEADLINE_EXCEEDED when the deadline passes while it waits), a `DetectStream` frame comes back
``dropped`` in its place and the stream goes on.

The queue is made long deterministically, without sleeps: with ``--batch-timeout-ms`` far longer
than the test, the batcher holds fewer than ``--max-batch`` waiting images until the batch fills
(`detect_queue_depth` says when they wait); the server's rate per image (`Batcher.image_s`) is
exactly that of its first batch, which every answer of that batch reports."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from serving import metric_value, start_server

from detect.client import DetectorClient, ServerError
from detect.local_server import LocalServer
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo.onnx"
MAX_BATCH = 8
HOLD_MS = "60000"  # a batch-timeout no test waits for: a batch runs when it is full
SHORT_HOLD_MS = "500"  # a batch-timeout that tests wait for, with deadlines well inside it
SHORT_DEADLINE_MS = 150


@pytest.fixture(scope="module")
def image(shapes_small: Path) -> bytes:
    return sorted((shapes_small / "images").glob("*.jpg"))[0].read_bytes()


@contextlib.contextmanager
def _serving(batch_timeout_ms: str) -> Iterator[LocalServer]:
    """The demo model served with batches of `MAX_BATCH` that wait ``batch_timeout_ms`` to fill."""
    server = start_server(
        DEMO, "--max-batch", str(MAX_BATCH), "--batch-timeout-ms", batch_timeout_ms
    )
    try:
        yield server
    finally:
        assert server.stop() == 0


def _wait_for_queue(server: LocalServer, depth: int) -> None:
    """Until ``depth`` images wait in the queue (the batch is not full, so they stay)."""
    deadline = time.monotonic() + 30
    while metric_value(server.metrics(), "detect_queue_depth") < depth:
        assert time.monotonic() < deadline, f"{depth} images never queued"
        time.sleep(0.01)


def _first_batch_seconds_per_image(server: LocalServer, image: bytes) -> float:
    """Run the server's first batch (`MAX_BATCH` concurrent calls fill it): its seconds per image,
    which is then exactly the rate the server's load shedding expects."""
    with DetectorClient(server.address) as client, ThreadPoolExecutor(MAX_BATCH) as pool:
        results = list(pool.map(lambda _: client.detect(image), range(MAX_BATCH)))
    assert {r.timings["batch_size"] for r in results} == {MAX_BATCH}
    return results[0].timings["inference_ms"] / 1000 / MAX_BATCH


def _request(frame_id: str, image: bytes, deadline_ms: int = 0) -> pb.DetectRequest:
    return pb.DetectRequest(encoded_image=image, frame_id=frame_id, deadline_ms=deadline_ms)


# --------------------------------------------------------------------------- unary Detect


def test_a_unary_deadline_that_passes_while_queued_is_deadline_exceeded_and_never_runs(
    image: bytes,
) -> None:
    """Alone in the queue, the image waits for its batch to fill (500 ms): its 150 ms deadline
    passes first. A generous deadline is then answered normally."""
    with _serving(SHORT_HOLD_MS) as server, DetectorClient(server.address) as client:
        with pytest.raises(ServerError) as expired:
            client.detect(image, deadline_ms=SHORT_DEADLINE_MS)
        assert expired.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "the deadline passed before the model ran" in str(expired.value)
        assert metric_value(server.metrics(), "detect_batch_size_sum") == 0
        answered = client.detect(image, deadline_ms=60_000)
        assert answered.detections and answered.timings["batch_size"] == 1
        metrics = server.metrics()
        assert metric_value(metrics, "detect_batch_size_sum") == 1
        for code, count in (("DEADLINE_EXCEEDED", 1), ("OK", 1)):
            assert metric_value(metrics, "detect_requests_total", method="Detect", code=code) == (
                count
            )


def test_a_unary_deadline_shorter_than_the_expected_wait_is_refused_at_once_and_never_runs(
    image: bytes,
) -> None:
    """Behind 7 waiting images the expected wait is 8 images' time; a deadline of half that is
    refused on arrival, busy with retry-after = the expected wait. Had it been queued it would
    have filled the batch and run at once: the 8th image that does so instead (with a generous
    deadline) is answered normally, with the 7."""
    with _serving(HOLD_MS) as server, DetectorClient(server.address) as client:
        image_s = _first_batch_seconds_per_image(server, image)
        deadline_ms = math.ceil(1000 * image_s * MAX_BATCH / 2)
        with ThreadPoolExecutor(MAX_BATCH - 1) as pool:
            waiting = [pool.submit(client.detect, image) for _ in range(MAX_BATCH - 1)]
            _wait_for_queue(server, MAX_BATCH - 1)
            with pytest.raises(ServerError) as refused:
                client.detect(image, deadline_ms=deadline_ms)
            last = client.detect(image, deadline_ms=60_000)
            answers = [f.result() for f in waiting] + [last]
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "server busy" in str(refused.value) and "deadline" in str(refused.value)
        assert refused.value.retry_after_s == pytest.approx(MAX_BATCH * image_s, abs=0.002)
        assert all(a.detections and a.timings["batch_size"] == MAX_BATCH for a in answers)
        metrics = server.metrics()
        assert metric_value(metrics, "detect_batch_size_sum") == 2 * MAX_BATCH
        busy = metric_value(
            metrics, "detect_requests_total", method="Detect", code="RESOURCE_EXHAUSTED"
        )
        assert busy == 1


# --------------------------------------------------------------------------- DetectStream


def test_a_stream_frame_that_expires_while_queued_comes_back_dropped_in_its_place(
    image: bytes,
) -> None:
    """Three frames wait for a batch to fill (500 ms); the middle one's 150 ms deadline passes
    first: it comes back dropped, between the other two, which run, and the stream ends OK."""
    with _serving(SHORT_HOLD_MS) as server:
        stub = pb_grpc.DetectorStub(grpc.insecure_channel(server.address))
        requests = [
            _request("f0", image),
            _request("f1", image, SHORT_DEADLINE_MS),
            _request("f2", image),
        ]
        responses = list(stub.DetectStream(iter(requests), timeout=60))
        assert [r.frame_id for r in responses] == ["f0", "f1", "f2"]
        assert [r.dropped for r in responses] == [False, True, False]
        dropped = responses[1]
        assert not dropped.detections and (dropped.image_width, dropped.image_height) == (
            responses[0].image_width,
            responses[0].image_height,
        )
        assert all(r.detections and r.timings.batch_size == 2 for r in (responses[0], responses[2]))
        metrics = server.metrics()
        assert metric_value(metrics, "detect_frames_dropped_total") == 1
        assert metric_value(metrics, "detect_batch_size_sum") == 2
        ok = metric_value(metrics, "detect_requests_total", method="DetectStream", code="OK")
        assert ok == 1


def test_a_stream_frame_that_would_finish_too_late_is_dropped_at_once_and_the_stream_goes_on(
    image: bytes,
) -> None:
    """Behind 7 waiting frames of the stream the expected wait is 8 images' time; a frame whose
    deadline is half that is dropped on arrival (had it been queued it would have filled the
    batch and run at once); the next frame fills the batch instead, and the stream ends OK."""
    with _serving(HOLD_MS) as server:
        image_s = _first_batch_seconds_per_image(server, image)
        deadline_ms = math.ceil(1000 * image_s * MAX_BATCH / 2)

        def requests() -> Iterator[pb.DetectRequest]:
            for i in range(MAX_BATCH - 1):
                yield _request(f"w{i}", image)
            _wait_for_queue(server, MAX_BATCH - 1)
            yield _request("late", image, deadline_ms)
            yield _request("next", image)

        stub = pb_grpc.DetectorStub(grpc.insecure_channel(server.address))
        responses = list(stub.DetectStream(requests(), timeout=60))
        ids = [f"w{i}" for i in range(MAX_BATCH - 1)] + ["late", "next"]
        assert [r.frame_id for r in responses] == ids
        assert [r.dropped for r in responses] == [False] * (MAX_BATCH - 1) + [True, False]
        ran = [r for r in responses if not r.dropped]
        assert all(r.detections and r.timings.batch_size == MAX_BATCH for r in ran)
        metrics = server.metrics()
        assert metric_value(metrics, "detect_frames_dropped_total") == 1
        assert metric_value(metrics, "detect_batch_size_sum") == 2 * MAX_BATCH
        ok = metric_value(metrics, "detect_requests_total", method="DetectStream", code="OK")
        assert ok == 1

"""Property-based tests (hypothesis) of what the server takes from clients: images and options.

The property: whatever a client sends, the intake gives a usable ``(H, W, 3) uint8`` image (and
valid options) or raises `InputError` with a message, never another exception; through a real
server, every request ends OK or INVALID_ARGUMENT and the server keeps serving.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from serving import start_server

from detect.errors import InputError
from detect.messages import options_from_message, request_image
from detect.runtime.image import to_rgb
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc

MAX_PIXELS = 4_000_000


def _encoded(fmt: str, width: int = 48, height: int = 32) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


VALID = [_encoded(fmt) for fmt in ("JPEG", "PNG", "BMP", "WEBP", "TIFF")]


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and a correct IHDR chunk for ``width`` x ``height``, then no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid image file cut, with bytes flipped, or spliced with another."""
    data = bytearray(draw(st.sampled_from(VALID)))
    kind = draw(st.sampled_from(["cut", "flip", "splice"]))
    if kind == "cut":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            index = draw(st.integers(0, len(data) - 1))
            data[index] = draw(st.integers(0, 255))
        return bytes(data)
    other = draw(st.sampled_from(VALID))
    return bytes(
        data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]
    )


encoded_images = st.one_of(
    st.binary(max_size=2048),
    damaged(),
    st.builds(_png_claiming, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
)

raw_images = st.builds(
    pb.RawImage,
    data=st.binary(max_size=4096),
    width=st.integers(0, 2**32 - 1) | st.integers(0, 64),
    height=st.integers(0, 2**32 - 1) | st.integers(0, 64),
    channels=st.integers(0, 8),
    pixel_format=st.sampled_from([*pb.PixelFormat.values(), 99]),
)

# raw images whose sizes agree, so that the pixels themselves reach the converter
consistent_raw = st.builds(
    lambda w, h, fmt, seed: pb.RawImage(
        data=np.random.default_rng(seed)
        .integers(0, 255, w * h * _channels(fmt), np.uint8)
        .tobytes(),
        width=w,
        height=h,
        channels=_channels(fmt),
        pixel_format=fmt,
    ),
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from([f for f in pb.PixelFormat.values() if f]),
    st.integers(0, 2**16),
)


def _channels(fmt: int) -> int:
    name = pb.PixelFormat.Name(fmt)
    return {"GRAY8": 1, "RGB8": 3, "BGR8": 3, "RGBA8": 4, "BGRA8": 4}[
        name.removeprefix("PIXEL_FORMAT_")
    ]


floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
options = st.builds(
    pb.DetectOptions,
    score_threshold=st.none() | floats,
    max_detections=st.none() | st.integers(0, 2**32 - 1),
    classes=st.lists(st.text(max_size=12), max_size=4),
    return_polygons=st.none() | st.booleans(),
    polygon_tolerance=st.none() | floats,
    agnostic_nms=st.none() | st.booleans(),
)

requests = st.builds(
    lambda image, opts: pb.DetectRequest(options=opts, **image),
    st.one_of(
        encoded_images.map(lambda b: {"encoded_image": b}),
        raw_images.map(lambda r: {"raw_image": r}),
        consistent_raw.map(lambda r: {"raw_image": r}),
        st.just({}),
    ),
    options,
)


def _intake(request: pb.DetectRequest) -> np.ndarray:
    """What the server does with a request before the model: options, then the image."""
    options_from_message(request.options)
    image, color = request_image(request)
    return to_rgb(image, color, MAX_PIXELS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_any_request_gives_an_rgb_image_or_an_input_error(request: pb.DetectRequest) -> None:
    try:
        rgb = _intake(request)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS


@settings(max_examples=300, deadline=None)
@given(options)
def test_options_are_valid_or_refused_naming_the_field(message: pb.DetectOptions) -> None:
    try:
        parsed = options_from_message(message)
    except InputError as exc:
        assert str(exc).startswith("options.")
        return
    if parsed.score_threshold is not None:
        assert 0 <= parsed.score_threshold <= 1
    assert parsed.polygon_tolerance >= 0 and np.isfinite(parsed.polygon_tolerance)
    if parsed.max_detections is not None:
        assert parsed.max_detections >= 1


@pytest.fixture(scope="module")
def server_stub(mask_model: Path):
    server = start_server(mask_model, "--backend", "onnxruntime", "--max-pixels", str(MAX_PIXELS))
    with grpc.insecure_channel(server.address) as channel:
        yield server, pb_grpc.DetectorStub(channel)
    server.stop()


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests)
@example(pb.DetectRequest(options=pb.DetectOptions(classes=["²"])))  # isdigit, but not int()
def test_a_real_server_answers_any_request_ok_or_invalid_argument(
    server_stub, request: pb.DetectRequest
) -> None:
    server, stub = server_stub
    try:
        stub.Detect(request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        assert exc.details()
    assert server.process.poll() is None  # still running

"""`DetectorClient`: a Python client of the detect.v1 gRPC API (no torch, no ONNX Runtime).

    with DetectorClient("127.0.0.1:50051") as client:
        result = client.detect(Path("street.jpg").read_bytes(), score_threshold=0.4)
        for d in result.detections:
            print(d.line())  # top,left,width,height,label,score

Images are encoded file bytes (sent as they are), a path (its bytes), or a ``(H, W)`` /
``(H, W, 3)`` / ``(H, W, 4)`` uint8 array with ``color="RGB"|"BGR"`` (sent as raw pixels).
Failures raise `ServerError` carrying the gRPC status code and the server's message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from detect.errors import ConfigError, DetectError
from detect.runtime.detector import Detection
from detect.runtime.polygons import Polygon
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc

Image = bytes | Path | np.ndarray

_PIXEL_FORMATS = {
    (1, "RGB"): pb.PIXEL_FORMAT_GRAY8,
    (1, "BGR"): pb.PIXEL_FORMAT_GRAY8,
    (3, "RGB"): pb.PIXEL_FORMAT_RGB8,
    (3, "BGR"): pb.PIXEL_FORMAT_BGR8,
    (4, "RGB"): pb.PIXEL_FORMAT_RGBA8,
    (4, "BGR"): pb.PIXEL_FORMAT_BGRA8,
}


class ServerError(DetectError):
    """A call the server refused or could not answer; ``code`` is its `grpc.StatusCode`."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Frame:
    """One image of a stream, with the id and time (milliseconds) echoed in its result."""

    image: Image
    frame_id: str = ""
    timestamp_ms: int = 0
    color: str | None = None


@dataclass(frozen=True)
class DetectResult:
    """The server's answer for one image: detections (TLWH pixels) and where the time went.

    ``timings`` holds ``decode_ms``, ``queue_ms``, ``inference_ms``, ``postprocess_ms``,
    ``total_ms`` (server side) and ``batch_size``.
    """

    detections: list[Detection]
    width: int
    height: int
    frame_id: str
    timestamp_ms: int
    model_name: str
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)


class DetectorClient:
    """A channel to a `detect serve` server.

    Args:
        address: ``HOST:PORT``.
        tls: use TLS; ``ca`` (PEM) verifies the server's certificate (default: system roots);
            ``cert`` and ``key`` (PEM) present a client certificate (mutual TLS).
        token: bearer token, sent as ``authorization: Bearer TOKEN`` metadata.
        timeout: deadline of each call in seconds (a stream: of the whole stream); None: none.
        max_message_mb: largest message sent or received.
    """

    def __init__(
        self,
        address: str,
        *,
        tls: bool = False,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        token: str | None = None,
        timeout: float | None = 30.0,
        max_message_mb: float = 16.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        limit = int(max_message_mb * 1024 * 1024)
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        if tls or ca or cert:
            if (cert is None) != (key is None):
                raise ConfigError("a client certificate needs both cert and key (PEM files)")
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca, "CA certificate"),
                private_key=_read(key, "client key"),
                certificate_chain=_read(cert, "client certificate"),
            )
            self._channel = grpc.secure_channel(address, credentials, options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = pb_grpc.DetectorStub(self._channel)

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the channel connects (not until the model is loaded: see health)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ServerError(
                f"cannot reach the detection server at {self.address} within {timeout:g} s; "
                "is `detect serve` running there?",
                grpc.StatusCode.UNAVAILABLE,
            ) from None

    def health(self, service: str = "detect.v1.Detector") -> str:
        """grpc.health.v1 status of ``service`` ("" for the whole server): "SERVING",
        "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=self.timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            raise self._error(exc) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def model_info(self) -> pb.ModelInfo:
        """The served model's name, version, classes, input spec, provider and batching."""
        try:
            return self._stub.GetModelInfo(
                pb.GetModelInfoRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def detect(
        self,
        image: Image,
        color: str | None = None,
        *,
        frame_id: str = "",
        timestamp_ms: int = 0,
        **options: Any,
    ) -> DetectResult:
        """Detections in one image. ``options``: ``score_threshold``, ``max_detections``,
        ``classes`` (names or category ids), ``agnostic_nms`` (suppress overlapping boxes across
        classes; None: the model card's default), ``polygons``, ``polygon_tolerance``."""
        request = detect_request(Frame(image, frame_id, timestamp_ms, color), options)
        try:
            response = self._stub.Detect(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return detect_result(response)

    def detect_stream(
        self, frames: Iterable[Frame | Image], color: str | None = None, **options: Any
    ) -> Iterator[DetectResult]:
        """Results of a stream of frames, in order. Plain images get frame ids "0", "1", ...

        Frames are sent as they are consumed; the server works on several at once.
        """

        def requests() -> Iterator[pb.DetectRequest]:
            for index, frame in enumerate(frames):
                if not isinstance(frame, Frame):
                    frame = Frame(frame, str(index), 0, color)
                elif frame.color is None and color is not None:
                    frame = Frame(frame.image, frame.frame_id, frame.timestamp_ms, color)
                yield detect_request(frame, options)

        try:
            for response in self._stub.DetectStream(
                requests(), timeout=self.timeout, metadata=self._metadata
            ):
                yield detect_result(response)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> ServerError:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or ""
        if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
            message = (
                f"cannot reach the detection server at {self.address} ({details.splitlines()[0]}); "
                "is `detect serve` running there, with the same TLS setting?"
            )
        else:
            message = f"{self.address}: {code.name}: {details}"
        return ServerError(message, code)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from None


def detect_request(frame: Frame, options: dict[str, Any]) -> pb.DetectRequest:
    """A detect.v1 request for one frame; ``options`` as in `DetectorClient.detect`."""
    request = pb.DetectRequest(frame_id=frame.frame_id, timestamp_ms=frame.timestamp_ms)
    image = frame.image
    if isinstance(image, Path):
        try:
            image = image.read_bytes()
        except OSError as exc:
            raise ConfigError(f"image {frame.image}: cannot read it ({exc.strerror})") from None
    if isinstance(image, bytes | bytearray | memoryview):
        request.encoded_image = bytes(image)
    else:
        request.raw_image.CopyFrom(_raw_image(np.asarray(image), frame.color))
    unknown = set(options) - {
        "score_threshold",
        "max_detections",
        "classes",
        "agnostic_nms",
        "polygons",
        "polygon_tolerance",
    }
    if unknown:
        raise ConfigError(f"unknown detect options: {', '.join(sorted(unknown))}")
    message = request.options
    if options.get("score_threshold") is not None:
        message.score_threshold = options["score_threshold"]
    if options.get("max_detections") is not None:
        message.max_detections = options["max_detections"]
    if options.get("classes"):
        message.classes.extend(str(c) for c in options["classes"])
    if options.get("agnostic_nms") is not None:
        message.agnostic_nms = options["agnostic_nms"]
    if options.get("polygons") is not None:
        message.return_polygons = options["polygons"]
    if options.get("polygon_tolerance") is not None:
        message.polygon_tolerance = options["polygon_tolerance"]
    return request


def _raw_image(array: np.ndarray, color: str | None) -> pb.RawImage:
    if color not in ("RGB", "BGR"):
        raise ConfigError("an image array needs color='RGB' or color='BGR'")
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ConfigError(
            f"image array of dtype {array.dtype} and shape {array.shape}: "
            "send uint8 (H, W), (H, W, 3) or (H, W, 4), or encoded bytes"
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    if (channels, color) not in _PIXEL_FORMATS:
        raise ConfigError(f"image array with {channels} channels: use 1, 3 or 4")
    return pb.RawImage(
        data=np.ascontiguousarray(array).tobytes(),
        width=array.shape[1],
        height=array.shape[0],
        channels=channels,
        pixel_format=_PIXEL_FORMATS[(channels, color)],
    )


def detect_result(response: pb.DetectResponse) -> DetectResult:
    """A `DetectResult` (runtime `Detection`s, TLWH pixels) from a detect.v1 response."""
    detections = [
        Detection(
            top=d.box.top,
            left=d.box.left,
            width=d.box.width,
            height=d.box.height,
            label=d.box.label,
            class_id=d.class_id,
            score=d.score,
            polygons=[_polygon(p) for p in d.polygons],
        )
        for d in response.detections
    ]
    t = response.timings
    return DetectResult(
        detections=detections,
        width=response.image_width,
        height=response.image_height,
        frame_id=response.frame_id,
        timestamp_ms=response.timestamp_ms,
        model_name=response.model_name,
        model_version=response.model_version,
        timings={
            "decode_ms": t.decode_ms,
            "queue_ms": t.queue_ms,
            "inference_ms": t.inference_ms,
            "postprocess_ms": t.postprocess_ms,
            "total_ms": t.total_ms,
            "batch_size": t.batch_size,
        },
    )


def _polygon(message: pb.Polygon) -> Polygon:
    rings = [np.asarray(r.xy, np.float32).reshape(-1, 2) for r in message.rings]
    return Polygon(rings[0], tuple(rings[1:])) if rings else Polygon(np.zeros((0, 2), np.float32))

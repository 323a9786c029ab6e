"""`DetectorClient`: a Python client of the detect.v1 gRPC API (no torch, no ONNX Runtime).

    with DetectorClient("127.0.0.1:50051") as client:
        result = client.detect(Path("street.jpg").read_bytes(), score_threshold=0.4)
        for d in result.detections:
            print(d.line())  # top,left,width,height,label,score

Images are encoded file bytes (sent as they are), a path (its bytes), or a ``(H, W)`` /
``(H, W, 3)`` / ``(H, W, 4)`` uint8 array with ``color="RGB"|"BGR"`` (sent as raw pixels).
Failures raise `ServerError` carrying the gRPC status code and the server's message. The client is
a `detect.runtime.backend.Backend` too: `prepare` builds a request, `infer_batch` sends a batch
as concurrent calls, `postprocess` returns the server's detections.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from detect.config import SERVER_HELP, Connection, DetectSettings, host_port
from detect.errors import ConfigError, DetectError, InputError
from detect.messages import (
    SERVER_METADATA,
    SERVICE_NAME,
    detection_from_message,
    model_info_from_message,
    options_message,
    raw_image_message,
)
from detect.runtime.sources import ReadError, read_image
from detect.settings import FLAGS, Spelling, nested, pem_file, setting
from detect.structures import Detection, DetectOptions, ModelInfo
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc

Image = bytes | Path | np.ndarray


class ServerError(DetectError):
    """A call the server refused or could not answer; ``code`` is its `grpc.StatusCode`, and
    ``retry_after_s`` the wait the server asked for when it shed the call (else None)."""

    def __init__(
        self, message: str, code: grpc.StatusCode, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


class RefusedImageError(ServerError, InputError):
    """The server refused one image or its options (INVALID_ARGUMENT): the others go on."""


MIB = 1024 * 1024
_TOO_LARGE = re.compile(r"Received message larger than max \((\d+) vs\. (\d+)\)")


class MessageTooLargeError(ServerError, InputError):
    """An image over the server's message limit (RESOURCE_EXHAUSTED from gRPC itself, before
    the server saw it): its ``size`` and the server's ``limit`` in bytes. The message says them
    in MiB with the fix, after ``what`` (the image's name, when the caller knows it; else the
    caller puts it in front)."""

    def __init__(self, size: int, limit: int, what: str = "") -> None:
        self.size, self.limit = size, limit
        needed = math.ceil(size / MIB) + 1
        super().__init__(
            f"{what}{': ' if what else ''}{size / MIB:.1f} MiB, over the server's "
            f"{limit / MIB:g} MiB message limit: resize it, or raise the server's limit "
            f"(`detect serve --max-message-mb {needed}`)",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )


@dataclass(frozen=True)
class Frame:
    """One image of a stream, with the id and time (milliseconds) echoed in its result."""

    image: Image
    frame_id: str = ""
    timestamp_ms: int = 0
    color: str | None = None


@dataclass(frozen=True)
class DetectResult:
    """The server's answer for one image: detections (xyxy pixels, with their TLWH view) and
    where the time went.

    ``timings`` holds ``decode_ms``, ``queue_ms``, ``inference_ms``, ``postprocess_ms``,
    ``total_ms`` (server side) and ``batch_size``. ``dropped``: a stream frame the server did not
    run because its deadline could not be met (no detections).
    """

    detections: list[Detection]
    width: int
    height: int
    frame_id: str
    timestamp_ms: int
    model_name: str
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)
    dropped: bool = False

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image, as the server decoded it."""
        return self.height, self.width


BALANCED_SERVICE_CONFIG = {
    # every call and stream to the next server in turn, among those connected and healthy
    "loadBalancingConfig": [{"round_robin": {}}],
    # a server whose grpc.health.v1 says NOT_SERVING (loading, draining) gets no new calls
    "healthCheckConfig": {"serviceName": SERVICE_NAME},
    # a unary call that found its server gone (UNAVAILABLE) goes again, to another; all of them
    # are idempotent. Streams are not retried here: their callers re-open them
    "methodConfig": [
        {
            "name": [
                {"service": SERVICE_NAME, "method": method}
                for method in ("Detect", "GetModelInfo", "ListModels")
            ],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
"""The gRPC service config of a channel to several servers (`channel_target`): gRPC's own
client-side balancing, health checking and retries."""


def channel_target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target of ``address`` and the channel options it needs. One ``HOST:PORT`` (or
    a target with a scheme other than ``dns:``) is dialled as it is, with no options. Several
    comma-separated (``A:50051,B:50051``) become one static ``ipv4:``/``ipv6:`` target (each
    host resolved once, here), and those and ``dns:///NAME:PORT`` (every address the name
    resolves to, re-resolved as gRPC does) get `BALANCED_SERVICE_CONFIG`; the first host is
    the channel's authority (with TLS, the name the servers' certificates are checked against).
    `ConfigError` when a host of a list does not resolve."""
    if "," not in address and not address.startswith("dns:"):
        return address, []
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(BALANCED_SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
    ]
    if address.startswith("dns:"):
        return address, options
    resolved: list[tuple[int, str]] = []
    for one in address.split(","):
        host, _, port = one.strip().rpartition(":")
        found = _resolve(host.strip("[]"), port)
        if isinstance(found, Exception):
            raise ConfigError(
                f"--server {address}: {one.strip()} does not resolve ({found}); give its address"
            )
        family, _, _, _, sockaddr = found
        ip = sockaddr[0] if family == socket.AF_INET else f"[{sockaddr[0]}]"
        resolved.append((family, f"{ip}:{port}"))
    families = {family for family, _ in resolved}
    if families == {socket.AF_INET}:
        scheme = "ipv4"
    elif families == {socket.AF_INET6}:
        scheme = "ipv6"
    else:
        raise ConfigError(
            f"--server {address}: mixes IPv4 and IPv6 addresses; give servers of one kind"
        )
    first = address.split(",")[0].strip()
    options.append(("grpc.default_authority", first))
    return f"{scheme}:{','.join(ip for _, ip in resolved)}", options


def _resolve(host: str, port: str) -> Any:
    """``host``'s first address, IPv4 when it has one (so that a list of names is one family),
    as `socket.getaddrinfo` gives it; else the error."""
    error: Exception = ValueError(f"bad port {port}")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.getaddrinfo(host, int(port), family, socket.SOCK_STREAM)[0]
        except (OSError, ValueError) as exc:
            error = exc
    return error


class DetectorClient:
    """A channel to a `detect serve` server.

    Args:
        address: ``HOST:PORT``.
        tls: use TLS; ``ca`` (PEM) verifies the server's certificate (default: system roots);
            ``cert`` and ``key`` (PEM) present a client certificate (mutual TLS).
        token: bearer token, sent as ``authorization: Bearer TOKEN`` metadata.
        model: the served model every call asks for (empty: the server's default model), and
            ``model_version`` its version (empty: its newest served version).
        timeout: deadline of each call in seconds (a stream: of the whole stream); None: none.
        max_message_mb: largest message received. What is sent, the server limits (its
            ``--max-message-mb``): an image over its limit is a `MessageTooLargeError`.
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
        model: str = "",
        model_version: str = "",
        timeout: float | None = 30.0,
        max_message_mb: float = 16.0,
    ) -> None:
        self.address = address
        self.model = model
        self.model_version = model_version
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", int(max_message_mb * MIB)),
            ("grpc.max_send_message_length", -1),  # the server's limit is the one that counts
        ]
        target, balanced = channel_target(address)
        options += balanced
        self.balanced = bool(balanced)  # several servers: a failed call may go to another
        # how many servers a static list names (a DNS name: unknown, 0)
        self._listed = target.count(",") + 1 if balanced and not target.startswith("dns:") else 0
        if tls or ca or cert:
            if (cert is None) != (key is None):
                raise ConfigError("a client certificate needs both cert and key (PEM files)")
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca, "CA certificate"),
                private_key=_read(key, "client key"),
                certificate_chain=_read(cert, "client certificate"),
            )
            self._channel = grpc.secure_channel(target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = pb_grpc.DetectorStub(self._channel)
        self._info: ModelInfo | None = None
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="client")  # infer_batch's calls

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
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

    def wait_spread(self, timeout: float = 3.0) -> None:
        """With several servers listed (``A:P,B:P``), wait up to ``timeout`` seconds until each
        has answered a call through this channel (each names itself: `SERVER_METADATA`).
        round_robin gives a call to the servers connected and healthy at that moment, so the
        streams opened while only the first was would all go to it, for their whole life. One
        server, or a DNS name: nothing to wait for."""
        if self._listed < 2:
            return
        request = pb.GetModelInfoRequest(model_name=self.model, model_version=self.model_version)
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < self._listed and time.monotonic() < deadline:
            try:
                _, call = self._stub.GetModelInfo.with_call(
                    request, timeout=1.0, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                call = exc
            said = dict(call.initial_metadata() or ()) if isinstance(call, grpc.Call) else {}
            if SERVER_METADATA in said:
                seen.add(said[SERVER_METADATA])
            time.sleep(0.02)

    def health(self, service: str = SERVICE_NAME, timeout: float | None = None) -> str:
        """grpc.health.v1 status of ``service`` ("" for the whole server): "SERVING",
        "NOT_SERVING", "SERVICE_UNKNOWN" or "UNKNOWN"; ``timeout``: the call's (None: the
        client's)."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=timeout if timeout is not None else self.timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            raise self._error(exc) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def model_info(self) -> pb.ModelInfo:
        """The model's name, version, classes, input spec, provider and batching."""
        request = pb.GetModelInfoRequest(model_name=self.model, model_version=self.model_version)
        return self._unary(self._stub.GetModelInfo, request)

    def list_models(self) -> pb.ListModelsResponse:
        """Every served model version, and the default model."""
        return self._unary(self._stub.ListModels, pb.ListModelsRequest())

    def reload_models(self) -> pb.ReloadModelsResponse:
        """Have the server load new and changed model versions now; what changed."""
        return self._unary(self._stub.ReloadModels, pb.ReloadModelsRequest())

    def _unary(self, method: Any, request: Any) -> Any:
        """One unary call with this client's deadline and token; `ServerError` on failure."""
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    @property
    def info(self) -> ModelInfo:
        """The served model's labels, category ids and defaults (asked once)."""
        if self._info is None:
            self._info = model_info_from_message(self.model_info())
        return self._info

    def detect(
        self,
        image: Image,
        color: str | None = None,
        *,
        frame_id: str = "",
        timestamp_ms: int = 0,
        options: DetectOptions | None = None,
        deadline_ms: int = 0,
        **fields: Any,
    ) -> DetectResult:
        """Detections in one image. ``options``, or the `DetectOptions` fields as keywords:
        ``score_threshold``, ``max_detections``, ``classes`` (names or category ids),
        ``agnostic_nms`` (suppress overlapping boxes across classes; None: the model card's
        default), ``polygons``, ``polygon_tolerance``.

        ``deadline_ms`` (0: none): the request's own deadline, in milliseconds after the server
        reads it (the earlier of it and ``timeout`` applies); the model never runs an image that
        cannot start by then. The server refuses it at once with RESOURCE_EXHAUSTED
        (``retry_after_s`` set) when its expected wait is longer, and with DEADLINE_EXCEEDED when
        the deadline passes before its batch runs; both raise `ServerError`. Unlike ``timeout``
        (the client giving up on the call), the server sheds the image before its model spends
        time on it.
        """
        request = self.request(
            Frame(image, frame_id, timestamp_ms, color), DetectOptions.of(options, **fields)
        )
        request.deadline_ms = deadline_ms
        try:
            response = self._stub.Detect(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        return detect_result(response)

    # --- the backend protocol ---

    def prepare(self, image: Image, color: str | None = None) -> Frame:
        """The image checked as the server will receive it (a path is read now)."""
        if isinstance(image, Path):
            image = read_image(image)
        elif not isinstance(image, bytes | bytearray | memoryview):
            raw_image_message(np.asarray(image), color)  # a bad array fails here, not remotely
        return Frame(image, color=color)

    def infer_batch(
        self, images: list[Frame], options: DetectOptions | None = None
    ) -> list[DetectResult]:
        """`detect` for every frame, as concurrent calls (the server batches them)."""
        options = options or DetectOptions()
        if len(images) == 1:
            frame = images[0]
            return [self.detect(frame.image, frame.color, options=options)]
        calls = [self._pool.submit(self.detect, f.image, f.color, options=options) for f in images]
        wait(calls)  # every call answered before the first failure (if any) is raised
        return [call.result() for call in calls]

    def postprocess(
        self, raw: DetectResult, options: DetectOptions | None = None
    ) -> list[Detection]:
        """The server's detections (it applied the options already)."""
        return raw.detections

    def detect_stream(
        self,
        frames: Iterable[Frame | Image],
        color: str | None = None,
        options: DetectOptions | None = None,
        frame_deadline_ms: int = 0,
        **fields: Any,
    ) -> Iterator[DetectResult]:
        """Results of a stream of frames, in order. Plain images get frame ids "0", "1", ...

        Frames are sent as they are consumed; the server works on several at once. ``options``,
        or the `DetectOptions` fields as keywords, apply to every frame. ``frame_deadline_ms``
        (0: none): a frame the server cannot run within this many milliseconds of reading it
        comes back ``dropped`` (in its place in the order), and the stream goes on.
        """
        options = DetectOptions.of(options, **fields)

        def requests() -> Iterator[pb.DetectRequest]:
            for index, frame in enumerate(frames):
                if not isinstance(frame, Frame):
                    frame = Frame(frame, str(index), 0, color)
                elif frame.color is None and color is not None:
                    frame = Frame(frame.image, frame.frame_id, frame.timestamp_ms, color)
                request = self.request(frame, options)
                request.deadline_ms = frame_deadline_ms
                yield request

        try:
            for response in self._stub.DetectStream(
                requests(), timeout=self.timeout, metadata=self._metadata
            ):
                yield detect_result(response)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def request(self, frame: Frame, options: DetectOptions) -> pb.DetectRequest:
        """`detect_request` for this client's model."""
        request = detect_request(frame, options)
        request.model_name = self.model
        request.model_version = self.model_version
        return request

    def _error(self, exc: grpc.RpcError) -> ServerError:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or ""
        if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
            message = (
                f"cannot reach the detection server at {self.address} ({details.splitlines()[0]}); "
                "is `detect serve` running there, with the same TLS setting?"
            )
        elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            fix = (
                "check that the first line of --token-file is one of the server's tokens"
                if self._metadata
                else "pass --token-file FILE whose first line is one of the server's tokens"
            )
            message = f"{self.address}: {code.name}: {details}: {fix}"
        else:
            message = f"{self.address}: {code.name}: {details}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return RefusedImageError(message, code)
        server_side = code == grpc.StatusCode.RESOURCE_EXHAUSTED and "CLIENT" not in details
        too_large = _TOO_LARGE.search(details) if server_side else None
        if too_large is not None:
            return MessageTooLargeError(int(too_large[1]), int(too_large[2]))
        trailing = exc.trailing_metadata() if isinstance(exc, grpc.Call) else None
        retry = dict(trailing or ()).get("retry-after-ms")
        return ServerError(message, code, None if retry is None else int(retry) / 1000)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from None


def detect_request(frame: Frame, options: DetectOptions) -> pb.DetectRequest:
    """A detect.v1 request for one frame with ``options``."""
    request = pb.DetectRequest(
        frame_id=frame.frame_id, timestamp_ms=frame.timestamp_ms, options=options_message(options)
    )
    image = frame.image
    if isinstance(image, Path):
        try:
            image = read_image(image)
        except ReadError as exc:
            raise ReadError(f"image {frame.image}: {exc}") from None
    if isinstance(image, bytes | bytearray | memoryview):
        request.encoded_image = bytes(image)
    else:
        request.raw_image.CopyFrom(raw_image_message(np.asarray(image), frame.color))
    return request


def detect_result(response: pb.DetectResponse) -> DetectResult:
    """A `DetectResult` (`Detection`s, xyxy inside) from a detect.v1 response."""
    t = response.timings
    return DetectResult(
        detections=[detection_from_message(d) for d in response.detections],
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
        dropped=response.dropped,
    )


# --------------------------------------------------------------------------- `detect client`


@dataclass
class ClientSettings:
    """The settings of `detect client`: the server and how to reach it, what to ask it, and the
    image files to send. ``detection`` holds the options sent with each image (not polygons:
    the command prints boxes)."""

    images: tuple[Path, ...] = setting((), "image files", positional=True, key="")
    server: str | None = setting(
        None,
        SERVER_HELP,
        required=True,
        check=host_port,
    )
    info: bool = setting(False, "print the served model's information")
    json: bool = setting(False, "--info: print it as JSON")
    list_models: bool = setting(False, "print every served model version")
    reload: bool = setting(
        False, "have the server load new and changed model versions now; print what changed"
    )
    health: bool = setting(False, "print the health status; exit 1 unless SERVING")
    connection: Connection = nested(Connection)
    cert: Path | None = setting(None, "client certificate (PEM) for mutual TLS", check=pem_file)
    key: Path | None = setting(None, "client private key (PEM) for mutual TLS", check=pem_file)
    timeout: float = setting(30.0, "seconds per call")
    detection: DetectSettings = nested(
        DetectSettings, defaults={"polygons": False}, skip=("polygons", "polygon_tolerance")
    )

    def validate(self, spell: Spelling | None = None) -> None:
        spell = spell or Spelling(ClientSettings, FLAGS)
        if not self.server:
            raise spell.problem(f"give {spell('server')} HOST:PORT")
        if self.json and not self.info:
            raise spell.problem(
                f"{spell('json')} prints the model information as JSON: give it with "
                f"{spell('info')}"
            )
        if not (self.images or self.info or self.health or self.list_models or self.reload):
            asks = ", ".join(spell(n) for n in ("info", "health", "list_models", "reload"))
            raise spell.problem(f"give image files to send, or {asks}")


def connect(settings: ClientSettings) -> DetectorClient:
    """A `DetectorClient` for ``settings.server``, as ``settings`` say to reach it."""
    assert settings.server is not None
    return DetectorClient(
        settings.server,
        **settings.connection.client_kwargs(),
        cert=settings.cert,
        key=settings.key,
        timeout=settings.timeout,
    )


def send_files(
    client: DetectorClient, paths: Iterable[Path], options: DetectOptions
) -> Iterator[tuple[Path, DetectResult | DetectError]]:
    """Each image file with its result, or with the error that refused that image alone (a file
    that cannot be read, an image the server refused, a busy server): the others go on. Any
    other failure (the server unreachable, ...) raises."""
    for path in paths:
        try:
            yield path, client.detect(read_image(path), options=options)
        except (InputError, ServerError) as exc:
            busy = isinstance(exc, ServerError) and exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            if not (isinstance(exc, InputError) or busy):
                raise
            yield path, exc

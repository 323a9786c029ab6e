"""`serve`: the gRPC server's life, from checks to drained exit.

1. Check the settings, the model files (a repository's: the versions the first load serves), their
   cards and sha256, the TLS files and tokens, and bind both ports: any problem ends `detect
   serve` with one line and exit code 1 (2: a bad flag value) before anything says "listening".
2. Listen (grpc.aio) with the health service at NOT_SERVING, server reflection, and the
   Detector service answering UNAVAILABLE; the Prometheus endpoint.
3. Load every model version (`server.repository`) and warm it up on a loader thread, each with
   its own batcher; health SERVING. The line ``ready: ...`` says so (`serve`'s ``say``; stdout
   of `detect serve`). From then on the repository is looked at every ``poll_s`` seconds (and
   on ReloadModels), and new versions are swapped in without stopping.
4. On SIGTERM or SIGINT: health NOT_SERVING, stop accepting calls, answer those in flight within
   ``grace_s`` seconds (a stream: the frames it has read, then UNAVAILABLE, so that its client
   sends the others to another server), exit 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from detect.config import read_tokens
from detect.errors import ConfigError
from detect.messages import SERVICE_NAME
from detect.runtime.detector import Detector
from detect.settings import check
from detect.v1 import detector_pb2_grpc as pb_grpc
from server.auth import TokenAuth
from server.batcher import Batcher
from server.config import ServeConfig
from server.memory import hold_memory
from server.metrics import ServerMetrics
from server.repository import CheckedModel, ModelRepository, check_repository
from server.service import DetectorService

log = logging.getLogger("detect.serve")

Say = Callable[[str], None]
"""Where the server's milestones go, one line each (`detect serve`: stdout)."""


def serve(config: ServeConfig, say: Say = log.info) -> int:
    """Run the server until SIGTERM/SIGINT; 0 after a clean drain. Raises `DetectError`.

    ``say`` gets the lines ``listening on HOST:PORT (...)``, ``metrics on URL``, ``ready: ...``,
    ``draining: ...`` and ``stopped`` as each happens (`detect.local_server` waits for them)."""
    check(config)
    hold_memory()  # before any worker thread exists
    # a missing file, a wrong sha256, an empty repository: one line and exit 1 before listening
    checked = check_repository(config)
    credentials = _server_credentials(config)
    tokens = read_tokens(config.auth_token_file) if config.auth_token_file else None
    return asyncio.run(_run(config, credentials, tokens, checked, say))


def _server_credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


async def _run(
    config: ServeConfig,
    credentials: grpc.ServerCredentials | None,
    tokens: list[str] | None,
    checked: list[CheckedModel],
    say: Say,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    metrics = ServerMetrics()
    interceptors = []
    if tokens:
        denied = metrics.requests
        interceptors.append(
            TokenAuth(tokens, lambda method: denied.labels(_short(method), "UNAUTHENTICATED").inc())
        )
    limit = config.max_message_bytes
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    workers = ThreadPoolExecutor(max(2, os.cpu_count() or 2), thread_name_prefix="worker")
    service = DetectorService(config, metrics, workers)
    pb_grpc.add_DetectorServicer_to_server(service, server)
    health_service = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    for name in ("", SERVICE_NAME):
        await health_service.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    address = f"{config.host}:{config.port}"
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot listen on {address} ({exc}); is another server using it? pick another --port"
        ) from None
    try:  # bound before anything says "listening"
        metrics_port = metrics.serve(config.host, config.metrics_port)
    except OSError as exc:
        await server.stop(0)
        taken = "is in use" if exc.errno == errno.EADDRINUSE else f"fails ({exc.strerror})"
        raise ConfigError(
            f"metrics port {config.metrics_port} {taken}: pass --metrics-port N (0: any free port)"
        ) from None
    await server.start()
    scheme = "TLS" if credentials else "plaintext"
    auth = ", token auth" if tokens else ""
    say(f"listening on {_host(config.host)}:{port} ({scheme}{auth})")
    say(f"metrics on http://{_host(config.host)}:{metrics_port}/metrics")

    def make_batcher(detector: Detector, name: str, version: str) -> Batcher:
        return Batcher(
            detector.infer_batch,
            config.max_batch,
            config.batch_timeout_ms,
            config.max_queue,
            on_batch=lambda size, _: metrics.batch_size.labels(name, version).observe(size),
            on_queue=metrics.queue_depth.labels(name, version).set,
        )

    loader = ThreadPoolExecutor(1, thread_name_prefix="loader")
    repository = ModelRepository(config, metrics, loader, make_batcher, checked)
    loading = asyncio.ensure_future(repository.load())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    watching = None
    if loading.done():
        try:
            loading.result()
        except BaseException:
            await server.stop(0)
            await repository.close()
            workers.shutdown(wait=False)
            loader.shutdown(wait=False)
            raise
        service.ready(repository)
        for name in ("", SERVICE_NAME):
            await health_service.set(name, health_pb2.HealthCheckResponse.SERVING)
        say(f"ready: serving {_describe(repository)}")
        if config.poll_s > 0:
            watching = asyncio.ensure_future(repository.watch(say))
        await stopping
    else:
        loading.cancel()

    say(f"draining: answering calls in flight (up to {config.grace_s:g} s)")
    service.draining.set()  # streams: the frames read are answered, then UNAVAILABLE
    await health_service.enter_graceful_shutdown()
    await _settle(service, config.grace_s)
    await server.stop(config.grace_s)
    if watching is not None:
        watching.cancel()
    await repository.close()
    workers.shutdown(wait=True, cancel_futures=True)
    loader.shutdown(wait=True, cancel_futures=True)
    say("stopped")
    return 0


async def _settle(service: DetectorService, grace_s: float, quiet_s: float = 0.2) -> None:
    """Wait until no call has started for ``quiet_s`` (at most ``grace_s``, and 5 s): calls the
    transport has accepted but not yet handed to the service would be cancelled by
    `grpc.aio.Server.stop` (measured: 28 of 64 calls sent 50 ms before SIGTERM to the demo
    model), and they are calls in flight to the client."""
    end = time.monotonic() + min(grace_s, 5.0)
    while time.monotonic() < end and time.monotonic() - service.last_call < quiet_s:
        await asyncio.sleep(0.05)


def _describe(repository: ModelRepository) -> str:
    """``demo (version 1, mask_rcnn resnet18_fpn) on OpenVINO CPU; ...`` and the default."""
    parts = []
    for served in repository.all():
        card = served.detector.card
        parts.append(
            f"{served.name} (version {served.version}, {card.arch} {card.backbone}) "
            f"on {served.detector.provider}"
        )
    default = f"; default model {repository.default}" if len(repository.served) > 1 else ""
    return "; ".join(parts) + default


def _short(method: str) -> str:
    """``/detect.v1.Detector/Detect`` -> ``Detect``."""
    return method.rsplit("/", 1)[-1]


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

"""The detect.v1.Detector service: decode, batch, postprocess, answer.

Per image: the model version is picked (the request's ``model_name`` and ``model_version``, or
the default model's newest) and held until the answer is built; the request is checked and
decoded on a worker thread (``decode``), waits for a batch of its model version (``queue``), runs
in the batch (``inference``), and its detections are thresholded, pasted and traced to polygons
on a worker thread (``postprocess``); the event loop only moves messages.

Client mistakes end the RPC with INVALID_ARGUMENT and a message naming the field; a model that is
not served with NOT_FOUND; a full queue, or an expected wait longer than the call's deadline
(load shedding), with RESOURCE_EXHAUSTED at once and the trailing metadata ``retry-after-ms``;
anything unexpected with INTERNAL (logged with its traceback) while the server keeps serving.
A stream frame with its own ``deadline_ms`` that cannot be met is answered ``dropped`` instead,
and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from detect.errors import DetectError
from detect.messages import (
    SERVER_METADATA,
    detection_message,
    model_info_message,
    options_from_message,
    request_image,
)
from detect.runtime.detector import Detector
from detect.structures import DetectOptions
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc
from server.batcher import BatchResult, DeadlineExpiredError, OverloadedError, QueueFullError
from server.config import ServeConfig
from server.metrics import ServerMetrics
from server.repository import ModelNotFoundError, ModelRepository, ServedModel

log = logging.getLogger(__name__)

STREAM_WINDOW = 32
"""Images of one stream in flight at once (decoding, queued or running)."""


class RequestError(Exception):
    """A request the server refuses: the status code and the message sent to the client."""

    def __init__(
        self, code: grpc.StatusCode, message: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


def _invalid(exc: DetectError, prefix: str = "") -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{prefix}{exc}")


INSTANCE = f"{socket.gethostname()}/{os.getpid()}"
"""This server process, as it names itself to clients (`SERVER_METADATA`)."""


class _DrainingError(RequestError):
    """A stream's end when the server drains: the frames it read are answered, then
    UNAVAILABLE, for the client to send the others to another server."""

    def __init__(self) -> None:
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            "the server is shutting down (draining); open the stream again on another server",
        )


class DetectorService(pb_grpc.DetectorServicer):
    """Serves the models of a `ModelRepository`; answers UNAVAILABLE until `ready` is called."""

    def __init__(self, config: ServeConfig, metrics: ServerMetrics, workers: ThreadPoolExecutor):
        self.config = config
        self.metrics = metrics
        self.workers = workers
        self.repository: ModelRepository | None = None
        self.last_call = 0.0  # time.monotonic() when the last call started
        self.draining = asyncio.Event()  # set at SIGTERM: streams end after their frames read

    def ready(self, repository: ModelRepository) -> None:
        self.repository = repository

    # --- RPCs ---

    async def Detect(  # noqa: N802 (gRPC method name)
        self, request: pb.DetectRequest, context: grpc.aio.ServicerContext
    ) -> pb.DetectResponse:
        async with self._status("Detect", context):
            return await self._detect(request, context, "Detect")
        raise AssertionError("unreachable")  # _status aborts the call on any failure

    async def DetectStream(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.DetectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.DetectResponse]:
        in_flight: asyncio.Queue[asyncio.Task[pb.DetectResponse] | BaseException | None]
        in_flight = asyncio.Queue(maxsize=STREAM_WINDOW)

        async def read() -> None:
            requests = aiter(request_iterator)
            drain = asyncio.ensure_future(self.draining.wait())
            try:
                while True:
                    following = asyncio.ensure_future(anext(requests, None))
                    await asyncio.wait({following, drain}, return_when=asyncio.FIRST_COMPLETED)
                    if not following.done():  # draining: frames not read are sent elsewhere
                        following.cancel()
                        await in_flight.put(_DrainingError())
                        return
                    request = following.result()
                    if request is None:
                        await in_flight.put(None)
                        return
                    task = asyncio.create_task(
                        self._detect(request, context, "DetectStream"),
                        name=repr(request.frame_id),
                    )
                    try:
                        await in_flight.put(task)
                    except asyncio.CancelledError:  # the stream ended while the window was full
                        task.cancel()
                        raise
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the client went away mid-stream
                await in_flight.put(exc)
            finally:
                drain.cancel()

        reader = asyncio.create_task(read())
        try:
            async with self._status("DetectStream", context):
                while (item := await in_flight.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    try:
                        response = await item
                    except RequestError as exc:
                        frame = item.get_name()
                        raise RequestError(exc.code, f"frame {frame}: {exc.message}") from None
                    yield response
        finally:
            reader.cancel()
            while not in_flight.empty():
                item = in_flight.get_nowait()
                if isinstance(item, asyncio.Task):
                    item.cancel()

    async def GetModelInfo(  # noqa: N802
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        async with self._status("GetModelInfo", context):
            return self._info(self._get(request.model_name, request.model_version))
        raise AssertionError("unreachable")

    async def ListModels(  # noqa: N802
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        async with self._status("ListModels", context):
            repository = self._repository()
            return pb.ListModelsResponse(
                models=[self._info(served) for served in repository.all()],
                default_model=repository.default,
            )
        raise AssertionError("unreachable")

    async def ReloadModels(  # noqa: N802
        self, request: pb.ReloadModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadModelsResponse:
        async with self._status("ReloadModels", context):
            repository = self._repository()
            try:
                changes = await repository.reload()
            except OSError as exc:
                raise RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"cannot read the model repository: {exc}",
                ) from None
            for line in changes:
                log.info("ReloadModels: %s", line)
            return pb.ReloadModelsResponse(
                changes=changes, models=[self._info(served) for served in repository.all()]
            )
        raise AssertionError("unreachable")

    def _info(self, served: ServedModel) -> pb.ModelInfo:
        detector = served.detector
        return model_info_message(
            detector.card,
            served.info,
            provider=detector.provider,
            max_pixels=detector.max_pixels,
            max_batch=self.config.max_batch,
            batch_timeout_ms=self.config.batch_timeout_ms,
            max_queue=self.config.max_queue,
            max_message_bytes=self.config.max_message_bytes,
        )

    @contextlib.asynccontextmanager
    async def _status(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """End the RPC with the right status on failure and count it by method and code:
        `RequestError` -> its code and message; anything unexpected -> INTERNAL (logged)."""
        code = grpc.StatusCode.OK
        self.last_call = time.monotonic()
        await context.send_initial_metadata(((SERVER_METADATA, INSTANCE),))
        try:
            yield
        except RequestError as exc:
            code = exc.code
            if exc.retry_after_s is not None:
                retry_ms = str(max(1, round(1000 * exc.retry_after_s)))
                context.set_trailing_metadata((("retry-after-ms", retry_ms),))
            await context.abort(exc.code, exc.message)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method)
            await context.abort(code, "internal error while detecting; see the server log")
        finally:
            self.metrics.requests.labels(method, code.name).inc()

    # --- one image ---

    def _repository(self) -> ModelRepository:
        if self.repository is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "the models are still loading; retry when grpc.health.v1 reports SERVING",
            )
        return self.repository

    def _get(self, name: str, version: str) -> ServedModel:
        try:
            return self._repository().get(name, version)
        except ModelNotFoundError as exc:
            raise RequestError(grpc.StatusCode.NOT_FOUND, str(exc)) from None

    async def _detect(
        self, request: pb.DetectRequest, context: grpc.aio.ServicerContext, method: str
    ) -> pb.DetectResponse:
        received = time.perf_counter()
        deadline = (
            None if request.deadline_ms == 0 else time.monotonic() + request.deadline_ms / 1000
        )
        served = self._get(request.model_name, request.model_version)
        with self._repository().hold(served):
            return await self._detect_with(served, request, context, method, received, deadline)

    def _refusal(self, exc: Exception) -> RequestError:
        """The answer to a request the batcher would not queue or run in time."""
        if isinstance(exc, QueueFullError):
            return RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {exc} (--max-queue {self.config.max_queue}); retry with backoff",
            )
        if isinstance(exc, OverloadedError):
            return RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {exc} of this request's deadline; retry in {exc.wait_s:.1f} s "
                "or with a longer deadline",
                retry_after_s=exc.wait_s,
            )
        return RequestError(
            grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the model ran"
        )

    async def _detect_with(
        self,
        served: ServedModel,
        request: pb.DetectRequest,
        context: grpc.aio.ServicerContext,
        method: str,
        received: float,
        frame_deadline: float | None,
    ) -> pb.DetectResponse:
        """One image's answer; ``frame_deadline`` (`time.monotonic`) is the request's
        ``deadline_ms``, which in a stream drops the frame instead of ending the stream."""
        detector = served.detector
        loop = asyncio.get_running_loop()
        options = _options(request.options, detector)
        image = await loop.run_in_executor(self.workers, _image, request, detector)
        decoded = time.perf_counter()
        remaining = context.time_remaining()
        call_deadline = None if remaining is None else time.monotonic() + remaining
        deadline = min((d for d in (frame_deadline, call_deadline) if d is not None), default=None)
        try:
            batch = await served.batcher.submit(image, deadline)
        except (QueueFullError, OverloadedError, DeadlineExpiredError) as exc:
            if method == "DetectStream" and frame_deadline is not None:
                self.metrics.dropped.labels(served.name, served.version).inc()
                return _dropped(served, request, image)
            raise self._refusal(exc) from None
        batched = time.perf_counter()
        response = await loop.run_in_executor(
            self.workers, _response, served, request, batch, options
        )
        done = time.perf_counter()
        timings = response.timings
        timings.decode_ms = 1000 * (decoded - received)
        timings.postprocess_ms = 1000 * (done - batched)
        timings.total_ms = 1000 * (done - received)
        stage = self.metrics.stage
        labels = (served.name, served.version)
        stage.labels("decode", *labels).observe(decoded - received)
        stage.labels("queue", *labels).observe(batch.queue_ms / 1000)
        stage.labels("inference", *labels).observe(batch.inference_ms / 1000)
        stage.labels("postprocess", *labels).observe(done - batched)
        self.metrics.latency.labels(method, *labels).observe(done - received)
        return response


def _response(
    served: ServedModel,
    request: pb.DetectRequest,
    batch: BatchResult,
    options: DetectOptions,
) -> pb.DetectResponse:
    """Postprocess one image's raw detections into its response (runs on a worker)."""
    detections = served.detector.postprocess(batch.raw, options)
    return pb.DetectResponse(
        **_echo(served, request, batch.raw.image_size),
        detections=[detection_message(d) for d in detections],
        timings=pb.Timings(
            queue_ms=batch.queue_ms,
            inference_ms=batch.inference_ms,
            batch_size=batch.batch_size,
        ),
    )


def _options(message: pb.DetectOptions, detector: Detector) -> DetectOptions:
    """The request's options, checked (ranges, and class names against the model)."""
    try:
        options = options_from_message(message)
    except DetectError as exc:
        raise _invalid(exc) from None
    try:
        detector.info.class_labels(options.classes)
    except DetectError as exc:
        raise _invalid(exc, "options.classes: ") from None
    return options


def _dropped(
    served: ServedModel, request: pb.DetectRequest, image: np.ndarray
) -> pb.DetectResponse:
    """The answer to a stream frame not run because its ``deadline_ms`` could not be met."""
    return pb.DetectResponse(**_echo(served, request, image.shape[:2]), dropped=True)


def _echo(
    served: ServedModel, request: pb.DetectRequest, size: tuple[int, ...]
) -> dict[str, object]:
    """What every answer carries: the request's frame id and time, the image's ``(height,
    width)`` and the model version that answered."""
    return {
        "frame_id": request.frame_id,
        "timestamp_ms": request.timestamp_ms,
        "image_height": size[0],
        "image_width": size[1],
        "model_name": served.name,
        "model_version": served.version,
    }


def _image(request: pb.DetectRequest, detector: Detector) -> np.ndarray:
    """The request's image as ``(H, W, 3) uint8`` RGB (EXIF orientation applied)."""
    try:
        return detector.prepare(*request_image(request))
    except DetectError as exc:  # a bad field, undecodable, truncated, over the pixel limit
        raise _invalid(exc) from None

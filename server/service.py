"""The detect.v1.Detector service: decode, batch, postprocess, answer.

Per image: the request is checked and decoded on a worker thread (``decode``), waits for a batch
(``queue``), runs in the batch (``inference``), and its detections are thresholded, pasted and
traced to polygons on a worker thread (``postprocess``); the event loop only moves messages.
Client mistakes end the RPC with INVALID_ARGUMENT and a message naming the field; a full queue
with RESOURCE_EXHAUSTED; anything unexpected with INTERNAL (logged with its traceback) while the
server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from detect.errors import DetectError
from detect.messages import (
    detection_message,
    model_info_message,
    options_from_message,
    request_image,
)
from detect.runtime.detector import Detector
from detect.structures import DetectOptions
from detect.v1 import detector_pb2 as pb
from detect.v1 import detector_pb2_grpc as pb_grpc
from server.batcher import Batcher, BatchResult, DeadlineExpiredError, QueueFullError
from server.config import ServeConfig
from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

STREAM_WINDOW = 32
"""Images of one stream in flight at once (decoding, queued or running)."""


class RequestError(Exception):
    """A request the server refuses: the status code and the message sent to the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(exc: DetectError, prefix: str = "") -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{prefix}{exc}")


class DetectorService(pb_grpc.DetectorServicer):
    """Serves a `Detector` through a `Batcher`; answers UNAVAILABLE until `ready` is called."""

    def __init__(self, config: ServeConfig, metrics: ServerMetrics, workers: ThreadPoolExecutor):
        self.config = config
        self.metrics = metrics
        self.workers = workers
        self.detector: Detector | None = None
        self.batcher: Batcher | None = None

    def ready(self, detector: Detector, batcher: Batcher) -> None:
        self.detector = detector
        self.batcher = batcher

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
            try:
                async for request in request_iterator:
                    task = asyncio.create_task(
                        self._detect(request, context, "DetectStream"),
                        name=repr(request.frame_id),
                    )
                    await in_flight.put(task)
                await in_flight.put(None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the client went away mid-stream
                await in_flight.put(exc)

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
            detector = self._detector()
            return model_info_message(
                detector.card,
                detector.info,
                provider=detector.provider,
                max_pixels=detector.max_pixels,
                max_batch=self.config.max_batch,
                batch_timeout_ms=self.config.batch_timeout_ms,
                max_queue=self.config.max_queue,
                max_message_bytes=self.config.max_message_bytes,
            )
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def _status(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """End the RPC with the right status on failure and count it by method and code:
        `RequestError` -> its code and message; anything unexpected -> INTERNAL (logged)."""
        code = grpc.StatusCode.OK
        try:
            yield
        except RequestError as exc:
            code = exc.code
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

    def _detector(self) -> Detector:
        if self.detector is None:
            raise RequestError(
                grpc.StatusCode.UNAVAILABLE,
                "the model is still loading; retry when grpc.health.v1 reports SERVING",
            )
        return self.detector

    async def _detect(
        self, request: pb.DetectRequest, context: grpc.aio.ServicerContext, method: str
    ) -> pb.DetectResponse:
        received = time.perf_counter()
        detector = self._detector()
        assert self.batcher is not None
        loop = asyncio.get_running_loop()
        options = _options(request.options, detector)
        image = await loop.run_in_executor(self.workers, _image, request, detector)
        decoded = time.perf_counter()
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            batch = await self.batcher.submit(image, deadline)
        except QueueFullError as exc:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server busy: {exc} (--max-queue {self.config.max_queue}); retry with backoff",
            ) from None
        except DeadlineExpiredError:
            raise RequestError(
                grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the model ran"
            ) from None
        batched = time.perf_counter()
        response = await loop.run_in_executor(self.workers, self._response, request, batch, options)
        done = time.perf_counter()
        timings = response.timings
        timings.decode_ms = 1000 * (decoded - received)
        timings.postprocess_ms = 1000 * (done - batched)
        timings.total_ms = 1000 * (done - received)
        stages = self.metrics.stage
        stages.labels("decode").observe(decoded - received)
        stages.labels("queue").observe(batch.queue_ms / 1000)
        stages.labels("inference").observe(batch.inference_ms / 1000)
        stages.labels("postprocess").observe(done - batched)
        self.metrics.latency.labels(method).observe(done - received)
        return response

    def _response(
        self,
        request: pb.DetectRequest,
        batch: BatchResult,
        options: DetectOptions,
    ) -> pb.DetectResponse:
        """Postprocess one image's raw detections into its response (runs on a worker)."""
        detector = self._detector()
        height, width = batch.raw.image_size
        detections = detector.postprocess(batch.raw, options)
        return pb.DetectResponse(
            frame_id=request.frame_id,
            timestamp_ms=request.timestamp_ms,
            image_width=width,
            image_height=height,
            detections=[detection_message(d) for d in detections],
            model_name=detector.name,
            model_version=detector.version,
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


def _image(request: pb.DetectRequest, detector: Detector) -> np.ndarray:
    """The request's image as ``(H, W, 3) uint8`` RGB (EXIF orientation applied)."""
    try:
        return detector.prepare(*request_image(request))
    except DetectError as exc:  # a bad field, undecodable, truncated, over the pixel limit
        raise _invalid(exc) from None

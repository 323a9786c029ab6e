"""Conversions between detect.v1 messages and the runtime's arrays and `Detection`s.

Functions here raise `RequestError` (a gRPC status code and a message naming the field and the
fix) for anything a client got wrong; the service turns it into the RPC's status.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from detect import __version__
from detect.errors import DetectError
from detect.runtime.detector import Detection, Detector
from detect.runtime.image import array_to_rgb
from detect.v1 import detector_pb2 as pb


class RequestError(Exception):
    """A request the server refuses: the status code and the message sent to the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_RAW_FORMATS = {
    pb.PIXEL_FORMAT_RGB8: ("RGB", 3),
    pb.PIXEL_FORMAT_BGR8: ("BGR", 3),
    pb.PIXEL_FORMAT_GRAY8: ("RGB", 1),
    pb.PIXEL_FORMAT_RGBA8: ("RGB", 4),
    pb.PIXEL_FORMAT_BGRA8: ("BGR", 4),
}


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def request_image(request: pb.DetectRequest, detector: Detector) -> np.ndarray:
    """The request's image as ``(H, W, 3) uint8`` RGB (EXIF orientation applied)."""
    kind = request.WhichOneof("image")
    try:
        if kind == "encoded_image":
            if not request.encoded_image:
                raise _invalid("encoded_image is empty; send the bytes of a JPEG/PNG/... file")
            return detector.prepare(request.encoded_image)
        if kind == "raw_image":
            return _raw_pixels(request.raw_image, detector.max_pixels)
    except DetectError as exc:  # ImageError: undecodable, truncated, over the pixel limit
        raise _invalid(str(exc)) from None
    raise _invalid("no image: set encoded_image (an image file's bytes) or raw_image (pixels)")


def _raw_pixels(raw: pb.RawImage, max_pixels: int) -> np.ndarray:
    if raw.pixel_format not in _RAW_FORMATS:
        raise _invalid(
            "raw_image.pixel_format is not set; use PIXEL_FORMAT_RGB8, BGR8, GRAY8, RGBA8 or BGRA8"
        )
    color, channels = _RAW_FORMATS[raw.pixel_format]
    name = pb.PixelFormat.Name(raw.pixel_format)
    if raw.channels != channels:
        raise _invalid(
            f"raw_image.channels is {raw.channels} but {name} has {channels}; send {channels}"
        )
    if raw.width < 1 or raw.height < 1:
        raise _invalid(
            f"raw_image is {raw.width}x{raw.height} pixels; width and height must be ≥ 1"
        )
    expected = raw.width * raw.height * channels
    if len(raw.data) != expected:
        raise _invalid(
            f"raw_image.data has {len(raw.data)} bytes but {raw.width}x{raw.height} {name} needs "
            f"{expected} (width * height * channels, rows without padding)"
        )
    pixels = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.width, channels)
    return array_to_rgb(pixels, color, max_pixels)


def request_options(options: pb.DetectOptions, detector: Detector) -> dict[str, Any]:
    """Keyword arguments of `Detector.postprocess` from the request's options (checked)."""
    kwargs: dict[str, Any] = {}
    if options.HasField("score_threshold"):
        if not 0.0 <= options.score_threshold <= 1.0:
            raise _invalid(f"options.score_threshold {options.score_threshold:g}: use 0 to 1")
        kwargs["score_threshold"] = options.score_threshold
    if options.HasField("max_detections"):
        if options.max_detections < 1:
            raise _invalid("options.max_detections 0: use 1 or more, or leave it unset for all")
        kwargs["max_detections"] = options.max_detections
    if options.classes:
        try:
            detector.class_labels(options.classes)
        except DetectError as exc:
            raise _invalid(f"options.classes: {exc}") from None
        kwargs["classes"] = list(options.classes)
    if options.HasField("return_polygons"):
        kwargs["polygons"] = options.return_polygons
    if options.HasField("polygon_tolerance"):
        if not options.polygon_tolerance >= 0:
            raise _invalid(
                f"options.polygon_tolerance {options.polygon_tolerance:g}: use 0 or more pixels"
            )
        kwargs["polygon_tolerance"] = options.polygon_tolerance
    if options.HasField("agnostic_nms"):
        kwargs["agnostic_nms"] = options.agnostic_nms
    return kwargs


def detection_message(detection: Detection) -> pb.Detection:
    """A `Detection` (TLWH pixels, label, polygons as rings) as a detect.v1 message."""
    message = pb.Detection(
        box=pb.Box(
            top=detection.top,
            left=detection.left,
            width=detection.width,
            height=detection.height,
            label=detection.label,
        ),
        score=detection.score,
        class_id=detection.class_id,
    )
    for polygon in detection.polygons:
        part = message.polygons.add()
        for ring in polygon.rings():
            part.rings.add().xy.extend(ring.ravel().tolist())
    return message


def model_info(
    detector: Detector,
    *,
    max_batch: int,
    batch_timeout_ms: float,
    max_queue: int,
    max_message_bytes: int,
) -> pb.ModelInfo:
    card = detector.card
    spec = card.input
    return pb.ModelInfo(
        name=detector.name,
        version=detector.version,
        arch=card.arch,
        backbone=card.backbone,
        roi=card.roi,
        classes=[
            pb.ModelClass(name=name, class_id=cid)
            for name, cid in zip(card.labels, card.category_ids, strict=True)
        ],
        has_masks=card.has_masks,
        input=pb.InputSpec(
            color=str(spec["color"]),
            min_size=int(spec["min_size"]),
            max_size=int(spec["max_size"]),
            mean=[float(v) for v in spec["mean"]],
            std=[float(v) for v in spec["std"]],
        ),
        provider=detector.provider,
        precision=card.precision,
        default_score_threshold=float(card.thresholds["score"]),
        default_agnostic_nms=card.agnostic_nms,
        agnostic_nms_iou=card.agnostic_nms_iou,
        mask_threshold=float(card.thresholds["mask"]),
        batching=pb.Batching(
            max_batch=max_batch, batch_timeout_ms=batch_timeout_ms, max_queue=max_queue
        ),
        max_pixels=detector.max_pixels,
        max_message_bytes=max_message_bytes,
        server_version=__version__,
    )

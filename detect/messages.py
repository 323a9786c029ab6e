"""detect.v1 protobuf messages <-> `detect.structures`, for the server and the client alike.

The only place where TLWH boxes, pixel-format enums and optional option fields are translated.
Functions that read a message a client sent raise `MessageError` (a `DetectError`) naming the
field at fault and the fix; the server answers INVALID_ARGUMENT with it. No ONNX Runtime, no
torch, no gRPC channel here: protobuf and NumPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detect import __version__
from detect.errors import ConfigError, InputError
from detect.runtime.model_card import ModelCard
from detect.structures import Detection, DetectOptions, ModelInfo, OptionError, Polygon
from detect.v1 import detector_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Detector"].full_name
"""``detect.v1.Detector``: the service's full name (health checks, reflection, service configs)."""

SERVER_METADATA = "detect-server"
"""The initial metadata key by which a server names itself (``HOST/PID``) in each answer: which
server of several a call or stream reached."""


class MessageError(InputError):
    """A field of a received message that cannot be used as sent."""


PIXEL_FORMATS = {
    pb.PIXEL_FORMAT_RGB8: ("RGB", 3),
    pb.PIXEL_FORMAT_BGR8: ("BGR", 3),
    pb.PIXEL_FORMAT_GRAY8: ("RGB", 1),
    pb.PIXEL_FORMAT_RGBA8: ("RGB", 4),
    pb.PIXEL_FORMAT_BGRA8: ("BGR", 4),
}
"""Each raw pixel format: the color order `Detector.prepare` takes, and channels per pixel."""

_FORMAT_OF = {(channels, color): f for f, (color, channels) in PIXEL_FORMATS.items()}
_FORMAT_OF[(1, "BGR")] = pb.PIXEL_FORMAT_GRAY8


# --------------------------------------------------------------------------- images


def raw_image_message(array: np.ndarray, color: str | None) -> pb.RawImage:
    """A ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 array with ``color`` "RGB"/"BGR" as
    a RawImage (rows without padding)."""
    if color not in ("RGB", "BGR"):
        raise ConfigError("an image array needs color='RGB' or color='BGR'")
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ConfigError(
            f"image array of dtype {array.dtype} and shape {array.shape}: "
            "send uint8 (H, W), (H, W, 3) or (H, W, 4), or encoded bytes"
        )
    channels = 1 if array.ndim == 2 else array.shape[2]
    if (channels, color) not in _FORMAT_OF:
        raise ConfigError(f"image array with {channels} channels: use 1, 3 or 4")
    return pb.RawImage(
        data=np.ascontiguousarray(array).tobytes(),
        width=array.shape[1],
        height=array.shape[0],
        channels=channels,
        pixel_format=_FORMAT_OF[(channels, color)],
    )


def request_image(request: pb.DetectRequest) -> tuple[bytes | np.ndarray, str | None]:
    """The request's image as `Detector.prepare` takes it: ``(encoded bytes, None)`` or
    ``((H, W, C) uint8 pixels, color)`` (a view of the message's bytes, not a copy)."""
    kind = request.WhichOneof("image")
    if kind == "encoded_image":
        if not request.encoded_image:
            raise MessageError("encoded_image is empty; send the bytes of a JPEG/PNG/... file")
        return request.encoded_image, None
    if kind == "raw_image":
        return _raw_pixels(request.raw_image)
    raise MessageError("no image: set encoded_image (an image file's bytes) or raw_image (pixels)")


def _raw_pixels(raw: pb.RawImage) -> tuple[np.ndarray, str]:
    if raw.pixel_format not in PIXEL_FORMATS:
        raise MessageError(
            "raw_image.pixel_format is not set; use PIXEL_FORMAT_RGB8, BGR8, GRAY8, RGBA8 or BGRA8"
        )
    color, channels = PIXEL_FORMATS[raw.pixel_format]
    name = pb.PixelFormat.Name(raw.pixel_format)
    if raw.channels != channels:
        raise MessageError(
            f"raw_image.channels is {raw.channels} but {name} has {channels}; send {channels}"
        )
    if raw.width < 1 or raw.height < 1:
        raise MessageError(
            f"raw_image is {raw.width}x{raw.height} pixels; width and height must be ≥ 1"
        )
    expected = raw.width * raw.height * channels
    if len(raw.data) != expected:
        raise MessageError(
            f"raw_image.data has {len(raw.data)} bytes but {raw.width}x{raw.height} {name} needs "
            f"{expected} (width * height * channels, rows without padding)"
        )
    pixels = np.frombuffer(raw.data, np.uint8).reshape(raw.height, raw.width, channels)
    return pixels, color


# --------------------------------------------------------------------------- options


def options_message(options: DetectOptions) -> pb.DetectOptions:
    """The set fields of ``options`` (unset ones leave the server's model defaults)."""
    message = pb.DetectOptions()
    if options.score_threshold is not None:
        message.score_threshold = options.score_threshold
    if options.max_detections is not None:
        message.max_detections = options.max_detections
    message.classes.extend(options.classes)
    if options.agnostic_nms is not None:
        message.agnostic_nms = options.agnostic_nms
    message.return_polygons = options.polygons
    message.polygon_tolerance = options.polygon_tolerance
    return message


def options_from_message(message: pb.DetectOptions) -> DetectOptions:
    """`DetectOptions` of a request; a field out of range is a `MessageError` naming it."""
    fields: dict[str, object] = {"classes": tuple(message.classes)}
    for name in ("score_threshold", "max_detections", "agnostic_nms", "polygon_tolerance"):
        if message.HasField(name):
            fields[name] = getattr(message, name)
    if message.HasField("return_polygons"):
        fields["polygons"] = message.return_polygons
    try:
        return DetectOptions(**fields)  # type: ignore[arg-type]
    except OptionError as exc:
        value = f"{exc.value:g}" if isinstance(exc.value, float) else exc.value  # float32 sent
        raise MessageError(f"options.{exc.field} {value}: {exc.fix}") from None


# --------------------------------------------------------------------------- detections


def detection_message(detection: Detection) -> pb.Detection:
    """A `Detection` as a detect.v1 message: TLWH box, label, score, polygons as flat rings."""
    top, left, width, height = detection.tlwh
    message = pb.Detection(
        box=pb.Box(top=top, left=left, width=width, height=height, label=detection.label),
        score=detection.score,
        class_id=detection.class_id,
    )
    for polygon in detection.polygons:
        part = message.polygons.add()
        for ring in polygon.rings():
            part.rings.add().xy.extend(ring.ravel().tolist())
    return message


def detection_from_message(message: pb.Detection) -> Detection:
    """The `Detection` (xyxy inside) of a detect.v1 message."""
    box = message.box
    return Detection.from_tlwh(
        (box.top, box.left, box.width, box.height),
        box.label,
        message.class_id,
        message.score,
        [_polygon(p) for p in message.polygons],
    )


def _polygon(message: pb.Polygon) -> Polygon:
    rings = [np.asarray(r.xy, np.float32).reshape(-1, 2) for r in message.rings]
    return Polygon(rings[0], tuple(rings[1:])) if rings else Polygon(np.zeros((0, 2), np.float32))


# --------------------------------------------------------------------------- models


def model_info_from_message(message: pb.ModelInfo) -> ModelInfo:
    """What a client needs of the served model to read and check its answers."""
    return ModelInfo(
        name=message.name,
        version=message.version,
        labels=[c.name for c in message.classes],
        category_ids=[c.class_id for c in message.classes],
        has_masks=message.has_masks,
        score_threshold=message.default_score_threshold,
        mask_threshold=message.mask_threshold,
        agnostic_nms=message.default_agnostic_nms,
        agnostic_nms_iou=message.agnostic_nms_iou,
    )


def message_dict(message: Any) -> dict[str, Any]:
    """Every field of ``message`` (unset ones at their defaults) as plain JSON values, by proto
    field name: nested messages as dicts, repeated fields as lists, 64-bit integers as numbers
    (not protobuf JSON's strings) and float32 fields at their shortest round-trip form (0.7,
    not 0.699999988079071)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        repeated = field.is_repeated
        values = list(value) if repeated else [value]
        if field.type == field.TYPE_MESSAGE:
            values = [message_dict(v) for v in values]
        elif field.type == field.TYPE_FLOAT:
            values = [float(np.format_float_positional(np.float32(v))) for v in values]
        out[field.name] = values if repeated else values[0]
    return out


def model_info_message(
    card: ModelCard,
    info: ModelInfo,
    *,
    provider: str,
    max_pixels: int,
    max_batch: int,
    batch_timeout_ms: float,
    max_queue: int,
    max_message_bytes: int,
) -> pb.ModelInfo:
    """The served model's GetModelInfo answer: its card, defaults, provider and limits."""
    spec = card.input
    return pb.ModelInfo(
        name=info.name,
        version=info.version,
        arch=card.arch,
        backbone=card.backbone,
        roi=card.roi,
        classes=[
            pb.ModelClass(name=name, class_id=cid)
            for name, cid in zip(info.labels, info.category_ids, strict=True)
        ],
        has_masks=info.has_masks,
        input=pb.InputSpec(
            color=str(spec["color"]),
            min_size=int(spec["min_size"]),
            max_size=int(spec["max_size"]),
            mean=[float(v) for v in spec["mean"]],
            std=[float(v) for v in spec["std"]],
        ),
        provider=provider,
        precision=card.precision,
        default_score_threshold=info.score_threshold,
        default_agnostic_nms=info.agnostic_nms,
        agnostic_nms_iou=info.agnostic_nms_iou,
        mask_threshold=info.mask_threshold,
        batching=pb.Batching(
            max_batch=max_batch, batch_timeout_ms=batch_timeout_ms, max_queue=max_queue
        ),
        max_pixels=max_pixels,
        max_message_bytes=max_message_bytes,
        server_version=__version__,
        sha256=card.sha256,
    )

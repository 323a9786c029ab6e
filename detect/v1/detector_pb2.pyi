from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGB8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGR8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_GRAY8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGBA8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGRA8: _ClassVar[PixelFormat]
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_RGB8: PixelFormat
PIXEL_FORMAT_BGR8: PixelFormat
PIXEL_FORMAT_GRAY8: PixelFormat
PIXEL_FORMAT_RGBA8: PixelFormat
PIXEL_FORMAT_BGRA8: PixelFormat

class DetectRequest(_message.Message):
    __slots__ = ("encoded_image", "raw_image", "options", "frame_id", "timestamp_ms", "model_name", "model_version", "deadline_ms")
    ENCODED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RAW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    encoded_image: bytes
    raw_image: RawImage
    options: DetectOptions
    frame_id: str
    timestamp_ms: int
    model_name: str
    model_version: str
    deadline_ms: int
    def __init__(self, encoded_image: _Optional[bytes] = ..., raw_image: _Optional[_Union[RawImage, _Mapping]] = ..., options: _Optional[_Union[DetectOptions, _Mapping]] = ..., frame_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("data", "width", "height", "channels", "pixel_format")
    DATA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    width: int
    height: int
    channels: int
    pixel_format: PixelFormat
    def __init__(self, data: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., pixel_format: _Optional[_Union[PixelFormat, str]] = ...) -> None: ...

class DetectOptions(_message.Message):
    __slots__ = ("score_threshold", "max_detections", "classes", "return_polygons", "polygon_tolerance", "agnostic_nms")
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    RETURN_POLYGONS_FIELD_NUMBER: _ClassVar[int]
    POLYGON_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    AGNOSTIC_NMS_FIELD_NUMBER: _ClassVar[int]
    score_threshold: float
    max_detections: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    return_polygons: bool
    polygon_tolerance: float
    agnostic_nms: bool
    def __init__(self, score_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., return_polygons: _Optional[bool] = ..., polygon_tolerance: _Optional[float] = ..., agnostic_nms: _Optional[bool] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("frame_id", "timestamp_ms", "image_width", "image_height", "detections", "model_name", "model_version", "timings", "dropped")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    frame_id: str
    timestamp_ms: int
    image_width: int
    image_height: int
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    model_name: str
    model_version: str
    timings: Timings
    dropped: bool
    def __init__(self, frame_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., dropped: _Optional[bool] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "score", "class_id", "polygons")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    POLYGONS_FIELD_NUMBER: _ClassVar[int]
    box: Box
    score: float
    class_id: int
    polygons: _containers.RepeatedCompositeFieldContainer[Polygon]
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., score: _Optional[float] = ..., class_id: _Optional[int] = ..., polygons: _Optional[_Iterable[_Union[Polygon, _Mapping]]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("top", "left", "width", "height", "label")
    TOP_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    top: float
    left: float
    width: float
    height: float
    label: str
    def __init__(self, top: _Optional[float] = ..., left: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class Polygon(_message.Message):
    __slots__ = ("rings",)
    RINGS_FIELD_NUMBER: _ClassVar[int]
    rings: _containers.RepeatedCompositeFieldContainer[Ring]
    def __init__(self, rings: _Optional[_Iterable[_Union[Ring, _Mapping]]] = ...) -> None: ...

class Ring(_message.Message):
    __slots__ = ("xy",)
    XY_FIELD_NUMBER: _ClassVar[int]
    xy: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, xy: _Optional[_Iterable[float]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "postprocess_ms", "total_ms", "batch_size")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    batch_size: int
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model_name", "model_version")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...

class ReloadModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadModelsResponse(_message.Message):
    __slots__ = ("changes", "models")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, changes: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "arch", "backbone", "roi", "classes", "has_masks", "input", "provider", "precision", "default_score_threshold", "default_agnostic_nms", "agnostic_nms_iou", "mask_threshold", "batching", "max_pixels", "max_message_bytes", "server_version", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    ROI_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    HAS_MASKS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_AGNOSTIC_NMS_FIELD_NUMBER: _ClassVar[int]
    AGNOSTIC_NMS_IOU_FIELD_NUMBER: _ClassVar[int]
    MASK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    arch: str
    backbone: str
    roi: str
    classes: _containers.RepeatedCompositeFieldContainer[ModelClass]
    has_masks: bool
    input: InputSpec
    provider: str
    precision: str
    default_score_threshold: float
    default_agnostic_nms: bool
    agnostic_nms_iou: float
    mask_threshold: float
    batching: Batching
    max_pixels: int
    max_message_bytes: int
    server_version: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., arch: _Optional[str] = ..., backbone: _Optional[str] = ..., roi: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[ModelClass, _Mapping]]] = ..., has_masks: _Optional[bool] = ..., input: _Optional[_Union[InputSpec, _Mapping]] = ..., provider: _Optional[str] = ..., precision: _Optional[str] = ..., default_score_threshold: _Optional[float] = ..., default_agnostic_nms: _Optional[bool] = ..., agnostic_nms_iou: _Optional[float] = ..., mask_threshold: _Optional[float] = ..., batching: _Optional[_Union[Batching, _Mapping]] = ..., max_pixels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., server_version: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ModelClass(_message.Message):
    __slots__ = ("name", "class_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    class_id: int
    def __init__(self, name: _Optional[str] = ..., class_id: _Optional[int] = ...) -> None: ...

class InputSpec(_message.Message):
    __slots__ = ("color", "min_size", "max_size", "mean", "std")
    COLOR_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    color: str
    min_size: int
    max_size: int
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, color: _Optional[str] = ..., min_size: _Optional[int] = ..., max_size: _Optional[int] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ...) -> None: ...

class Batching(_message.Message):
    __slots__ = ("max_batch", "batch_timeout_ms", "max_queue")
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    max_batch: int
    batch_timeout_ms: float
    max_queue: int
    def __init__(self, max_batch: _Optional[int] = ..., batch_timeout_ms: _Optional[float] = ..., max_queue: _Optional[int] = ...) -> None: ...

"""The backend protocol: one way to run a model, whatever runs it.

A backend is ``prepare -> infer_batch -> postprocess``:

- `Backend.prepare` takes one image (encoded file bytes, or a ``(H, W)`` / ``(H, W, 3)`` /
  ``(H, W, 4)`` uint8 array with ``color`` "RGB" or "BGR") and checks it; a bad one raises a
  `detect.errors.DetectError` naming the problem.
- `Backend.infer_batch` runs the model on prepared images; each result has ``image_size``
  ``(height, width)``. ``options`` are the ones its results will be postprocessed with (a remote
  backend sends them along).
- `Backend.postprocess` turns one result into `Detection`s (xyxy pixels, best first).

Implemented by the ONNX Runtime `detect.runtime.detector.Detector`, the gRPC
`detect.client.DetectorClient` and the torch eager `detect.models.eager.EagerModel`.
`open_backend` opens one from a model file, a server address or a checkpoint; `detect_batch` and
`detect_each` run any of them. Predict, eval (and training validation), parity, bench's eager
baseline, the demo and local video run models only this way; video through a server streams
with ``DetectStream`` instead (`detect.video.remote`), to keep frames in flight. Nothing here
imports ONNX Runtime, torch or gRPC.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from detect.errors import ConfigError, DetectError, InputError
from detect.runtime.sources import read_image
from detect.structures import Detection, DetectOptions, ModelInfo

Image = bytes | np.ndarray
"""Encoded file bytes, or a uint8 pixel array (with a color order)."""

K = TypeVar("K")


class Backend(Protocol):
    """Runs a model (see the module docstring)."""

    @property
    def info(self) -> ModelInfo: ...

    def prepare(self, image: Image, color: str | None = None) -> Any: ...

    def infer_batch(self, images: list[Any], options: DetectOptions) -> list[Any]: ...

    def postprocess(self, raw: Any, options: DetectOptions) -> list[Detection]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Detected:
    """One image's detections and its size in pixels (``image_size = (height, width)``)."""

    detections: list[Detection]
    image_size: tuple[int, int]
    raw: Any = None  # the backend's result, for those that want more (proposals, masks)
    image: Any = None  # what `Backend.prepare` made of the image (local backends: its RGB)


def detect_batch(
    backend: Backend, images: list[Image], options: DetectOptions, color: str | None = None
) -> list[Detected]:
    """Every image through the backend in one `Backend.infer_batch` call, results in order."""
    prepared = [backend.prepare(image, color) for image in images]
    raws = backend.infer_batch(prepared, options)
    return [_detected(backend, r, p, options) for r, p in zip(raws, prepared, strict=True)]


def _detected(backend: Backend, raw: Any, prepared: Any, options: DetectOptions) -> Detected:
    return Detected(backend.postprocess(raw, options), tuple(raw.image_size), raw, prepared)


def detect_each(
    backend: Backend,
    items: Iterable[tuple[K, Path | Image]],
    options: DetectOptions,
    batch_size: int = 1,
    color: str | None = None,
) -> Iterator[tuple[K, Detected | DetectError]]:
    """``(key, Detected)`` per item, or ``(key, error)`` for one that cannot be read or
    prepared (any `DetectError`) or that the model refuses (an `InputError`, such as a server's
    INVALID_ARGUMENT); the others go on, and any other error ends the run. Paths are read here;
    ``batch_size`` images go to `Backend.infer_batch` at once, and a batch that fails on one
    input is run again image by image, so that a bad image only fails itself. Results come in
    item order, except that an item failing to read or prepare is reported at once, ahead of
    the batch still being gathered (with ``batch_size`` 1 everything is in order)."""
    batch: list[tuple[K, Any]] = []
    for key, item in items:
        try:
            image = read_image(item) if isinstance(item, Path) else item
            batch.append((key, backend.prepare(image, color)))
        except DetectError as exc:
            yield key, exc
            continue
        if len(batch) >= batch_size:
            yield from _run(backend, batch, options)
            batch = []
    if batch:
        yield from _run(backend, batch, options)


def _run(
    backend: Backend, batch: list[tuple[K, Any]], options: DetectOptions
) -> Iterator[tuple[K, Detected | DetectError]]:
    """One `Backend.infer_batch` call for the prepared ``batch``; when it fails on an input,
    each image again on its own, so that only the bad one fails."""
    try:
        raws = backend.infer_batch([prepared for _, prepared in batch], options)
    except InputError as exc:
        if len(batch) == 1:
            yield batch[0][0], exc
            return
        for item in batch:
            yield from _run(backend, [item], options)
        return
    for (key, prepared), raw in zip(batch, raws, strict=True):
        yield key, _detected(backend, raw, prepared, options)


def open_backend(
    *,
    model: Path | None = None,
    server: str | None = None,
    checkpoint: Path | None = None,
    device: str = "auto",
    engine: str = "auto",
    max_pixels: int | None = None,
    connection: dict[str, Any] | None = None,
    threads: int = 0,
) -> Backend:
    """The backend for exactly one of an exported ``model`` (ONNX Runtime on ``device``), a
    ``server`` address (gRPC, with ``connection`` keywords of `DetectorClient`; ``engine``
    "onnxruntime", "openvino" or "auto" runs the model file, on ``threads`` intra-op threads on the
    CPU, 0: the engine's default) or a training
    ``checkpoint`` (torch eager on the CPU). Each is imported only when asked for."""
    given = [n for n, v in (("model", model), ("server", server), ("checkpoint", checkpoint)) if v]
    if len(given) != 1:
        raise ConfigError(f"give exactly one of a model, a server or a checkpoint (got {given})")
    limit = {} if max_pixels is None else {"max_pixels": max_pixels}
    if model is not None:
        from detect.runtime.detector import Detector

        return Detector(model, device=device, backend=engine, threads=threads, **limit)
    if server is not None:
        from detect.client import DetectorClient

        return DetectorClient(server, **(connection or {}))
    from detect.models.eager import EagerModel

    return EagerModel.from_checkpoint(checkpoint, **limit)

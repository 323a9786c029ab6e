"""`detect bench`: latency and throughput of a running server, per concurrency level.

For each concurrency C, C client threads send `Detect` calls back to back (each waits for its
answer before sending the next) for ``duration_s`` seconds after a short warm-up; the report
gives requests, errors, images per second, p50/p90/p99 latency seen by the client, and the mean
batch size the server formed. With ``compare_eager`` the checkpoint runs in this process in
torchvision eager mode (one stream, same images, same seconds), and the report prints the
server's p50 at concurrency 1 and its best throughput as ratios to eager.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.client import DetectorClient, ServerError
from detect.config import SERVER_HELP, Connection, DetectSettings, host_port
from detect.errors import ConfigError, DataError, DetectError
from detect.runtime.backend import Backend, open_backend
from detect.runtime.image import decode_image
from detect.runtime.sources import find_images, read_image
from detect.settings import FLAGS, Spelling, at_least, check, nested, setting
from detect.structures import DetectOptions
from detect.v1 import detector_pb2 as pb


def _levels(value: Any, root: Path, what: str) -> tuple[int, ...]:
    """``1,8,32`` (a flag) or ``[1, 8, 32]`` (a file): concurrency levels, each 1 or more."""
    texts = value.split(",") if isinstance(value, str) else value
    malformed = ConfigError(f"{what} {value}: use comma-separated whole numbers, e.g. 1,8,32")
    if not isinstance(texts, list | tuple) or not texts:
        raise malformed
    levels = []
    for text in texts:
        if isinstance(text, bool | float):
            raise malformed
        try:
            levels.append(int(text))
        except (TypeError, ValueError):
            raise malformed from None
    if min(levels) < 1:
        raise ConfigError(f"{what} {value}: use levels of 1 or more")
    return tuple(levels)


def _checkpoint(path: Path | None) -> str | None:
    return None if path is None or path.is_file() else "no such checkpoint"


@dataclass
class BenchConfig:
    """Settings of `detect bench` (see the module docstring).

    ``images``: files or folders to send (default: ``synthetic`` generated scenes of ``size``
    pixels, JPEG-encoded). ``detection`` holds the requests' options (`detect bench` takes
    `DetectSettings`' ``--score`` and ``--polygons``).
    """

    server: str | None = setting(
        None,
        SERVER_HELP,
        required=True,
        check=host_port,
    )
    concurrency: tuple[int, ...] = setting(
        (1, 8, 32), "levels", parse=_levels, shown_default="1,8,32"
    )
    duration_s: float = setting(
        10.0,
        "seconds per level",
        check=lambda v: None if v > 0 else "use more than 0 seconds",
        flag="--duration",
        metavar="DURATION",
    )
    images: tuple[Path, ...] = setting((), "images to send (default: synthetic)")
    synthetic: int = setting(16, "synthetic images when no --images", check=at_least(1))
    size: int = setting(480, "side of the synthetic images, pixels", check=at_least(32))
    compare_eager: Path | None = setting(
        None, "checkpoint to run in torchvision eager (train extra)", check=_checkpoint
    )
    connection: Connection = nested(Connection)
    detection: DetectSettings = nested(
        DetectSettings, skip=("max_detections", "classes", "agnostic_nms", "polygon_tolerance")
    )

    def __post_init__(self) -> None:
        self.images = tuple(Path(p) for p in self.images)

    @property
    def options(self) -> DetectOptions:
        """The requests' options."""
        return self.detection.options()

    def validate(self, spell: Spelling | None = None) -> None:
        spell = spell or Spelling(BenchConfig, FLAGS)
        if not self.server:
            raise spell.problem(f"give {spell('server')} HOST:PORT")


@dataclass(frozen=True)
class Level:
    """Figures of one concurrency level (or of eager, with ``concurrency`` 1)."""

    name: str
    concurrency: int
    requests: int
    errors: Counter
    seconds: float
    latencies_ms: list[float]
    batch_sizes: list[int]

    @property
    def images_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def lines(self) -> list[str]:
        """Its row of the table, and a line naming its errors when it had any."""
        errors = [f"  errors: {dict(self.errors)}"] if self.errors else []
        return [self.row(), *errors]

    def row(self) -> str:
        batch = f"{statistics.mean(self.batch_sizes):.1f}" if self.batch_sizes else "-"
        errors = sum(self.errors.values())
        return (
            f"{self.name:<12}{self.concurrency:>6}{self.requests:>10}{errors:>8}"
            f"{self.images_per_s:>9.2f}{self.percentile(50):>10.1f}{self.percentile(90):>10.1f}"
            f"{self.percentile(99):>10.1f}{batch:>8}"
        )


HEADER = (
    f"{'path':<12}{'conc.':>6}{'requests':>10}{'errors':>8}{'img/s':>9}"
    f"{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'batch':>8}"
)


def bench_images(config: BenchConfig) -> list[bytes]:
    """Encoded images to send: the given files, or synthetic JPEG scenes."""
    if config.images:
        blobs = []
        for path in find_images(list(config.images)):
            try:
                blobs.append(read_image(path))
            except DetectError as exc:
                raise DataError(f"image {path}: {exc}") from None
        return blobs
    from detect.data.synth import generate_image

    blobs = []
    for index in range(config.synthetic):
        rgb, _, _ = generate_image(seed=0, index=index, size=config.size)
        ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        blobs.append(jpeg.tobytes())
    return blobs


def run_level(
    client: DetectorClient,
    images: list[bytes],
    concurrency: int,
    seconds: float,
    options: DetectOptions,
) -> Level:
    """C threads calling `Detect` back to back for ``seconds`` (after one call each to warm up)."""
    latencies: list[float] = []
    batches: list[int] = []
    errors: Counter = Counter()
    lock = threading.Lock()
    start_barrier = threading.Barrier(concurrency + 1)
    stop_at = [float("inf")]  # set once every thread has warmed up

    def worker(offset: int) -> None:
        with contextlib.suppress(ServerError):  # counted in the measured part if it persists
            client.detect(images[offset % len(images)], options=options)
        start_barrier.wait()
        i = offset
        while time.perf_counter() < stop_at[0]:
            started = time.perf_counter()
            try:
                result = client.detect(images[i % len(images)], options=options)
            except ServerError as exc:
                with lock:
                    errors[exc.code.name] += 1
            else:
                with lock:
                    latencies.append(1000 * (time.perf_counter() - started))
                    batches.append(int(result.timings["batch_size"]))
            i += concurrency

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return Level("server", concurrency, len(latencies), errors, elapsed, latencies, batches)


def run_backend(
    backend: Backend, images: list[bytes], seconds: float, options: DetectOptions, name: str
) -> Level:
    """One image at a time through ``backend`` in this process for ``seconds``, after one
    untimed image: decoding and the model (`Backend.prepare` and `Backend.infer_batch`), as a
    plain torchvision user would time it; the postprocessing is left out."""

    def once(image: bytes) -> None:
        backend.infer_batch([backend.prepare(image)], options)

    once(images[0])
    latencies: list[float] = []
    began = time.perf_counter()
    i = 0
    while time.perf_counter() - began < seconds:
        started = time.perf_counter()
        once(images[i % len(images)])
        latencies.append(1000 * (time.perf_counter() - started))
        i += 1
    elapsed = time.perf_counter() - began
    return Level(name, 1, len(latencies), Counter(), elapsed, latencies, [])


@dataclass(frozen=True)
class Target:
    """What is measured: the server's model (its `GetModelInfo`) and the images sent to it."""

    server: str
    info: pb.ModelInfo
    images: int
    sizes: list[tuple[int, int]]
    duration_s: float
    polygons: bool

    def lines(self) -> list[str]:
        """The report's head: the server, the images, and the table's header."""
        info = self.info
        sizes = ", ".join(sorted(f"{w}x{h}" for h, w in self.sizes))
        return [
            f"server {self.server}: {info.name} (version {info.version}, {info.arch} "
            f"{info.backbone}, {info.precision}) on {info.provider}, max batch "
            f"{info.batching.max_batch}, batch timeout {info.batching.batch_timeout_ms:g} ms",
            f"{self.images} images ({sizes}), {self.duration_s:g} s per level, "
            f"polygons {'on' if self.polygons else 'off'}",
            HEADER,
        ]


@dataclass(frozen=True)
class BenchReport:
    """Every level measured, the server's in order and then eager's (when asked)."""

    target: Target
    levels: list[Level]

    @property
    def failed(self) -> bool:
        """A level got no answer."""
        return any(level.requests == 0 for level in self.levels)

    def ratio_lines(self) -> list[str]:
        """The server's p50 at concurrency 1 and its best throughput as ratios to eager's (none
        without eager)."""
        eager = next((lv for lv in self.levels if lv.name == "eager"), None)
        if eager is None:
            return []
        served = [lv for lv in self.levels if lv.name == "server"]
        single = next((lv for lv in served if lv.concurrency == 1), served[0])
        best = max(served, key=lambda lv: lv.images_per_s)
        return [
            f"p50 latency, server at concurrency {single.concurrency} / eager: "
            f"{single.percentile(50) / eager.percentile(50):.2f}x",
            f"throughput, server best (concurrency {best.concurrency}) / eager: "
            f"{best.images_per_s / eager.images_per_s:.2f}x",
        ]


def bench(
    config: BenchConfig,
    on_start: Callable[[Target], None] = lambda target: None,
    on_level: Callable[[Level], None] = lambda level: None,
) -> BenchReport:
    """Run every level (and eager when asked). ``on_start`` gets the target before the first
    level, ``on_level`` each level as it finishes."""
    check(config)
    assert config.server is not None
    images = bench_images(config)
    options = config.options
    with DetectorClient(config.server, **config.connection.client_kwargs(), timeout=120) as client:
        target = Target(
            server=config.server,
            info=client.model_info(),
            images=len(images),
            sizes=sorted({decode_image(b).shape[:2] for b in images[:50]}),
            duration_s=config.duration_s,
            polygons=options.polygons,
        )
        on_start(target)
        levels = []
        for concurrency in config.concurrency:
            level = run_level(client, images, concurrency, config.duration_s, options)
            levels.append(level)
            on_level(level)
    if config.compare_eager is not None:
        backend = open_backend(checkpoint=config.compare_eager)
        eager = run_backend(backend, images, config.duration_s, options, "eager")
        levels.append(eager)
        on_level(eager)
    return BenchReport(target, levels)

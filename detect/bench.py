"""`detect bench`: latency and throughput of a running server, per concurrency level.

For each concurrency C, C client threads send `Detect` calls back to back (each waits for its
answer before sending the next) for ``duration_s`` seconds after a short warm-up; the report
gives requests, errors, images per second, p50/p90/p99 latency seen by the client, and the mean
batch size the server formed. With ``compare_eager`` the checkpoint runs in this process in
torchvision eager mode (one stream, same images, same seconds), and the report prints the
server's p50 at concurrency 1 and its best throughput as ratios to eager.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detect.client import DetectorClient, ServerError
from detect.config import Connection, from_namespace
from detect.errors import ConfigError, DataError, DetectError
from detect.runtime.backend import Backend, open_backend
from detect.runtime.image import decode_image
from detect.runtime.sources import find_images, read_image
from detect.settings import add_flags, from_flags
from detect.structures import DetectOptions, options_from_flags


@dataclass
class BenchConfig:
    """Settings of `detect bench` (see the module docstring).

    ``images``: files or folders to send (default: ``synthetic`` generated scenes of ``size``
    pixels, JPEG-encoded). ``options`` are the requests' options.
    """

    server: str
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    duration_s: float = 10.0
    images: list[Path] = field(default_factory=list)
    synthetic: int = 16
    size: int = 480
    options: DetectOptions = field(default_factory=DetectOptions)
    compare_eager: Path | None = None
    connection: Connection = field(default_factory=Connection)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """`detect bench`'s flags."""
        p.add_argument("--server", required=True, help="HOST:PORT of a running `detect serve`")
        p.add_argument(
            "--concurrency", type=_levels, default=[1, 8, 32], help="levels (default: 1,8,32)"
        )
        p.add_argument(
            "--duration",
            dest="duration_s",
            metavar="DURATION",
            type=float,
            default=10.0,
            help="seconds per level",
        )
        p.add_argument("--images", type=Path, nargs="+", help="images to send (default: synthetic)")
        p.add_argument(
            "--synthetic", type=int, default=16, help="synthetic images when no --images"
        )
        p.add_argument("--size", type=int, default=480, help="side of the synthetic images, pixels")
        p.add_argument("--score", type=float, help="score threshold (default: the model card's)")
        p.add_argument("--no-polygons", action="store_true", help="ask for boxes only")
        p.add_argument(
            "--compare-eager",
            type=Path,
            help="checkpoint to run in torchvision eager (train extra)",
        )
        add_flags(p, Connection)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchConfig:
        options = options_from_flags(score_threshold=args.score, polygons=not args.no_polygons)
        return from_namespace(
            cls,
            args,
            images=args.images or [],
            options=options,
            connection=from_flags(Connection, args),
        )

    def validate(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1:
            raise ConfigError(f"--concurrency {self.concurrency}: use levels of 1 or more")
        if not self.duration_s > 0:
            raise ConfigError(f"--duration {self.duration_s}: use more than 0 seconds")
        if self.synthetic < 1 or self.size < 32:
            raise ConfigError("--synthetic needs 1 or more images of --size 32 or more")
        if self.compare_eager is not None and not self.compare_eager.is_file():
            raise ConfigError(f"--compare-eager {self.compare_eager}: no such checkpoint")


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
        for path in find_images(config.images):
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


def bench(config: BenchConfig) -> list[Level]:
    """Run every level (and eager when asked), printing each row as it finishes."""
    config.validate()
    images = bench_images(config)
    options = config.options
    with DetectorClient(config.server, **config.connection.client_kwargs(), timeout=120) as client:
        info = client.model_info()
        shapes = {decode_image(b).shape[:2] for b in images[:50]}
        sizes = ", ".join(sorted(f"{w}x{h}" for h, w in shapes))
        print(
            f"server {config.server}: {info.name} (version {info.version}, {info.arch} "
            f"{info.backbone}, {info.precision}) on {info.provider}, max batch "
            f"{info.batching.max_batch}, batch timeout {info.batching.batch_timeout_ms:g} ms\n"
            f"{len(images)} images ({sizes}), {config.duration_s:g} s per level, "
            f"polygons {'on' if options.polygons else 'off'}",
            flush=True,
        )
        print(HEADER, flush=True)
        levels = []
        for concurrency in config.concurrency:
            level = run_level(client, images, concurrency, config.duration_s, options)
            levels.append(level)
            print(level.row(), flush=True)
            if level.errors:
                print(f"  errors: {dict(level.errors)}", flush=True)
    if config.compare_eager is not None:
        backend = open_backend(checkpoint=config.compare_eager)
        eager = run_backend(backend, images, config.duration_s, options, "eager")
        levels.append(eager)
        print(eager.row(), flush=True)
        served = [lv for lv in levels if lv.name == "server"]
        single = next((lv for lv in served if lv.concurrency == 1), served[0])
        best = max(served, key=lambda lv: lv.images_per_s)
        print(
            f"p50 latency, server at concurrency {single.concurrency} / eager: "
            f"{single.percentile(50) / eager.percentile(50):.2f}x\n"
            f"throughput, server best (concurrency {best.concurrency}) / eager: "
            f"{best.images_per_s / eager.images_per_s:.2f}x",
            flush=True,
        )
    return levels


def _levels(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use comma-separated integers, e.g. 1,8,32"
        ) from None


add_arguments = BenchConfig.add_arguments


def run(args: argparse.Namespace) -> int:
    """`detect bench` from parsed flags; exit 1 if a level got no answer."""
    levels = bench(BenchConfig.from_args(args))
    return 1 if any(level.requests == 0 for level in levels) else 0

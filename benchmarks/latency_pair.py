"""CPU latency of two exported models on the same images, run alternately in one process.

    python benchmarks/latency_pair.py OLD.onnx NEW.onnx IMAGES_DIR [--images 60]

Each image (encoded bytes, as a client sends them) goes through `Detector.detect` of A, then of
B (ONNX Runtime, 2 threads, 3 warm-up runs each), so both see the same machine load. Prints the
median ms per image of each, detections per image at each card's threshold, and the median of
the per-image ratio B/A.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from detect.runtime.detector import Detector
from detect.runtime.sources import list_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--images", dest="count", type=int, default=60)
    args = parser.parse_args()
    data = [p.read_bytes() for p in list_images([args.images])[: args.count]]
    models = [Detector(path, threads=2, warmup_runs=3) for path in (args.a, args.b)]
    times: list[list[float]] = [[], []]
    found = [0, 0]
    for blob in data:
        for i, model in enumerate(models):
            start = time.perf_counter()
            found[i] += len(model.detect(blob))
            times[i].append(time.perf_counter() - start)
    for name, ts, n in zip((args.a, args.b), times, found, strict=True):
        print(f"{name}: median {statistics.median(ts) * 1000:.1f} ms, {n / len(data):.1f} det/img")
    ratio = statistics.median(b / a for a, b in zip(*times, strict=True))
    print(f"B/A per-image median ratio {ratio:.3f}")


if __name__ == "__main__":
    main()

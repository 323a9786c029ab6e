"""Export time, ONNX size and ONNX Runtime CPU latency of every zoo model (`detect models`).

    python benchmarks/zoo_latency.py --images DIR [--fake] [--out runs/zoo]

Each model is exported with `detect export --pretrained NAME` (weights from TORCH_HOME's cache;
``--fake`` first writes same-shaped stand-in weights there, as the tests do, for machines that
cannot download torchvision's), then `Detector.infer` runs on up to 10 of the images on the CPU
with 2 threads after 2 warm-up images; the median ms per image is printed. The graph resizes
each image to the model's input size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from detect.models.zoo import ZOO
from detect.runtime.detector import Detector
from detect.runtime.sources import list_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="images to time on")
    parser.add_argument("--fake", action="store_true", help="write stand-in weights first")
    parser.add_argument("--out", type=Path, default=Path("runs/zoo"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = list_images([args.images])[:10]
    images = [p.read_bytes() for p in paths]
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    for name in ZOO:
        if args.fake:  # the tests' stand-in weights
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from fake_zoo import write_fake_weights

            write_fake_weights(name, paths, home)
        model = args.out / f"{name}.onnx"
        started = time.perf_counter()
        command = [sys.executable, "-m", "detect", "export", "--pretrained", name, "--out", model]
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(f"{name}: {result.stderr.strip()}", flush=True)
            continue
        detector = Detector(model, device="cpu", threads=2)
        for data in images[:2]:
            detector.infer(detector.prepare(data))
        times = []
        for data in images:
            rgb = detector.prepare(data)
            start = time.perf_counter()
            detector.infer(rgb)
            times.append(1000 * (time.perf_counter() - start))
        size = model.stat().st_size / 2**20
        print(
            f"{name:<40} export {seconds:6.1f} s  {size:6.1f} MiB  ORT CPU "
            f"{statistics.median(times):7.0f} ms/img (input {detector.card.input['min_size']} px)",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""OpenVINO's LATENCY vs THROUGHPUT performance hint on this CPU, for serving several images.

    python benchmarks/openvino_hint.py --model MODEL.onnx IMAGES...

For each hint it compiles the model in f32 (as `detect.runtime.engines.OpenVinoEngine` does),
then runs the images one after another and again with as many in flight as the hint's optimal
number of infer requests (at least 2), and prints ms per image for both.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openvino as ov

from detect.runtime.image import decode_image
from detect.runtime.sources import find_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("images", type=Path, nargs="+")
    args = parser.parse_args()
    rgbs = [decode_image(p.read_bytes()) for p in find_images(args.images)[:8]]
    core = ov.Core()
    for hint in ("LATENCY", "THROUGHPUT"):
        config = {"EXECUTION_MODE_HINT": "ACCURACY", "PERFORMANCE_HINT": hint}
        compiled = core.compile_model(core.read_model(str(args.model)), "CPU", config)
        requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")

        def one(rgb: np.ndarray, compiled: ov.CompiledModel = compiled) -> None:
            compiled.create_infer_request().infer({"image": rgb})

        one(rgbs[0])
        started = time.perf_counter()
        for rgb in rgbs:
            one(rgb)
        sequential = (time.perf_counter() - started) / len(rgbs)
        with ThreadPoolExecutor(max(requests, 2)) as pool:
            list(pool.map(one, rgbs[:2]))
            started = time.perf_counter()
            list(pool.map(one, rgbs))
            parallel = (time.perf_counter() - started) / len(rgbs)
        print(
            f"{hint:<11} {requests} requests: one at a time {1000 * sequential:.0f} ms/image, "
            f"{max(requests, 2)} in flight {1000 * parallel:.0f} ms/image",
            flush=True,
        )


if __name__ == "__main__":
    main()

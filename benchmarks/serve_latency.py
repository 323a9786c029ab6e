"""`detect bench` on an R50-FPN / MobileNetV3-FPN Mask R-CNN served on this machine.

    python benchmarks/serve_latency.py IMAGES... --backbone resnet50_fpn [--device auto]
        [--backend auto] [--concurrency 1,8,32] [--duration 20] [--max-batch 8]
        [--batch-sizes 2,4,8]
    python benchmarks/serve_latency.py IMAGES... --checkpoint runs/X/best.pt

Exports the checkpoint (with --backbone alone: random weights made to behave like a trained
model's, see `random_weights.py`), starts `detect serve` on a free loopback port, runs
`detect bench --compare-eager` against it with IMAGES, and stops the server. With --batch-sizes
it does so twice in the same run, for the model without and then with batch graphs of those
sizes (``detect export --batch-sizes``): the server's img/s before and after real batching.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from random_weights import random_checkpoint

from detect.bench import BenchConfig, bench
from detect.export.config import ExportConfig
from detect.export.run import export
from detect.runtime.sources import list_images


@contextlib.contextmanager
def serving(model: Path, device: str, backend: str, max_batch: int) -> Iterator[str]:
    """``detect serve`` on ``model`` and a free loopback port, until the block ends; its
    address once it is ready."""
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "detect", "serve", "--model", str(model)),
            *("--port", "0", "--metrics-port", "0", "--device", device, "--backend", backend),
            *("--max-batch", str(max_batch)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = None
        for line in server.stdout:
            if line.startswith("listening on "):
                address = line.split()[2]
            if line.startswith("ready: "):
                print(line.strip(), flush=True)
                break
        if address is None or server.poll() is not None:
            sys.exit("the server did not start")
        yield address
    finally:
        server.terminate()
        server.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--backbone", default="resnet50_fpn")
    parser.add_argument("--min-size", type=int, default=480)
    parser.add_argument("--max-size", type=int, default=640)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--batch-sizes", default="", help="e.g. 2,4,8: also serve batch graphs")
    args = parser.parse_args()
    images = list_images(args.images)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(
            Path(tmp) / "random.pt",
            "mask_rcnn",
            args.backbone,
            args.min_size,
            args.max_size,
            images,
        )
        variants = [("one image per model call", [])]
        if batch_sizes:
            variants.append((f"batch graphs {args.batch_sizes}", batch_sizes))
        for index, (title, sizes) in enumerate(variants):
            model = Path(tmp) / f"{args.backbone}-{index}.onnx"
            export(ExportConfig(checkpoint=checkpoint, out=model, batch_sizes=sizes))
            print(f"\n## {title}", flush=True)
            with serving(model, args.device, args.backend, args.max_batch) as address:
                bench(
                    BenchConfig(
                        server=address,
                        concurrency=[int(c) for c in args.concurrency.split(",")],
                        duration_s=args.duration,
                        images=images,
                        compare_eager=checkpoint if index == 0 else None,
                    )
                )


if __name__ == "__main__":
    main()

"""`detect predict` with and without Ray, same images, same run: what the engine costs.

Writes N synthetic images, then runs `detect predict` over them as its own process three ways,
in turn, `--repeats` times, each model on one engine thread (`--threads 1`): plain,
`--ray --workers 1` and `--ray --workers 2` (a Ray started on this machine for each run).
Prints, per way, the median over repeats of the images/s of the predict loop (its final
progress line: from the first image to the last, so Ray's start and stop are left out) and of
the whole command's wall time, and the ratios the targets speak of (Ray with 1 worker against
the plain run; 2 workers against 1).

    python benchmarks/ray_batch.py --model models/demo.onnx --images 200 --repeats 2
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from detect.data.synth import write_dataset

WAYS = {  # one engine thread per model, so that workers, not threads, make the difference
    "plain": ["--threads", "1"],
    "--ray, 1 worker": ["--threads", "1", "--ray", "--workers", "1"],
    "--ray, 2 workers": ["--threads", "1", "--ray", "--workers", "2"],
}
FINAL = re.compile(r"^predict: (\d+)/\1 images, ([\d.]+) images/s", re.MULTILINE)


def _predict(images: Path, model: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """One `detect predict` run: (images/s of its loop, wall seconds of the command)."""
    command = [sys.executable, "-m", "detect", "predict", str(images), "--model", str(model)]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "--out", str(out), *extra], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command + extra)} failed:\n{result.stderr[-2000:]}")
    found = FINAL.search(result.stderr)
    if found is None:
        raise SystemExit(f"no final progress line in:\n{result.stderr[-2000:]}")
    return float(found.group(2)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="image side, pixels")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root / "data", images=args.images, seed=999, size=args.size)
        rates: dict[str, list[float]] = {way: [] for way in WAYS}
        walls: dict[str, list[float]] = {way: [] for way in WAYS}
        for repeat in range(args.repeats):
            for way, extra in WAYS.items():
                out = root / f"out{repeat}-{len(extra)}-{extra[-1]}"
                rate, wall = _predict(root / "data/images", args.model, out, extra)
                rates[way].append(rate)
                walls[way].append(wall)
    rate = {way: statistics.median(values) for way, values in rates.items()}
    print(f"{args.images} images of {args.size} px, {args.model}, median of {args.repeats}")
    print(f"{'run':<18} {'images/s':>9} {'wall s':>7}")
    for way in WAYS:
        print(f"{way:<18} {rate[way]:>9.1f} {statistics.median(walls[way]):>7.1f}")
    one, two = rate["--ray, 1 worker"], rate["--ray, 2 workers"]
    print(f"Ray 1 worker / plain: {one / rate['plain']:.2f}x (target >= 0.9x)")
    print(f"Ray 2 workers / 1 worker: {two / one:.2f}x (target >= 1.7x)")


if __name__ == "__main__":
    main()

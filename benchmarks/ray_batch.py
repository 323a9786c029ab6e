"""`detect predict` with and without Ray, same images, same run: what the engine costs.

Writes 2N synthetic images, then runs `detect predict` as its own process three ways, each
model on one engine thread (`--threads 1`): plain, `--ray --workers 1` and `--ray --workers 2`
(a Ray started on this machine for each run), over the first N images and over all 2N, in turn,
`--repeats` times. The difference of the two wall times is what N more images cost once
everything has started, so per way it prints (medians over repeats):

- ``images/s``: the rate at which images go through once running, N / (wall(2N) - wall(N));
- ``start s``: what the command costs before that, wall(N) - N / rate (Python, the model, and
  with Ray: starting Ray and its workers, each loading the model);
- ``wall N`` and ``wall 2N``: the whole commands, seconds.

and the ratios the targets speak of, of the running rates (Ray with 1 worker against the plain
run, the engine's cost per image; 2 workers against 1).

    python benchmarks/ray_batch.py --model models/demo.onnx --images 200 --repeats 2
"""

from __future__ import annotations

import argparse
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


def _predict(images: list[Path], model: Path, out: Path, extra: list[str]) -> float:
    """One `detect predict` run over ``images``: its wall seconds."""
    command = [sys.executable, "-m", "detect", "predict", *map(str, images), "--model", str(model)]
    start = time.perf_counter()
    result = subprocess.run(
        [*command, "--out", str(out), *extra], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"detect predict {' '.join(extra)} failed:\n{result.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--images", type=int, default=200, help="N (runs over N and 2N)")
    parser.add_argument("--size", type=int, default=256, help="image side, pixels")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    n = args.images
    walls: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root / "data", images=2 * n, seed=999, size=args.size)
        images = sorted((root / "data/images").iterdir())
        for repeat in range(args.repeats):
            for index, (way, extra) in enumerate(WAYS.items()):
                for count in (n, 2 * n):
                    out = root / f"out-{repeat}-{index}-{count}"
                    wall = _predict(images[:count], args.model, out, extra)
                    walls.setdefault((way, count), []).append(wall)
    wall = {key: statistics.median(values) for key, values in walls.items()}
    rate = {way: n / (wall[way, 2 * n] - wall[way, n]) for way in WAYS}
    print(f"N = {n} images of {args.size} px, {args.model}, median of {args.repeats}")
    print(f"{'run':<18} {'images/s':>9} {'start s':>8} {'wall N':>7} {'wall 2N':>8}")
    for way in WAYS:
        start = wall[way, n] - n / rate[way]
        print(
            f"{way:<18} {rate[way]:>9.1f} {start:>8.1f} {wall[way, n]:>7.1f} "
            f"{wall[way, 2 * n]:>8.1f}"
        )
    one, two = rate["--ray, 1 worker"], rate["--ray, 2 workers"]
    print(f"Ray 1 worker / plain: {one / rate['plain']:.2f}x (target >= 0.9x)")
    print(f"Ray 2 workers / 1 worker: {two / one:.2f}x (target >= 1.7x)")


if __name__ == "__main__":
    main()

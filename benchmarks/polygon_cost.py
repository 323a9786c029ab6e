"""Cost of tracing ragged masks to polygons (`mask_to_polygons`), against a budget per pixel.

    python benchmarks/polygon_cost.py [--sizes 120x160,240x320,480x640] [--repeat 3]
        [--budget-us 25]

An under-trained model at score 0 gives masks full of holes and specks. For each HxW size it makes
two such masks (seed 0): "pinholes", white noise with 10% of the pixels off (thousands of holes,
most of 1 pixel), and "blotches", white noise blurred by a Gaussian of 1 pixel with its lowest 30%
off (fewer holes, of all sizes, most of them 4 pixels or more); and three adversarial ones: "hole
grid", 2x2-pixel holes on a 3-pixel grid in a 1-pixel frame (thousands of holes of min_area pixels,
all but `MAX_HOLES` of them filled), "part grid", 2x2-pixel parts on a 3-pixel grid (all but
`MAX_PARTS` of them removed), and "corner chain", diagonal chains of 2x2-pixel blocks touching at
corners, the chains 2 blocks apart (parts within the cap, but each pinched into a ring per block
and one per link: thousands of rings, over `MAX_JOINT_RINGS`). It prints the number of parts
(8-connected) and holes (4-connected background components off the border), the best of --repeat
times of `mask_to_polygons` at its defaults and exact (tolerance 0, min_area 0: the pixel-exact
round trip), and the default's microseconds per pixel; it exits 1 if that exceeds --budget-us on
any mask. `detect` is imported from PYTHONPATH: point it at another checkout to time that one's
code.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from detect.runtime.polygons import mask_to_polygons

_KINDS = ("pinholes", "blotches", "hole grid", "part grid", "corner chain")


def ragged_mask(kind: str, height: int, width: int) -> np.ndarray:
    """``(H, W) bool`` mask of ``kind`` (see the module docstring), seed 0."""
    if kind == "corner chain":
        rows, cols = np.indices((height, width)) // 2
        return (rows - cols) % 3 == 0
    rows, cols = np.indices((height, width)) % 3
    if kind == "hole grid":
        mask = (rows == 0) | (cols == 0)
        mask[[0, -1]] = mask[:, [0, -1]] = True
        return mask
    if kind == "part grid":
        return (rows < 2) & (cols < 2)
    noise = np.random.default_rng(0).random((height, width), np.float32)
    if kind == "pinholes":
        return noise >= 0.1
    blurred = cv2.GaussianBlur(noise, (0, 0), 1.0)
    return blurred >= np.quantile(blurred, 0.3)


def count_parts(mask: np.ndarray) -> int:
    """Number of 8-connected components of ``(H, W) bool`` ``mask``."""
    return cv2.connectedComponents(mask.view(np.uint8), connectivity=8)[0] - 1


def count_holes(mask: np.ndarray) -> int:
    """Number of 4-connected components of the background of ``(H, W) bool`` ``mask`` that do
    not touch its border."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((~mask).view(np.uint8), connectivity=4)
    left, top, width, height = stats[1:, :4].T
    inside = (left > 0) & (top > 0) & (left + width < mask.shape[1])
    return int(np.count_nonzero(inside & (top + height < mask.shape[0])))


def best_seconds(mask: np.ndarray, repeat: int, **settings: float) -> float:
    """Fastest of ``repeat`` runs of `mask_to_polygons` on ``mask`` with ``settings``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        mask_to_polygons(mask, **settings)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="120x160,240x320,480x640", help="HxW, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="timings per mask; the best counts")
    parser.add_argument(
        "--budget-us", type=float, default=25.0, help="most microseconds per pixel, default path"
    )
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]

    print("mask         size        parts  holes  default s  exact s  default us/px")
    over = []
    for height, width in sizes:
        for kind in _KINDS:
            mask = ragged_mask(kind, height, width)
            default = best_seconds(mask, args.repeat)
            exact = best_seconds(mask, args.repeat, tolerance=0.0, min_area=0.0)
            per_pixel = default / mask.size * 1e6
            print(
                f"{kind:<12} {height:>4}x{width:<6} {count_parts(mask):5d} {count_holes(mask):6d} "
                f"{default:10.3f} {exact:8.3f} {per_pixel:14.2f}",
                flush=True,
            )
            if per_pixel > args.budget_us:
                over.append(f"{kind} {height}x{width}")
    if over:
        sys.exit(f"over the budget of {args.budget_us:g} us per pixel: {', '.join(over)}")


if __name__ == "__main__":
    main()

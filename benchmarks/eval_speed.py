"""`detect eval --predictions` wall time against raw pycocotools on the same files.

    python benchmarks/eval_speed.py [--images 1000] [--objects 8] [--detections 100] [--size 320]

Writes a synthetic ground truth (rectangles and ellipses with RLE masks, 5 categories, a few
crowd regions) and predictions (jittered true objects plus false alarms, RLE masks, up to
--detections per image), then times, each as a fresh process: (a) a plain pycocotools script
(COCO(gt), loadRes(preds), COCOeval evaluate/accumulate/summarize for bbox and segm) and (b)
`detect eval --gt GT --predictions PREDS --out DIR --iou-type both` (the same COCOeval runs plus
its own metrics, report and plots). Prints both medians of --repeat runs and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

RAW = """
import sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1])
for iou_type in ("bbox", "segm"):
    dt = gt.loadRes(sys.argv[2])
    e = COCOeval(gt, dt, iou_type)
    e.evaluate(); e.accumulate(); e.summarize()
"""


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def _shape(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[float]]:
    mask = np.zeros((size, size), np.uint8)
    w, h = rng.uniform(8, size * 0.4, 2)
    cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
    if rng.random() < 0.5:
        cv2.rectangle(
            mask, (int(cx - w / 2), int(cy - h / 2)), (int(cx + w / 2), int(cy + h / 2)), 1, -1
        )
    else:
        cv2.ellipse(mask, (int(cx), int(cy)), (int(w / 2), int(h / 2)), 0, 0, 360, 1, -1)
    ys, xs = np.nonzero(mask)
    box = [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]
    return mask, box


def write_set(
    folder: Path, images: int, objects: int, detections: int, size: int
) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    gt = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 6)],
    }
    preds = []
    for i in range(1, images + 1):
        gt["images"].append({"id": i, "file_name": f"{i}.jpg", "height": size, "width": size})
        for k in range(objects):
            mask, box = _shape(rng, size)
            cat = int(rng.integers(1, 6))
            crowd = int(k == 0 and i % 10 == 0)
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": box,
                    "area": float(mask.sum()),
                    "iscrowd": crowd,
                    "segmentation": _rle(mask),
                }
            )
            shifted = np.roll(mask, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), (0, 1))
            ys, xs = np.nonzero(shifted)
            preds.append(
                {
                    "image_id": i,
                    "category_id": cat if rng.random() < 0.9 else int(rng.integers(1, 6)),
                    "bbox": [
                        float(xs.min()),
                        float(ys.min()),
                        float(np.ptp(xs) + 1),
                        float(np.ptp(ys) + 1),
                    ],
                    "score": float(rng.uniform(0.3, 1.0)),
                    "segmentation": _rle(shifted),
                }
            )
        for _ in range(detections - objects):
            mask, box = _shape(rng, size)
            preds.append(
                {
                    "image_id": i,
                    "category_id": int(rng.integers(1, 6)),
                    "bbox": box,
                    "score": float(rng.uniform(0.0, 0.6)),
                    "segmentation": _rle(mask),
                }
            )
    gt_path, preds_path = folder / "gt.json", folder / "preds.json"
    gt_path.write_text(json.dumps(gt))
    preds_path.write_text(json.dumps(preds))
    return gt_path, preds_path


def _time(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gt, preds = write_set(Path(tmp), args.images, args.objects, args.detections, args.size)
        raw_cmd = [sys.executable, "-c", RAW, str(gt), str(preds)]
        eval_cmd = [
            sys.executable,
            "-m",
            "detect",
            "eval",
            "--gt",
            str(gt),
            "--predictions",
            str(preds),
            "--out",
            str(Path(tmp) / "out"),
            "--iou-type",
            "both",
        ]
        raw, ours = [], []
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            raw.append(_time(raw_cmd))
            ours.append(_time(eval_cmd))
    objects, detections = args.images * args.objects, args.images * args.detections
    print(f"{args.images} images of {args.size} px, {objects} objects, {detections} detections")
    for name, times in (("raw pycocotools", raw), ("detect eval", ours)):
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{name:<16} median {statistics.median(times):6.2f} s  ({runs})")
    print(
        f"ratio detect eval / pycocotools: {statistics.median(ours) / statistics.median(raw):.3f}x"
    )


if __name__ == "__main__":
    main()

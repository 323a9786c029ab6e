"""Cross-class duplicates: AP and tracking with and without class-agnostic NMS, one model.

    python benchmarks/agnostic_nms.py --model models/demo.onnx [--images 200] [--frames 300]

On fresh synthetic data (`--images` 256-px images with seed 999, and the demo's clip: 320x240,
seed 7, `--frames` frames, ground-truth identities) it runs the model through ONNX Runtime twice,
without and with `agnostic_nms` (the card's IoU), and prints box/mask AP and AP50 of the images
(`detect eval --model`), precision/recall at the card's threshold, and AP50, ID switches and
track ids per object on the clip (`detect video --track`, scored by `score_video`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detect.config import DetectSettings
from detect.data.synth import write_dataset
from detect.data.synth_video import write_clip
from detect.evaluate import EvalConfig, evaluate
from detect.metrics.clip import ClipRun
from detect.metrics.video import score_video
from detect.video import VideoConfig, run_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-agnostic-nms"))
    args = parser.parse_args()
    data = args.out / "data"
    gt = data / "images" / "annotations.json"
    if not gt.exists():
        write_dataset(data / "images", images=args.images, seed=999, size=256)
    clip = data / "clip.mp4"
    clip_gt = write_clip(clip, frames=args.frames, seed=7, width=320, height=240)

    rows = []
    for agnostic in (False, True):
        name = "agnostic" if agnostic else "per-class"
        result = evaluate(
            EvalConfig(gt=gt, out=args.out / name / "eval", model=args.model, agnostic_nms=agnostic)
        )
        jsonl = args.out / name / "clip.jsonl"
        run_video(
            VideoConfig(
                source=str(clip),
                model=args.model,
                track=True,
                jsonl=jsonl,
                detection=DetectSettings(agnostic_nms=agnostic),
            )
        )
        video = score_video(ClipRun.read(clip_gt, jsonl))
        rows.append((name, result.metrics, video))

    print(f"\n{args.model}: {args.images} images (seed 999), {args.frames}-frame clip (seed 7)")
    print("NMS        box AP  AP50  mask AP  AP50  P@thr  R@thr | clip AP50  ID sw   IDF1   HOTA")
    for name, metrics, video in rows:
        box, segm = metrics["bbox"], metrics.get("segm", {"AP": 0.0, "AP50": 0.0})
        point = metrics["operating_point"]
        print(
            f"{name:<10} {box['AP']:6.3f} {box['AP50']:5.3f} {segm['AP']:8.3f} "
            f"{segm['AP50']:5.3f} {point['precision']:6.3f} {point['recall']:6.3f} | "
            f"{video['AP50']:9.3f} {video['id_switches']:6d} {video['IDF1']:6.3f} "
            f"{video['HOTA']:6.3f}"
        )


if __name__ == "__main__":
    main()

"""What motion gating and int8 save on a site with realistic activity, and what they cost in
counts and identities.

Writes a synthetic site (`detect synth --video DIR --cameras N --quiet SHARE`: passers-by with
quiet stretches between them, drifting light, sensor noise), then for each precision (fp32, and
int8 when the model has its ``NAME.int8.onnx`` sibling) starts one `detect serve` on 127.0.0.1
and runs `detect watch` on the whole site through it twice, motion gating off and on. Prints
per run: the site's processed camera-frames/s (all cameras' processed frames over the watch's
wall time), the speed-up over fp32 without gating, the share of frames the model ran on, the
count F1 pooled over the cameras (zone and line events against the ground truth,
`detect.metrics.counting`) and IDF1 (TrackEval's, per camera, weighted by ground-truth boxes);
then where each run's frame time went (`detect.video.stages`).

    python benchmarks/site_cost.py --model models/demo.onnx --frames 400
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from detect.data.clip_conditions import ClipConditions
from detect.data.synth_video import write_site
from detect.local_server import LocalServer
from detect.metrics.clip import ClipRun
from detect.metrics.video import score_video


def _served_copy(onnx: Path, folder: Path) -> Path:
    """``onnx`` and its card copied into ``folder`` as ``model.onnx`` (so that nothing else
    beside it is picked)."""
    folder.mkdir(parents=True)
    shutil.copy(onnx, folder / "model.onnx")
    shutil.copy(onnx.with_suffix(".json"), folder / "model.json")
    return folder / "model.onnx"


def _watch(site_file: Path, address: str, gating: bool, tag: str) -> dict[str, Any]:
    """Run ``detect watch`` on the site with motion gating on or off; its figures."""
    site = yaml.safe_load(site_file.read_text())
    for camera in site["cameras"]:
        camera["motion"] = gating
        camera["jsonl"] = f"out/{tag}/{camera['name']}.jsonl"
        camera.pop("out_video", None)
    site["summary"] = f"out/{tag}/summary.json"
    site["events"] = f"out/{tag}/events.jsonl"
    path = site_file.with_name(f"site-{tag}.yaml")
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    command = [sys.executable, "-m", "detect", "watch", str(path), "--server", address]
    subprocess.run(command, capture_output=True, text=True, check=True)
    summary = json.loads((path.parent / site["summary"]).read_text())
    matched = true = counted = 0
    weighted = boxes = 0.0
    processed = inferred = 0
    stage_ms: dict[str, float] = {}
    for camera in site["cameras"]:
        figures = summary["cameras"][camera["name"]]
        pooled = figures["ground_truth"]["counting"]["all"]
        matched, true, counted = (
            matched + pooled["matched"],
            true + pooled["true"],
            counted + pooled["counted"],
        )
        processed += figures["frames_processed"]
        for stage, ms in figures["ms_per_frame"].items():
            stage_ms[stage] = stage_ms.get(stage, 0.0) + ms * figures["frames_processed"]
        inferred += figures["frames_inferred"]
        root = path.parent
        scores = score_video(ClipRun.read(root / camera["truth"], root / camera["jsonl"]))
        n = scores["matches"] + scores["misses"]
        weighted, boxes = weighted + scores["IDF1"] * n, boxes + n
    return {
        "fps": processed / summary["seconds"],
        "model_on": inferred / processed,
        "count_f1": 2 * matched / (true + counted) if true + counted else float("nan"),
        "idf1": weighted / boxes if boxes else float("nan"),
        "stages": {stage: ms / processed for stage, ms in stage_ms.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--frames", type=int, default=400, help="frames per camera")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--objects", type=int, default=4, help="passers-by per camera")
    parser.add_argument("--quiet", type=float, default=0.7, help="share of empty frames")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    models = {"fp32": args.model}
    int8 = args.model.with_suffix(".int8.onnx")
    if int8.is_file():
        models["int8"] = int8
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        conditions = ClipConditions(quiet=args.quiet)
        site_file = write_site(
            root / "site", args.cameras, args.frames, args.seed, objects=args.objects,
            conditions=conditions,
        )  # fmt: skip
        empty = []
        for camera in yaml.safe_load(site_file.read_text())["cameras"]:
            truth = json.loads((site_file.parent / camera["truth"]).read_text())
            empty.append(truth["info"]["empty_share"])
        rows = []
        for precision, model in models.items():
            served = _served_copy(model, root / precision)
            with LocalServer(served, "--device", "cpu").start() as server:
                for gating in (False, True):
                    tag = f"{precision}-{'on' if gating else 'off'}"
                    rows.append((precision, gating, _watch(site_file, server.address, gating, tag)))
    base = rows[0][2]["fps"]
    print(
        f"{args.model}: {args.cameras} cameras x {args.frames} frames (320x240, 10 frames/s), "
        f"{args.objects} passers-by each, {sum(empty) / len(empty):.0%} of frames empty; "
        "one detect serve on 127.0.0.1"
    )
    print("| precision | gating | camera-frames/s | vs fp32 off | model on | count F1 | IDF1 |")
    print("|---|---|---|---|---|---|---|")
    for precision, gating, r in rows:
        print(
            f"| {precision} | {'on' if gating else 'off'} | {r['fps']:.1f} | "
            f"{r['fps'] / base:.2f}x | {r['model_on']:.0%} | {r['count_f1']:.3f} | "
            f"{r['idf1']:.3f} |"
        )
    print("\nmean ms per processed frame and stage (a camera's thread; the 4 share 2 cores):")
    for precision, gating, r in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        print(f"  {precision} gating {'on' if gating else 'off'}: {stages}")


if __name__ == "__main__":
    main()

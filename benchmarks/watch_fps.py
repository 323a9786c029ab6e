"""`detect watch` throughput for 1, 2 and 4 cameras through one `detect serve`, and the demo
model's tracking figures on a long clip.

Writes a synthetic 4-camera site (`detect synth --video DIR --cameras 4`), starts one server on
127.0.0.1, and runs `detect watch` (its own process) on the first 1, 2 and 4 cameras in turn,
printing each camera's processed frames per second and the site's total. Then runs
`detect video --track` on a `--frames`-frame clip through the same server and scores it with
`detect eval --video` (box AP, MOTA, MOTP, IDF1, HOTA by TrackEval).

    python benchmarks/watch_fps.py --model models/demo.onnx --frames 100 --clip-frames 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from detect.data.synth_video import write_clip, write_site
from detect.local_server import LocalServer
from detect.metrics.clip import ClipRun
from detect.metrics.video import score_video, video_table


def _detect(*args: str) -> str:
    command = [sys.executable, "-m", "detect", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--frames", type=int, default=100, help="frames per camera")
    parser.add_argument("--clip-frames", type=int, default=300, help="frames of the tracked clip")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site_file = write_site(root / "site", 4, frames=args.frames, seed=3, objects=4)
        site = yaml.safe_load(site_file.read_text())
        clip = root / "clip.mp4"
        clip_gt = write_clip(clip, frames=args.clip_frames, seed=7)
        rows = []
        with LocalServer(args.model, "--device", args.device).start() as server:
            for n in (1, 2, 4):
                subset = {**site, "cameras": site["cameras"][:n], "summary": f"out/summary{n}.json"}
                path = site_file.with_name(f"site{n}.yaml")
                path.write_text(yaml.safe_dump(subset))
                _detect("watch", str(path), "--server", server.address)
                rows.append((n, json.loads((path.parent / subset["summary"]).read_text())))
            jsonl = root / "clip.jsonl"
            _detect(
                "video", str(clip), "--server", server.address, "--track", "--jsonl", str(jsonl)
            )
        print(
            f"{args.model} through one detect serve on 127.0.0.1, {args.frames} frames per camera"
        )
        print("cameras  per camera (processed frames/s)          total frames/s")
        for n, summary in rows:
            each = ", ".join(f"{c['fps']:.2f}" for c in summary["cameras"].values())
            print(f"{n:7d}  {each:<42} {summary['fps']:.2f}")
        print(f"\ntracking on a {args.clip_frames}-frame clip (seed 7), detect video --track:")
        print(video_table(score_video(ClipRun.read(clip_gt, jsonl))))


if __name__ == "__main__":
    main()

"""`detect video` throughput, local runtime vs through a `detect serve` on this machine.

Writes a synthetic clip, runs `detect video --track` on it locally (`--model`) and through a
server on 127.0.0.1 (`--server`, several frames in flight), each as its own process, and prints
processed frames per second of both plus AP50, MOTA, IDF1, HOTA and ID switches against the
clip's ground truth.

    python benchmarks/video_fps.py --model models/demo.onnx --frames 300
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from detect.data.synth_video import write_clip
from detect.local_server import LocalServer
from detect.metrics.clip import ClipRun
from detect.metrics.video import score_video


def _video(clip: Path, jsonl: Path, *where: str) -> str:
    command = [sys.executable, "-m", "detect", "video", str(clip), "--track", "--jsonl", str(jsonl)]
    result = subprocess.run([*command, *where], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="320x240", help="clip WIDTHxHEIGHT")
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        gt = write_clip(clip, frames=args.frames, seed=7, width=width, height=height)
        local, remote = Path(tmp) / "local.jsonl", Path(tmp) / "remote.jsonl"
        rows = [("local", _video(clip, local, "--model", str(args.model), "--device", args.device))]
        with LocalServer(args.model, "--device", args.device).start() as server:
            rows.append(
                (
                    f"server, {args.in_flight} in flight",
                    _video(
                        clip, remote, "--server", server.address, "--in-flight", str(args.in_flight)
                    ),
                )
            )
        print(f"{args.model}, {args.frames} frames of {args.size}, --track")
        for (name, summary), jsonl in zip(rows, (local, remote), strict=True):
            quality = score_video(ClipRun.read(gt, jsonl))
            print(
                f"{name:<22} {summary}\n{'':<22} AP50 {quality['AP50']:.3f}, MOTA "
                f"{quality['MOTA']:.3f}, IDF1 {quality['IDF1']:.3f}, HOTA {quality['HOTA']:.3f}, "
                f"{quality['id_switches']} ID switches"
            )


if __name__ == "__main__":
    main()

"""Processed frames/s of a 4-camera synthetic site through 1 and 2 `detect serve`, same run.

Writes a synthetic 4-camera site (`detect synth --video DIR --cameras 4`), starts two servers on
127.0.0.1 (one engine thread each), and runs `detect watch` (its own process) on the site
through the first server alone, then through both (`--server A,B`: gRPC's round_robin), in
turn, `--repeats` times. Prints the site's total processed frames/s (its summary's ``fps``) per
way, the median over repeats, and the ratio the target speaks of (2 servers against 1).

    python benchmarks/fleet.py --model models/demo.onnx --frames 100 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from detect.data.synth_video import write_site
from detect.local_server import LocalServer


def _watch(site: Path, server: str) -> float:
    """One `detect watch` of ``site`` through ``server``: the site's processed frames/s."""
    command = [sys.executable, "-m", "detect", "watch", str(site), "--server", server]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads((site.parent / "out" / "summary.json").read_text())
    return float(summary["fps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--frames", type=int, default=100, help="frames per camera")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = write_site(Path(tmp) / "site", 4, frames=args.frames, seed=3, objects=4)
        one = LocalServer(args.model, "--threads", "1").start()
        two = LocalServer(args.model, "--threads", "1").start()
        ways = {"1 server": one.address, "2 servers": f"{one.address},{two.address}"}
        fps: dict[str, list[float]] = {way: [] for way in ways}
        try:
            for _ in range(args.repeats):
                for way, address in ways.items():
                    fps[way].append(_watch(site, address))
        finally:
            one.stop()
            two.stop()
    median = {way: statistics.median(values) for way, values in fps.items()}
    print(f"{args.model}, 4 cameras x {args.frames} frames, median of {args.repeats}")
    for way, values in fps.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{way:<10} {median[way]:6.1f} processed frames/s  (runs: {runs})")
    print(f"2 servers / 1 server: {median['2 servers'] / median['1 server']:.2f}x (target >= 1.7x)")


if __name__ == "__main__":
    main()

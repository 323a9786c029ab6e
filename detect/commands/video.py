"""`detect video SOURCE`: flags from `VideoConfig`'s declarations, the summary on stdout."""

from __future__ import annotations

import argparse

from detect.commands.flags import add_flags, from_flags
from detect.progress import Progress
from detect.video.config import VideoConfig
from detect.video.run import run_video


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, VideoConfig, required_groups=("where",))


def run(args: argparse.Namespace) -> int:
    config = from_flags(VideoConfig, args)
    summary = run_video(config, Progress)
    for text in summary.lines():
        print(text)
    outputs = [str(p) for p in (config.out_video, config.jsonl) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))
    return 0

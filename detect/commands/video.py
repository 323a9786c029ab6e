"""`detect video SOURCE`: flags from `VideoConfig`'s declarations, the summary on stdout; a server
lost mid-stream: the summary of the frames done, then one error line (exit 1)."""

from __future__ import annotations

import argparse
import sys

from detect.commands.flags import add_flags, from_flags
from detect.progress import Progress
from detect.settings import FLAGS, Spelling
from detect.video.config import FOREVER, VideoConfig
from detect.video.run import StreamLostError, run_video
from detect.video.summary import VideoSummary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, VideoConfig, required_groups=("where",))


def _report(config: VideoConfig, summary: VideoSummary) -> None:
    for text in summary.lines():
        print(text)
    outputs = [str(p) for p in (config.out_video, config.jsonl) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))


def run(args: argparse.Namespace) -> int:
    config = from_flags(VideoConfig, args)
    try:
        summary = run_video(config, Progress)
    except StreamLostError as exc:
        assert exc.summary is not None  # set by the run
        _report(config, exc.summary)
        retry = Spelling(VideoConfig, FLAGS)("retry")
        print(
            f"error: {exc} after {exc.summary.frames_processed} frames (summed up above); "
            f"give {retry} N (or {retry} {FOREVER}) to wait for it to come back",
            file=sys.stderr,
        )
        return 1
    _report(config, summary)
    return 0

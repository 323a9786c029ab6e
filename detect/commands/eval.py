"""`detect eval`: flags from `EvalConfig`'s declarations. Images (``--gt GT.json --out DIR`` and
one source of predictions): the table on stdout; on stderr the images an earlier run into the
same ``--out`` finished (``--model``, one line) and an ``error:`` line per image that could not
be predicted; exit 1 if one could not. A video run (``--video CLIP.json --jsonl
RUN.jsonl [--out DIR]``, with zones and lines from ``--site site.yaml --camera NAME`` or
``--zones``/``--line``, and ``--events EVENTS.jsonl``): its figures on stdout, then its counting
figures."""

from __future__ import annotations

import argparse
import sys

from detect.commands.flags import add_flags, from_flags
from detect.evaluate import EvalConfig, NoImagePredictedError, evaluate, evaluate_video
from detect.metrics.report import stdout_table
from detect.progress import Progress
from detect.resume import Resumed


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, EvalConfig)


def _print_failed(failed: dict[int, str]) -> None:
    for reason in failed.values():
        print(f"error: {reason}", file=sys.stderr)


def _print_resumed(resumed: Resumed) -> None:
    print(resumed.line("eval"), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config = from_flags(EvalConfig, args)
    if config.is_video:
        return _run_video(config)
    try:
        result = evaluate(config, Progress, _print_resumed)
    except NoImagePredictedError as exc:
        _print_failed(exc.failed)
        raise
    _print_failed(result.failed)
    print(stdout_table(result.metrics))
    print(f"report in {config.out} (metrics.json, report.md, pr_curves.png, confusion_matrix.png)")
    if result.failed:
        print(f"{len(result.failed)} images could not be predicted; see above", file=sys.stderr)
        return 1
    return 0


def _run_video(config: EvalConfig) -> int:
    from detect.metrics.counting import counting_table
    from detect.metrics.video import video_table

    scores = evaluate_video(config)
    print(video_table(scores))
    if "counting" in scores:
        print()
        print(counting_table(scores["counting"]))
    if config.out is not None:
        print(f"figures in {config.out / 'video_metrics.json'}")
    return 0

"""`detect bench`: flags from `BenchConfig`'s declarations; the report on
stdout, each row as its level finishes; exit 1 when a level got no answer."""

from __future__ import annotations

import argparse

from detect.bench import BenchConfig, bench
from detect.commands.flags import add_flags, from_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, BenchConfig)


def run(args: argparse.Namespace) -> int:
    config = from_flags(BenchConfig, args)
    report = bench(
        config,
        on_start=lambda target: _say(target.lines()),
        on_level=lambda level: _say(level.lines()),
    )
    _say(report.ratio_lines())
    return 1 if report.failed else 0


def _say(lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)

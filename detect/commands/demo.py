"""`detect demo`: flags from `DemoConfig`'s declarations; each step, its results and the output
paths on stdout as the demo goes."""

from __future__ import annotations

import argparse
import time

from detect.commands.flags import add_flags, from_flags
from detect.demo import DemoConfig, run_demo


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, DemoConfig)


def _say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> int:
    config = from_flags(DemoConfig, args)
    started = time.perf_counter()
    paths = run_demo(config, _say)
    print(f"\ndemo done in {time.perf_counter() - started:.1f} s; outputs:")
    for name, path in paths.items():
        print(f"  {name + ':':<18} {path}")
    return 0

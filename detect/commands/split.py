"""`detect split GT`: flags from `SplitSettings`' declarations; the written files on stdout."""

from __future__ import annotations

import argparse

from detect.commands.flags import add_flags, from_flags
from detect.data.split import SplitSettings, split_coco


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, SplitSettings)


def run(args: argparse.Namespace) -> int:
    settings = from_flags(SplitSettings, args)
    paths = split_coco(settings.gt, list(settings.ratios), settings.seed, settings.out)
    for path in paths:
        print(f"wrote {path}")
    return 0

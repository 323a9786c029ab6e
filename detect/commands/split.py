"""`detect split GT`: flags from `SplitSettings`' declarations; the written files on stdout."""

from __future__ import annotations

import argparse

from detect.commands.flags import add_flags, from_flags
from detect.data.split import SplitSettings, split_coco
from detect.settings import declared


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, SplitSettings, skip=("ratios",))
    # `detect.settings` reads a list flag as names; the ratios are numbers, so their flag is
    # registered here, from their declaration.
    (ratios,) = (d for d in declared(SplitSettings) if d.name == "ratios")
    p.add_argument(
        ratios.flag,
        dest=ratios.name,
        type=float,
        nargs="+",
        default=argparse.SUPPRESS,
        help=f"{ratios.spec.help} (default: {ratios.spec.shown_default})",
    )


def run(args: argparse.Namespace) -> int:
    settings = from_flags(SplitSettings, args)
    paths = split_coco(settings.gt, list(settings.ratios), settings.seed, settings.out)
    for path in paths:
        print(f"wrote {path}")
    return 0

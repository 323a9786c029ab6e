"""`detect parity`: flags from `ParitySettings`' declarations, the table on stdout; exit 1 when
the check fails."""

from __future__ import annotations

import argparse
from pathlib import Path

from detect.commands.flags import add_flags, from_flags
from detect.parity import ParitySettings, parity
from detect.progress import Progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ParitySettings)


def run(args: argparse.Namespace) -> int:
    settings = from_flags(ParitySettings, args)
    images = [Path(image) for image in settings.images]
    engine = settings.engine
    report = parity(
        settings.checkpoint, settings.model, images, engine.device, engine.backend, Progress
    )
    print(report.table())
    return 0 if report.passed else 1

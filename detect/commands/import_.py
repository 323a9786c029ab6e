"""`detect import FORMAT DIR`: flags from `ImportSettings`' declarations; the importer's summary
and the written file on stdout."""

from __future__ import annotations

import argparse

from detect.commands.flags import add_flags, from_flags
from detect.data.importers import ImportSettings, import_masks, import_voc, import_yolo


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ImportSettings)


def run(args: argparse.Namespace) -> int:
    settings = from_flags(ImportSettings, args)
    out = settings.json_path
    if settings.format == "masks":
        summary = import_masks(settings.dir, out, label=settings.label)
    else:
        summary = {"voc": import_voc, "yolo": import_yolo}[settings.format](settings.dir, out)
    print(summary)
    print(f"wrote {out}")
    return 0

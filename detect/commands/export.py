"""`detect export`: flags from `ExportConfig`'s declarations; the int8 figures, the parity table
and what was written (the model and its card, the int8 model and its card) on stdout; exit 1 when
the parity check failed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from detect.commands.flags import add_flags, from_flags
from detect.export.config import ExportConfig, check_export
from detect.export.int8 import Int8RefusedError
from detect.progress import Progress
from detect.runtime.model_card import card_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ExportConfig, required_groups=("source",))


def _print_int8(record: dict[str, Any]) -> None:
    """One line per engine: each AP type, fp32 -> int8 (the card's ``quantization`` record)."""
    for engine, ap in record["ap"].items():
        figures = "  ".join(
            f"{kind} AP {ap['fp32'][kind]:.4f} -> {ap['int8'][kind]:.4f}" for kind in ap["fp32"]
        )
        print(f"int8 on {engine}: {figures}")


def run(args: argparse.Namespace) -> int:
    config = from_flags(ExportConfig, args)
    check_export(config)  # a mistake is one line at once, torch not yet loaded
    from detect.export.run import export

    try:
        result = export(config, Progress)
    except Int8RefusedError as refused:
        _print_int8(refused.record)
        raise
    if result.quantization:
        _print_int8(result.quantization)
    if result.parity is not None:
        print(result.parity.table())
    if config.model is None:
        print(f"wrote {result.model} ({result.size_mb:.1f} MB) and {result.card}")
    if result.int8 is not None:
        size_mb = result.int8.stat().st_size / 2**20
        print(
            f"wrote {result.int8} ({size_mb:.1f} MB) and {card_path(result.int8)}, the int8 model "
            f"of {result.model}: serve, video and watch run it on the CPU (--precision fp32 "
            "keeps fp32)"
        )
    if not result.passed:
        print("error: parity check FAILED (see the table above)", file=sys.stderr)
        return 1
    return 0

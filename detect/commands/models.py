"""`detect models`: the zoo (`detect.models.zoo`) as a table, with where each weights file is
(or would be)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from detect.models.zoo import rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`detect models` has no flags of its own."""


def run(args: argparse.Namespace) -> int:
    header = (
        f"{'name':<38}{'arch':<12}{'backbone':<28}{'roi':<6}{'params':>8}"
        f"{'box AP':>8}{'mask AP':>8}  {'input':<10}{'weights':<9}"
    )
    print(header)
    for row in rows():
        mask = "-" if row["mask_ap"] is None else f"{row['mask_ap']:.1f}"
        print(
            f"{row['name']:<38}{row['arch']:<12}{row['backbone']:<28}{row['roi']:<6}"
            f"{row['params_m']:>7.1f}M{row['box_ap']:>8.1f}{mask:>8}  {row['input']:<10}"
            f"{row['weights']:<9}"
        )
    print(f"\nweights cache: {Path(torch.hub.get_dir()) / 'checkpoints'} (TORCH_HOME)")
    print("export: detect export --pretrained NAME --out models/NAME.onnx")
    return 0

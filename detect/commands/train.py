"""`detect train`: flags from `TrainConfig`'s declarations over an optional ``--config`` YAML
(declared defaults < the file's keys < flags given), the run's summary on stdout. The config is
checked before torch loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from detect.commands.flags import add_flags, from_flags, given_flags
from detect.config import load_yaml
from detect.progress import Progress
from detect.settings import from_mapping
from detect.train_config import TrainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML file with any of these keys")
    add_flags(p, TrainConfig)


def read_config(args: argparse.Namespace) -> TrainConfig:
    """The config of the flags given over ``--config``'s file; with ``--resume`` and neither
    ``--config`` nor ``--data``, over the run's own resolved config.yaml."""
    given = vars(args)
    path: Path | None = given.get("config")
    if path is None and "resume" in given and "data" not in given:
        path = Path(given["resume"]).parent / "config.yaml"
    if path is None:
        return from_flags(TrainConfig, args)
    return from_mapping(
        TrainConfig, load_yaml(path), str(path), Path(), given_flags(TrainConfig, args)
    )


def run(args: argparse.Namespace) -> int:
    config = read_config(args)
    config.check_inputs()
    from detect.train import train  # torch: once the config and its files are known to be good

    result = train(config, Progress)
    print(result.summary())
    print(f"outputs in {config.out}")
    return 0

"""`detect serve`: flags from `ServeConfig`'s declarations; the server's milestones (``listening
on``, ``metrics on``, ``ready:``, ``draining:``, ``stopped``) on stdout, its log on stderr; exit 0
after a clean drain."""

from __future__ import annotations

import argparse
import logging

from detect.commands.flags import add_flags, from_flags
from server.app import serve
from server.config import ServeConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ServeConfig, required_groups=("source",))


def run(args: argparse.Namespace) -> int:
    config = from_flags(ServeConfig, args)
    logging.basicConfig(  # a server's log, not the one-line warnings of the other verbs
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    return serve(config, say=lambda line: print(line, flush=True))

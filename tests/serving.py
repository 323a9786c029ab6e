"""A real `detect serve` process on 127.0.0.1 for the tests, with its ports read from stdout."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from detect.local_server import LocalServer


def start_server(
    model: Path,
    *args: str,
    wait_ready: bool = True,
    python: Path | str = sys.executable,
    cwd: Path | None = None,
) -> LocalServer:
    """``detect serve --model MODEL --port 0 --metrics-port 0 ARGS``, its ports read."""
    return LocalServer(model, *args, python=python, cwd=cwd).start(wait_ready)


def metric_value(text: str, metric: str, **labels: str) -> float:
    """The value of one Prometheus sample (0.0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != metric:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0

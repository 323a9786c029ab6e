"""A real `detect serve` process on 127.0.0.1 for the tests, with its ports read from stdout."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerProcess:
    """``detect serve`` in a subprocess; stdout lines are collected on a thread."""

    process: subprocess.Popen
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    port: int = 0
    metrics_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_for(self, prefix: str, timeout: float = 120.0) -> str:
        """The first stdout line starting with ``prefix`` (AssertionError if the process ends)."""
        for line in self.seen:
            if line.startswith(prefix):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line in {timeout} s: {self.seen}") from None
            if line is None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(f"server exited before {prefix!r}: {self.seen}\n{stderr}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return response.read().decode()

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_server(
    model: Path,
    *args: str,
    wait_ready: bool = True,
    python: Path | str = sys.executable,
    cwd: Path | None = None,
) -> ServerProcess:
    """Start ``detect serve --model MODEL --port 0 --metrics-port 0 ARGS`` and read its ports.

    ``python`` and ``cwd`` run another installation (a fresh venv) from outside the checkout.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cwd is not None:
        env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    process = subprocess.Popen(
        [
            str(python),
            "-m",
            "detect",
            "serve",
            "--model",
            str(model),
            "--port",
            "0",
            "--metrics-port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    server = ServerProcess(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.put(line.rstrip("\n"))
        server.lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        listening = server.wait_for("listening on ")
        server.port = int(re.search(r":(\d+) ", listening).group(1))
        metrics = server.wait_for("metrics on ")
        server.metrics_port = int(re.search(r":(\d+)/metrics", metrics).group(1))
        if wait_ready:
            server.wait_for("ready: ")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return server


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

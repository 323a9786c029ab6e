"""`LocalServer`: a real ``detect serve`` process on 127.0.0.1, its ports read from its stdout.

Used by `detect demo` (and the tests) to run the service exactly as a user would: a separate
process, any free gRPC and metrics ports, SIGTERM to drain and stop it.
"""

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
from pathlib import Path

from detect.errors import DetectError


class LocalServer:
    """``detect serve --model MODEL --port 0 --metrics-port 0 ARGS`` in a subprocess
    (``--models MODEL`` when MODEL is a model repository folder).

    Stdout lines are collected on a thread (`wait_for` reads them); stderr is kept for the error
    message when the process ends early. ``python`` and ``cwd`` run another installation (e.g. a
    fresh venv) from outside the checkout.
    """

    def __init__(
        self,
        model: Path,
        *args: str,
        python: Path | str = sys.executable,
        cwd: Path | None = None,
    ) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if cwd is not None:
            env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        source = "--models" if Path(model).is_dir() else "--model"
        command = [str(python), "-m", "detect", "serve", source, str(model)]
        command += ["--port", "0", "--metrics-port", "0", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.port = 0
        self.metrics_port = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_for(self, prefix: str, timeout: float = 120.0) -> str:
        """The first stdout line starting with ``prefix``.

        Raises `DetectError` with the server's stderr when it exits first, or after ``timeout``.
        """
        for line in self.seen:
            if line.startswith(prefix):
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise DetectError(
                    f"detect serve printed no {prefix!r} line in {timeout:g} s: {self.seen}"
                ) from None
            if line is None:
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise DetectError(f"detect serve exited before {prefix!r}: {stderr.strip()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return response.read().decode()

    def start(self, wait_ready: bool = True, timeout: float = 120.0) -> LocalServer:
        """Read the ports (and wait for ``ready:`` unless told not to); kill it on failure."""
        try:
            listening = self.wait_for("listening on ", timeout)
            self.port = int(re.search(r":(\d+) ", listening).group(1))
            metrics = self.wait_for("metrics on ", timeout)
            self.metrics_port = int(re.search(r":(\d+)/metrics", metrics).group(1))
            if wait_ready:
                self.wait_for("ready: ", timeout)
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise
        return self

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (drain, then exit); its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

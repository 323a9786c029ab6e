"""Soak the site page of `detect watch --ui`: a page open in headless chromium for a while, the
watch's memory as it goes.

    python benchmarks/ui_soak.py [--minutes 10] [--cameras 2] [--every 30]
        [--model models/demo.onnx] [--clip samples/clip.mp4]

Serves ``--cameras`` endless MJPEG cameras over HTTP on loopback (the clip's frames, over and
over, 10 a second), runs ``detect watch`` on them with the model and ``--ui`` on a free port,
opens the site page in Debian's headless chromium (chromium-driver, selenium) and keeps it open
for ``--minutes``. Every ``--every`` seconds it prints the watch's resident memory (VmRSS), the
frames it processed, the pictures the page has loaded, the events in its timeline (at most 200)
and the page's JavaScript heap; at the end, the growth after
the first sample in total and as MB per 10 minutes (least squares over the samples after the
first). A page that costs memory per picture or per event shows as a growth that keeps going.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import itertools
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


class _Endless(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera that never ends: ``frames`` over and over, 10 a second."""

    frames: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
        with contextlib.suppress(OSError):
            for jpeg in itertools.cycle(type(self).frames):
                self.wfile.write(head % len(jpeg) + jpeg + b"\r\n")
                time.sleep(0.1)

    def log_message(self, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text)[1]) / 1024  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo.onnx")
    parser.add_argument("--clip", type=Path, default=ROOT / "samples" / "clip.mp4")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    capture = cv2.VideoCapture(str(args.clip))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        _Endless.frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
    camera = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{camera.server_address[1]}"
    work = Path(tempfile.mkdtemp(prefix="ui-soak-"))
    middle = [[106, 0], [213, 0], [213, 240], [106, 240]]
    site = {
        "model": str(args.model.resolve()),
        "events": str(work / "events.jsonl"),
        "cameras": [
            {"name": f"cam{k + 1}", "source": f"{url}/cam{k + 1}", "zones": [
                {"name": "centre", "polygon": middle}]}
            for k in range(args.cameras)
        ],
    }  # fmt: skip
    (work / "site.yaml").write_text(yaml.safe_dump(site))
    port = _free_port()
    watch = subprocess.Popen(
        [sys.executable, "-m", "detect", "watch", str(work / "site.yaml"), "--ui", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or watch.poll() is not None:
                sys.exit("the watch's page did not come up")
            time.sleep(0.2)
        browser.get(f"http://127.0.0.1:{port}/")
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        header = ("minute", "RSS MB", "processed", "pictures", "events", "heap MB")
        print(" ".join(f"{h:>{w}}" for h, w in zip(header, (7, 8, 10, 9, 7, 8), strict=True)))
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(args.every)
            processed, pictures, events, heap = browser.execute_script(
                "return [[...document.querySelectorAll('article.tile')]"
                ".reduce((n, t) => n + Number(t.dataset.processed || 0), 0),"
                " Number(document.body.dataset.pictures || 0),"
                " document.querySelectorAll('#events li').length,"
                " performance.memory ? performance.memory.usedJSHeapSize : 0]"
            )
            minute = (time.monotonic() - started) / 60
            rss = rss_mb(watch.pid)
            samples.append((minute, rss))
            print(
                f"{minute:7.1f} {rss:8.1f} {processed:10d} {pictures:9d} {events:7d} "
                f"{heap / 2**20:8.1f}",
                flush=True,
            )
    finally:
        browser.quit()
        watch.terminate()
        watch.wait(60)
        camera.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    later = np.array(samples[1:])
    growth = samples[-1][1] - samples[0][1]
    slope = float(np.polyfit(later[:, 0], later[:, 1], 1)[0]) * 10 if len(later) > 1 else 0.0
    print(f"growth after the first sample: {growth:+.1f} MB; {slope:+.2f} MB per 10 minutes")


if __name__ == "__main__":
    main()

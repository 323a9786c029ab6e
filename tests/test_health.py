"""Camera health as events (`detect.video.health`): a synthetic camera that freezes, goes black
and blurs, watched by a real `detect watch`, gives exactly those problems and their recoveries,
each within 2 s of the change, and shows them in its Prometheus metrics while it runs."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import yaml
from helpers import synth_site

from detect.video.health import HealthMonitor, HealthSettings

ROOT = Path(__file__).resolve().parents[1]
FPS = 10.0
# (first frame, kind): normal from 0 (the first 5 s set the camera's own brightness and
# sharpness), then 3 s of each problem with 2-3 s of normal picture after each
CHANGES = [(60, "frozen"), (90, None), (110, "dark"), (140, None), (160, "blurred"), (190, None)]
FRAMES = 220


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tampered(clip: Path, out: Path) -> None:
    """``clip``'s frames with a frozen, a black and a blurred stretch (`CHANGES`)."""
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < FRAMES:
        ok, frame = capture.read()
        assert ok, "the synthetic clip is too short"
        frames.append(frame)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, frames[0].shape[1::-1])
    kind, held = None, frames[0]
    for index, frame in enumerate(frames):
        kind = dict(CHANGES).get(index, kind)
        if kind == "frozen":
            frame = held
        elif kind == "dark":
            frame = np.zeros_like(frame)
        elif kind == "blurred":
            frame = cv2.GaussianBlur(frame, (0, 0), 6)
        held = frame
        writer.write(frame)
    writer.release()


def test_a_camera_that_freezes_goes_black_and_blurs_reports_exactly_that(tmp_path: Path) -> None:
    synth_site(tmp_path / "clips", 1, FRAMES, objects=6, seed=8)
    _tampered(tmp_path / "clips" / "cam1.mp4", tmp_path / "tampered.mp4")
    site = yaml.safe_load((tmp_path / "clips" / "site.yaml").read_text())
    site.pop("server")
    camera = site["cameras"][0]
    camera |= {"source": str(tmp_path / "tampered.mp4"), "health_frozen_s": 1, "health_hold_s": 0.5}
    camera.pop("truth")
    site |= {"model": str(ROOT / "models" / "demo.onnx"), "events": str(tmp_path / "events.jsonl")}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))

    port = _free_port()
    metrics = ["--metrics-port", str(port), "--status-every", "0.5"]  # refreshed each 0.5 s
    watch = subprocess.Popen(
        [sys.executable, "-m", "detect", "watch", str(tmp_path / "site.yaml"), *metrics],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    scraped, problems_seen = "", set()
    while watch.poll() is None:  # the metrics, while it runs
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                scraped = answer.read().decode()
            problems_seen |= set(re.findall(r'problem="(\w+)"} 1\.0', scraped))
        time.sleep(0.1)
    _, err = watch.communicate()
    assert watch.returncode == 0, err[-3000:]
    assert f"metrics on port {port}" in err
    assert problems_seen == {"frozen", "dark", "blurred"}
    assert 'detect_watch_events_total{camera="cam1",kind="frozen:problem"} 1.0' in scraped
    # where the frames' time went, and the share the model ran on (a frozen picture is still)
    assert re.search(
        r'detect_watch_stage_seconds_count\{camera="cam1",stage="model"\} [1-9]', scraped
    )
    assert re.search(
        r'detect_watch_stage_seconds_bucket\{camera="cam1",le="\+Inf",stage="read"\}', scraped
    )
    coverage = re.search(r'detect_watch_camera_coverage\{camera="cam1"\} ([\d.]+)', scraped)
    assert coverage and 0 < float(coverage[1]) < 1

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    health = [e for e in events if "health" in e]
    expected = []
    for (start, kind), (end, _) in zip(CHANGES[::2], CHANGES[1::2], strict=True):
        expected += [(kind, "problem", start), (kind, "recovered", end)]
    assert [(e["health"], e["event"]) for e in health] == [(k, e) for k, e, _ in expected]
    for event, (_, _, changed_at) in zip(health, expected, strict=True):
        late = (event["frame"] - changed_at) / FPS
        assert 0 <= late <= 2.0, event
        assert Path(event["snapshot"]).is_file()  # the picture of the problem
    assert health[0]["id"] == f"cam1:-:frozen:problem:{health[0]['frame']}"


def test_a_live_camera_processing_under_half_its_rate_is_reported_and_then_recovered() -> None:
    """`HealthMonitor` fed noisy frames at 10 frames/s of video, processed at 10 frames/s of
    wall clock, then at 1 frame/s for 20 s, then at 10 again: one ``fps`` problem, once the
    10-s window shows the slow rate, and its recovery."""
    rng = np.random.default_rng(0)
    monitor = HealthMonitor(HealthSettings(health=True))
    events, wall = [], 0.0
    for index in range(400):
        frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        wall += 1.0 if 100 <= index < 120 else 0.1
        events += monitor.update(frame, index, 100.0 * index, 1, wall, 10.0)
    assert [(e["health"], e["event"]) for e in events] == [("fps", "problem"), ("fps", "recovered")]
    assert 100 < events[0]["frame"] < 125  # under 5 frames/s over the window, held 1 s
    assert events[0]["baseline"] == 10.0 and events[0]["value"] < 5.0

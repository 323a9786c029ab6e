"""Several servers behind one `--server`: gRPC's round_robin over the healthy ones, a unary call
retried on another when its server is gone, one line when none answers.

Real `detect serve` processes on loopback ports (the demo model, one engine thread each), real
clients (the CLI and `DetectorClient`); which server answered is read from each server's own
request counter (`detect_requests_total`).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_detect
from serving import metric_value, start_server

from detect.client import DetectorClient, channel_target
from detect.data.synth_video import write_site
from detect.errors import ConfigError
from detect.local_server import LocalServer
from detect.settings import declared
from detect.video import VideoConfig

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "demo.onnx"
IMAGE = REPO / "samples" / "images" / "000000.jpg"
IN_FLIGHT = next(d.default for d in declared(VideoConfig) if d.name == "in_flight")
"""Frames a camera has on their way to its server (`detect video`'s default)."""


@pytest.fixture(scope="module")
def servers() -> Iterator[list[LocalServer]]:
    """Two servers of the demo model, started at once."""
    started = [start_server(MODEL, "--threads", "1", wait_ready=False) for _ in range(2)]
    try:
        for server in started:
            server.wait_for("ready")
        yield started
    finally:
        for server in started:
            server.stop()


def _detects(server: LocalServer) -> float:
    return metric_value(server.metrics(), "detect_requests_total", method="Detect", code="OK")


def _free_port() -> int:
    """A loopback port where nothing listens (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_calls_to_a_list_of_servers_spread_over_all_of_them(servers: list[LocalServer]) -> None:
    before = [_detects(s) for s in servers]
    address = ",".join(s.address for s in servers)
    with DetectorClient(address) as client:
        client.wait_ready()
        for _ in range(20):
            assert client.detect(IMAGE.read_bytes()).detections
    answered = [_detects(s) - b for s, b in zip(servers, before, strict=True)]
    assert sum(answered) == 20
    assert min(answered) >= 5, answered  # round_robin: about 10 each


def test_client_with_one_server_down_answers_from_the_other(servers: list[LocalServer]) -> None:
    address = f"127.0.0.1:{_free_port()},{servers[0].address}"
    alone = run_detect("client", str(IMAGE), "--server", servers[0].address)
    done = run_detect("client", str(IMAGE), "--server", address)
    assert done.returncode == 0, done.stderr
    assert done.stdout == alone.stdout and done.stdout.count("\n") >= 1


def test_a_dns_name_resolving_to_the_servers_is_balanced_too(servers: list[LocalServer]) -> None:
    port = servers[0].address.rpartition(":")[2]
    alone = run_detect("client", str(IMAGE), "--server", servers[0].address)
    done = run_detect("client", str(IMAGE), "--server", f"dns:///localhost:{port}")
    assert done.returncode == 0, done.stderr
    assert done.stdout == alone.stdout


def test_eval_through_two_servers_scores_as_through_one(
    servers: list[LocalServer], tmp_path: Path
) -> None:
    gt = REPO / "samples" / "annotations.json"
    metrics = {}
    for name, address in (
        ("one", servers[0].address),
        ("two", f"{servers[0].address},{servers[1].address}"),
    ):
        out = tmp_path / name
        done = run_detect("eval", "--gt", str(gt), "--server", address, "--out", str(out))
        assert done.returncode == 0, done.stderr[-3000:]
        metrics[name] = json.loads((out / "metrics.json").read_text())
        metrics[name].pop("speed")
    assert metrics["two"] == metrics["one"]


def test_all_servers_down_is_one_error_line() -> None:
    address = f"127.0.0.1:{_free_port()},127.0.0.1:{_free_port()}"
    done = run_detect("client", str(IMAGE), "--server", address, timeout=120)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the detection server at {address} (")
    assert line.endswith("is `detect serve` running there, with the same TLS setting?")


def test_a_unary_call_whose_server_was_killed_is_answered_by_another(tmp_path: Path) -> None:
    first, second = (start_server(MODEL, "--threads", "1") for _ in range(2))
    try:
        with DetectorClient(f"{first.address},{second.address}") as client:
            client.wait_ready()
            for _ in range(4):
                client.detect(IMAGE.read_bytes())
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            answered = [bool(client.detect(IMAGE.read_bytes()).detections) for _ in range(10)]
        assert answered == [True] * 10
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:50051,", "give HOST:PORT,HOST:PORT,... (an empty one is not)"),
        ("127.0.0.1:50051,10.0.0.6", "give HOST:PORT,HOST:PORT,... (10.0.0.6 is not)"),
    ],
)
def test_a_bad_server_in_a_list_is_a_usage_error_naming_it(address: str, message: str) -> None:
    done = run_detect("client", str(IMAGE), "--server", address, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: --server {address}: {message}"]


def test_a_list_becomes_one_static_target_with_the_balancing_service_config() -> None:
    target, options = channel_target("127.0.0.1:1,localhost:2")
    assert target == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert dict(options)["grpc.default_authority"] == "127.0.0.1:1"
    assert '"round_robin"' in dict(options)["grpc.service_config"]
    assert channel_target("127.0.0.1:1") == ("127.0.0.1:1", [])
    dns, dns_options = channel_target("dns:///detect-headless:50051")
    assert dns == "dns:///detect-headless:50051" and "healthCheckConfig" in str(dns_options)
    with pytest.raises(ConfigError, match="no-such-host.invalid:1 does not resolve"):
        channel_target("127.0.0.1:1,no-such-host.invalid:1")


def test_a_site_through_two_servers_spreads_its_cameras_streams_over_both(
    servers: list[LocalServer], tmp_path: Path
) -> None:
    site = write_site(tmp_path / "site", 4, frames=12, seed=3, objects=2)
    streams = [_streams(s) for s in servers]
    done = run_detect("watch", str(site), "--server", ",".join(s.address for s in servers))
    assert done.returncode == 0, done.stderr[-3000:]
    opened = [_streams(s) - before for s, before in zip(servers, streams, strict=True)]
    assert opened == [2, 2]  # round_robin, once both servers had answered (`wait_spread`)


def _streams(server: LocalServer) -> float:
    return metric_value(server.metrics(), "detect_requests_total", method="DetectStream", code="OK")


def _lines(folder: Path) -> list[int]:
    """The number of lines of each camera's JSONL in ``folder``."""
    return [len(p.read_text().splitlines()) for p in folder.glob("cam*.jsonl")]


def _events(site: Path) -> list[tuple]:
    """The site's events, wall-clock time left out and their pictures' paths relative to the
    site, camera by camera in their order."""
    events = [json.loads(line) for line in (site / "out" / "events.jsonl").read_text().splitlines()]
    for e in events:
        for key in ("snapshot", "crop"):
            e[key] = Path(e[key]).relative_to(site)
    return sorted(
        (tuple(sorted((k, str(v)) for k, v in e.items() if k != "time")) for e in events),
        key=lambda e: dict(e)["camera"],
    )


def test_a_site_goes_on_when_one_server_is_killed_and_another_drains(
    servers: list[LocalServer], tmp_path: Path
) -> None:
    """Three servers, a 4-camera site; one server SIGKILLed, then another SIGTERMed, mid-run:
    every camera's JSONL holds each frame once, in order, as an undisturbed run's; the events
    are the same; the streams still open when the second server drains end on the survivor."""
    calm = write_site(tmp_path / "calm", 4, frames=40, seed=5, objects=3)
    done = run_detect("watch", str(calm), "--server", servers[0].address)
    assert done.returncode == 0, done.stderr[-3000:]

    site = write_site(tmp_path / "site", 4, frames=40, seed=5, objects=3)
    fleet = [start_server(MODEL, "--threads", "1", wait_ready=False) for _ in range(3)]
    try:
        for server in fleet:
            server.wait_for("ready")
        address = ",".join(s.address for s in fleet)
        command = [sys.executable, "-m", "detect", "watch", str(site), "--server", address]
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = drained = False
        finished = 0
        deadline = time.monotonic() + 240
        while run.poll() is None and time.monotonic() < deadline and not drained:
            lines = _lines(site.parent / "out")
            written = sum(lines)
            if not killed and written >= 30:
                fleet[0].process.send_signal(signal.SIGKILL)
                killed = True
            elif killed and written >= 80:
                # cameras whose last frames are answered or on their way (``in_flight``) may end
                # their streams on fleet[1]: the frames a draining server has read are answered
                finished = sum(n >= 40 - IN_FLIGHT for n in lines)
                fleet[1].process.send_signal(signal.SIGTERM)
                drained = True
            time.sleep(0.05)
        _, stderr = run.communicate(timeout=240)
        assert killed and drained, "the run ended before both servers could be stopped"
        assert run.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        assert "the stream goes on on another server" in stderr
        assert fleet[1].process.wait(timeout=60) == 0  # drained cleanly
        # every other camera's stream ended on the survivor
        assert 4 - finished <= _streams(fleet[2]) <= 4
    finally:
        for server in fleet:
            server.stop()
    for camera in ("cam1", "cam2", "cam3", "cam4"):
        moved = (site.parent / "out" / f"{camera}.jsonl").read_text()
        frames = [json.loads(line)["frame"] for line in moved.splitlines()]
        assert frames == list(range(40)), camera
        assert moved == (calm.parent / "out" / f"{camera}.jsonl").read_text(), camera
    assert _events(site.parent) == _events(calm.parent)
    summary = json.loads((site.parent / "out" / "summary.json").read_text())
    assert sum(c["server_moves"] for c in summary["cameras"].values()) >= 2

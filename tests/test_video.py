"""`detect video` end to end: a synthetic clip through the local runtime and through a real
server, sampling, real-time dropping, outputs (JSONL, MP4), and failures (corrupt file, missing
file, server down, SIGTERM mid-run), a server that comes up late and restarts (``--retry``), and a
camera stream that drops (``--reconnect``)."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import run_detect
from serving import start_server

from detect.structures import Detections, Polygon
from detect.video.annotate import detection_records


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 10 fps, 160 x 120."""
    return _synth(tmp_path_factory.mktemp("clip") / "clip.mp4", 30, "--seed", "4")


def _synth(path: Path, frames: int, *args: str) -> Path:
    """``detect synth --video PATH`` of ``frames`` frames of 160 x 120 (plus ``args``)."""
    made = run_detect(
        "synth", "--video", str(path), "--frames", str(frames), "--video-size", "160x120", *args
    )
    assert made.returncode == 0, made.stderr
    return path


def _frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _video(*args: str | Path) -> subprocess.CompletedProcess:
    result = run_detect("video", *map(str, args))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def test_local_run_writes_a_line_and_a_video_frame_per_processed_frame(
    clip: Path, mask_model: Path, tmp_path: Path
) -> None:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = _video(
        clip,
        "--model",
        mask_model,
        "--score",
        "0.01",
        "--track",
        "--out-video",
        out,
        "--jsonl",
        jsonl,
        "--line",
        "0,60,160,60",
    )
    assert result.returncode == 0, result.stderr
    lines = _lines(jsonl)
    assert [r["frame"] for r in lines] == list(range(30))
    assert [r["timestamp_ms"] for r in lines[:3]] == [0, 100, 200]
    assert all("events" in r for r in lines)
    for record in lines:
        for d in record["detections"]:
            assert {
                "top",
                "left",
                "width",
                "height",
                "label",
                "score",
                "track_id",
                "polygons",
            } <= d.keys()
    assert _frames(out) == 30
    assert "30 read, 30 processed, 0 dropped" in result.stdout


def _odd_sized(clip: Path, path: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``clip`` cropped to 161 x 121 (odd sizes), losslessly in
    an MKV (FFV1) at 10 fps."""
    with av.open(str(clip)) as source, av.open(str(path), "w") as target:
        stream = target.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 161, 121, "yuv444p"
        for _, frame in zip(range(frames), source.decode(video=0), strict=False):
            cropped = np.ascontiguousarray(frame.to_ndarray(format="bgr24")[:121, :161])
            target.mux(stream.encode(av.VideoFrame.from_ndarray(cropped, format="bgr24")))
        target.mux(stream.encode(None))
    return path


def test_annotated_video_is_h264_a_browser_plays_with_every_processed_frame(
    clip: Path, mask_model: Path, tmp_path: Path
) -> None:
    odd = _odd_sized(clip, tmp_path / "odd.mkv", 9)  # yuv420p needs even sizes: padded
    out = tmp_path / "out.mp4"
    result = _video(odd, "--model", mask_model, "--every", "2", "--out-video", out)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == 5  # frames 0, 2, 4, 6, 8
    assert {f.shape for f in frames} == {(122, 162, 3)}
    assert stream.average_rate == 5  # 10 fps, every 2nd frame


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--every", "3"], list(range(0, 30, 3))),
        (["--target-fps", "5"], list(range(0, 30, 2))),
        (["--max-frames", "7"], list(range(7))),
    ],
)
def test_sampling(clip: Path, mask_model: Path, tmp_path: Path, args: list[str], expected) -> None:
    jsonl = tmp_path / "s.jsonl"
    result = _video(clip, "--model", mask_model, "--jsonl", jsonl, *args)
    assert result.returncode == 0, result.stderr
    assert [r["frame"] for r in _lines(jsonl)] == expected


@pytest.mark.parametrize(
    ("args", "total"),
    [(["--max-frames", "7"], 7), (["--every", "4"], 8), (["--target-fps", "5"], 15)],
)
def test_progress_in_a_log_counts_the_frames_that_will_be_processed(
    clip: Path, mask_model: Path, args: list[str], total: int
) -> None:
    result = _video(clip, "--model", mask_model, *args)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    final = rf"^video: {total}/{total} frames, [\d.e-]+ frames/s, took \d+:\d\d:\d\d$"
    assert re.search(final, result.stderr, re.MULTILINE), result.stderr
    assert "video:" not in result.stdout


@pytest.mark.slow
def test_server_run_matches_the_local_run_frame_for_frame(
    clip: Path, mask_model: Path, tmp_path: Path
) -> None:
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    pinned = ("--backend", "onnxruntime")  # the same engine on both sides: identical numbers
    assert (
        _video(clip, "--model", mask_model, *pinned, "--score", "0.01", "--jsonl", local).returncode
        == 0
    )
    server = start_server(mask_model, *pinned)
    try:
        result = _video(
            clip,
            "--server",
            server.address,
            "--score",
            "0.01",
            "--in-flight",
            "3",
            "--frame-deadline-ms",
            "60000",  # always met here: frames are only dropped when the server falls behind
            "--jsonl",
            remote,
        )
    finally:
        assert server.stop() == 0
    assert result.returncode == 0, result.stderr
    assert _lines(remote) == _lines(local)  # same frames, same order, same detections


@pytest.mark.slow
def test_realtime_drops_frames_it_cannot_keep_up_with(mask_model: Path, tmp_path: Path) -> None:
    fast = tmp_path / "fast.mp4"
    _synth(fast, 120, "--fps", "200")
    jsonl = tmp_path / "rt.jsonl"
    result = _video(fast, "--model", mask_model, "--realtime", "--jsonl", jsonl)
    assert result.returncode == 0, result.stderr
    processed = len(_lines(jsonl))
    summary = result.stdout.splitlines()[0]
    dropped = int(summary.split(" processed, ")[1].split(" dropped")[0])
    assert dropped > 0 and processed + dropped <= 120 and processed >= 1
    frames = [r["frame"] for r in _lines(jsonl)]
    assert frames == sorted(frames)


def test_sigterm_mid_run_leaves_a_playable_video_and_complete_jsonl(
    mask_model: Path, tmp_path: Path
) -> None:
    long = tmp_path / "long.mp4"
    _synth(long, 200)
    out, jsonl = tmp_path / "cut.mp4", tmp_path / "cut.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detect",
            "video",
            str(long),
            "--model",
            str(mask_model),
            "--realtime",
            "--out-video",
            str(out),
            "--jsonl",
            str(jsonl),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text()) < 200):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stdout
    lines = _lines(jsonl)  # every line parses
    assert 0 < len(lines) < 200
    assert _frames(out) == len(lines)


@pytest.mark.slow
def test_failures_are_one_clear_line(clip: Path, mask_model: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\0\0\0\x18ftypmp42" + b"garbage" * 100)
    cases = [
        ([corrupt, "--model", mask_model], "corrupt.mp4"),
        ([tmp_path / "none.mp4", "--model", mask_model], "not found"),
        # three times: the source is read on gRPC's thread while the error closes it
        *[([clip, "--server", "127.0.0.1:1"], "cannot reach the detection server")] * 3,
    ]
    usage = [  # bad flag values: exit 2
        ([clip, "--model", mask_model, "--zones", tmp_path / "none.json"], "--zones"),
        ([clip, "--model", mask_model, "--line", "1,2"], "--line"),
        ([clip, "--model", mask_model, "--every", "0"], "--every"),
        ([clip, "--model", mask_model, "--frame-deadline-ms", "100"], "goes with --server"),
        ([clip, "--server", "127.0.0.1:1", "--frame-deadline-ms", "-1"], "--frame-deadline-ms"),
    ]
    for args, fragment in cases + usage:
        result = _video(*args)
        assert result.returncode == (2 if (args, fragment) in usage else 1), (args, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and fragment in errors[0], (args, result.stderr)


def test_a_source_without_frames_is_the_same_source_error_through_a_server(
    mask_model: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.avi"  # opens, but has no frame
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    expected = [f"error: no frame could be read from {empty}; is it a video?"]
    local = _video(empty, "--model", mask_model)
    assert (local.returncode, local.stderr.splitlines()) == (1, expected)
    with start_server(mask_model) as server:
        remote = _video(empty, "--server", server.address)
    assert (remote.returncode, remote.stderr.splitlines()) == (1, expected)


def test_a_stream_or_webcam_that_does_not_open_is_retried_then_says_what_happened(
    mask_model: Path,
) -> None:
    url = f"rtsp://127.0.0.1:{_free_port()}/x"  # nothing listens there
    stream = _video(url, "--model", mask_model, "--reconnect", "2")
    check = "check the URL, and that the camera is on and reachable from here"
    assert (stream.returncode, stream.stderr.splitlines()) == (
        1,
        [  # one warning, the retries after it only with --verbose, then the error
            f"warning: could not connect to stream {url}: {check}; retrying in 0.5 s (1/2)",
            f"error: could not connect to stream {url} (tried 3 times): {check}",
        ],
    )
    webcam = _video("99", "--model", mask_model, "--reconnect", "0")
    assert (webcam.returncode, webcam.stderr.splitlines()) == (
        1,
        [
            "error: no camera at index 99: check the index (the N of /dev/videoN), that the "
            "camera is plugged in and that no other program holds it"
        ],
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_retry_waits_for_a_server_and_survives_its_restart_without_losing_a_frame(
    mask_model: Path, tmp_path: Path
) -> None:
    long = tmp_path / "long.mp4"
    _synth(long, 90)
    port, jsonl = _free_port(), tmp_path / "retry.jsonl"
    video = subprocess.Popen(
        [
            *(sys.executable, "-m", "detect", "video", str(long)),
            *("--server", f"127.0.0.1:{port}", "--retry", "8"),
            *("--score", "0.01", "--jsonl", str(jsonl)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # the server is not up yet: the first attempts fail
    first = start_server(mask_model, "--port", str(port), "--grace", "0")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(_lines(jsonl)) < 20):
        time.sleep(0.1)
    assert first.stop() == 0  # gone mid-run
    second = start_server(mask_model, "--port", str(port))
    try:
        stdout, stderr = video.communicate(timeout=300)
    finally:
        second.stop()
    assert video.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "cannot reach the detection server" in stderr and "retrying in" in stderr
    assert "90 read, 90 processed, 0 dropped" in stdout
    assert [r["frame"] for r in _lines(jsonl)] == list(range(90))


@pytest.mark.slow
def test_a_server_killed_mid_stream_without_retry_ends_with_the_partial_summary_and_the_hint(
    mask_model: Path, tmp_path: Path
) -> None:
    long = tmp_path / "long.mp4"
    _synth(long, 90)
    jsonl = tmp_path / "lost.jsonl"
    server = start_server(mask_model)
    try:
        video = subprocess.Popen(
            [
                *(sys.executable, "-m", "detect", "video", str(long)),
                *("--server", server.address, "--jsonl", str(jsonl), "--in-flight", "1"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not jsonl.exists() or len(_lines(jsonl)) < 10):
            time.sleep(0.05)
    finally:
        server.process.kill()
        server.stop()
    stdout, stderr = video.communicate(timeout=120)
    assert video.returncode == 1, stderr
    done = len(_lines(jsonl))
    assert 10 <= done < 90
    assert f" read, {done} processed, " in stdout
    assert "stopped: server lost mid-stream" in stdout
    assert f"outputs: {jsonl}" in stdout
    assert stderr.splitlines() == [
        f"error: the server at {server.address} went away mid-stream after {done} frames "
        "(summed up above); give --retry N (or --retry forever) to wait for it to come back"
    ]


class _Camera(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera over HTTP whose connection drops after 15 frames, twice; then it is
    gone (503)."""

    served = 0

    def do_GET(self) -> None:
        type(self).served += 1
        if type(self).served > 2:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(15):
            jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), 8 * i, np.uint8))[1].tobytes()
            head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
            self.wfile.write(head % len(jpeg) + jpeg + b"\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_dropping_stream_is_reopened_with_backoff_then_ends_with_a_summary(
    mask_model: Path, tmp_path: Path
) -> None:
    camera = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Camera)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    jsonl = tmp_path / "cam.jsonl"
    try:
        url = f"http://127.0.0.1:{camera.server_address[1]}/cam"
        result = _video(url, "--model", mask_model, "--reconnect", "2", "--jsonl", jsonl)
    finally:
        camera.shutdown()
    assert result.returncode == 0, result.stderr
    assert "30 read, 30 processed" in result.stdout
    assert "stopped: stream lost after 2 reconnect attempts" in result.stdout
    assert "reconnecting in 0.5 s (1/2)" in result.stderr
    assert f"{url} reconnected (1/2)" in result.stderr  # said when it comes back
    assert [r["frame"] for r in _lines(jsonl)] == list(range(30))


def test_jsonl_records_write_coordinates_at_their_stated_precision() -> None:
    ring = np.array([[245.2, 16.4], [250.05, 30.0], [240.0, 31.77]], np.float32)
    detections = Detections.of(
        [[240.0, 16.4, 250.05, 31.77]], ["star"], [0.98765], [4], polygons=[[Polygon(ring)]]
    )
    (record,) = detection_records(detections)
    assert record["polygons"] == [[[245.2, 16.4, 250.1, 30.0, 240.0, 31.8]]]  # to 0.1 pixel
    assert (record["top"], record["left"], record["width"], record["height"]) == (
        16.4, 240.0, 10.05, 15.37,
    )  # fmt: skip
    assert record["score"] == 0.9877 and json.dumps(record["polygons"]).count(".") == 6

"""`detect watch`: a synthetic three-camera site (`detect synth --video DIR --cameras 3`) through
one real server with the committed demo model, one camera an MJPEG stream over HTTP that drops
half-way and comes back while the others go on; the per-camera JSONL, independent trackers, and
zone and line events against the ground truth's; SIGTERM; site-file mistakes."""

from __future__ import annotations

import contextlib
import http.server
import itertools
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import cv2
import pytest
import yaml
from helpers import run_detect, synth_site
from serving import metric_value, start_server

from detect.errors import ConfigError
from detect.structures import Detections
from detect.video.source import FrameSource
from detect.watch import read_site
from detect.zones import Counting, Line, zones_from_dict

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "demo.onnx"
FRAMES = 40
DROP_AT = 20  # the HTTP camera's first connection serves frames 0..19
STALL_AT, STALL_S = 25, 2.5  # its third connection stops for 2.5 s before frame 25


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 40-frame clips of two objects each, with site.yaml."""
    return synth_site(tmp_path_factory.mktemp("site"), 3, FRAMES, objects=2, seed=4)


def _jpegs(clip: Path) -> list[bytes]:
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())


def _send(handler: http.server.BaseHTTPRequestHandler, jpegs: list[bytes]) -> None:
    for jpeg in jpegs:
        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
        handler.wfile.write(head % len(jpeg) + jpeg + b"\r\n")


class _Camera(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera: the first connection serves frames 0..19 and drops; the next attempt is
    refused (503), the one after serves the rest, stalling for `STALL_S` before frame
    `STALL_AT`; then the camera is gone (503)."""

    frames: ClassVar[list[bytes]] = []
    requests = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.requests += 1
        if cls.requests not in (1, 3):
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        if cls.requests == 1:
            _send(self, cls.frames[:DROP_AT])
            return
        _send(self, cls.frames[DROP_AT:STALL_AT])
        self.wfile.flush()
        time.sleep(STALL_S)
        _send(self, cls.frames[STALL_AT:])

    def log_message(self, *args: object) -> None:
        pass


def _truth_events(clip_gt: Path, camera: dict) -> list[dict]:
    """The zone and line events of the clip's ground truth (identities and visible boxes),
    counted the way `detect watch` counts (same zones, lines, anchor, min_frames)."""
    data = json.loads(clip_gt.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    lines = [Line.of(x["name"], x["points"], "site") for x in camera["lines"]]
    counting = Counting(zones_from_dict(camera["zones"]), lines, min_frames=2)
    per_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    events = []
    for image in data["images"]:
        truth = per_image.get(image["id"], [])
        objects = Detections.of(
            [(x, y, x + w, y + h) for x, y, w, h in (a["bbox"] for a in truth)],
            [names[a["category_id"]] for a in truth],
            track_ids=[a["track_id"] for a in truth],
        )
        events += counting.update(objects, image["frame_index"], image["timestamp_ms"])[1]
    return events


def _kind(e: dict) -> tuple:
    return (e.get("zone") or e.get("line"), e["event"], e.get("direction"), e["label"])


def _visits(events: list[dict]) -> list[tuple]:
    """Each event as (kind, frame, dwell in frames: exit frame minus its track's enter frame)."""
    entered: dict[tuple, int] = {}
    out = []
    for e in sorted(events, key=lambda e: e["frame"]):
        dwell = None
        if e["event"] == "enter":
            entered[e["zone"], e["track_id"]] = e["frame"]
        elif e["event"] == "exit":
            dwell = e["frame"] - entered.pop((e["zone"], e["track_id"]))
        out.append((_kind(e), e["frame"], dwell))
    return sorted(out, key=lambda v: (v[0], v[1]))


def _status_blocks(stderr: str) -> list[dict[str, int]]:
    """Processed frames per camera in each round of status lines."""
    blocks, current = [], {}
    for name, count in re.findall(
        r"^status (cam\d): \w+, [\d.]+ frames/s, (\d+) processed", stderr, re.M
    ):
        if name in current:
            blocks.append(current)
            current = {}
        current[name] = int(count)
    return [*blocks, current]


@pytest.mark.slow
def test_three_cameras_through_one_server_with_one_that_drops_and_comes_back(
    site: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load((site / "site.yaml").read_text())
    _Camera.frames = _jpegs(site / "cam3.mp4")
    camera = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Camera)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    cams = config["cameras"]
    url = f"http://127.0.0.1:{camera.server_address[1]}/cam3"
    cams[2] |= {"source": url, "reconnect": 3, "health_stalled_s": 1}
    for cam in cams:
        cam["source"] = cam["source"] if "://" in cam["source"] else str(site / cam["source"])
        cam["truth"] = str(site / cam["truth"])
    config |= {"events": str(tmp_path / "events.jsonl"), "summary": str(tmp_path / "sum.json")}
    for cam in cams:
        cam.pop("out_video")
        cam["jsonl"] = str(tmp_path / f"{cam['name']}.jsonl")
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(config))
    try:
        with start_server(MODEL) as server:
            result = run_detect(
                "watch", str(site_file), "--server", server.address, "--status-every", "0.3"
            )
            metrics = server.metrics()
    finally:
        camera.shutdown()
    # cam3 gives up after its last connection: the one camera that failed, exit code 1
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: camera cam3: stream lost after 3 reconnect attempts"], errors
    assert "Traceback" not in result.stderr

    # the server gathered frames of different cameras into one batch (one stream per camera)
    images = metric_value(metrics, "detect_batch_size_sum")
    batches = metric_value(metrics, "detect_batch_size_count")
    assert images == 3 * FRAMES and batches < images, (images, batches)

    # every camera's JSONL complete and in order; the HTTP camera's frames keep their numbers
    records = {}
    for cam in cams:
        lines = (tmp_path / f"{cam['name']}.jsonl").read_text().splitlines()
        records[cam["name"]] = [json.loads(line) for line in lines]
        assert [r["frame"] for r in records[cam["name"]]] == list(range(FRAMES)), cam["name"]
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert summary["frames_processed"] == 3 * FRAMES
    assert summary["cameras"]["cam3"]["reconnects"] >= 2
    assert "stream lost after 3 reconnect attempts" in summary["cameras"]["cam3"]["stopped"]
    assert "reconnecting in 0.5 s (1/3)" in result.stderr

    # the other cameras went on while cam3 was away
    blocks = [b for b in _status_blocks(result.stderr) if len(b) == 3]
    away = [
        (a, b)
        for a, b in itertools.pairwise(blocks)
        if a["cam3"] == b["cam3"] == DROP_AT and b["cam1"] + b["cam2"] > a["cam1"] + a["cam2"]
    ]
    assert away, result.stderr[-3000:]

    # independent trackers: no track id in two cameras
    ids = {
        name: {d["track_id"] for r in rs for d in r["detections"] if d["track_id"] >= 0}
        for name, rs in records.items()
    }
    assert all(ids.values())
    assert not (ids["cam1"] & ids["cam2"] or ids["cam1"] & ids["cam3"] or ids["cam2"] & ids["cam3"])

    # the site's events: those of the ground truth, each within one frame, dwell too
    log = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    health = [(e["camera"], e["health"], e["event"]) for e in log if "health" in e]
    # cam3's stream dropped and came back, stalled, then dropped for good (the clips are too
    # short for the frame checks: their baseline takes 5 s of video)
    assert health == [
        ("cam3", "source", "problem"),
        ("cam3", "source", "recovered"),
        ("cam3", "stalled", "problem"),
        ("cam3", "stalled", "recovered"),
        ("cam3", "source", "problem"),
    ]
    stalled = [e for e in log if e.get("health") == "stalled"]
    assert stalled[0]["baseline"] == 1 and 1 <= stalled[0]["value"] < STALL_S
    assert stalled[0]["frame"] == stalled[1]["frame"] == STALL_AT
    log = [e for e in log if "health" not in e]
    assert {"camera", "time", "track_id", "label", "frame", "timestamp_ms"} <= log[0].keys()
    for cam in cams:
        found = [e for e in log if e["camera"] == cam["name"]]
        assert all(e["track_id"] in ids[cam["name"]] for e in found)
        truth = _truth_events(site / f"{cam['name']}.json", cam)
        assert truth, cam["name"]
        ours, theirs = _visits(found), _visits(truth)
        assert [v[0] for v in ours] == [v[0] for v in theirs], (cam["name"], ours, theirs)
        for (kind, frame, dwell), (_, true_frame, true_dwell) in zip(ours, theirs, strict=True):
            assert abs(frame - true_frame) <= 1, (cam["name"], kind, frame, true_frame)
            if dwell is not None:
                assert abs(dwell - true_dwell) <= 1, (cam["name"], kind, dwell, true_dwell)
    entered = {}
    for e in sorted(log, key=lambda e: e["frame"]):  # dwell in seconds of video time
        if e["event"] == "enter":
            entered[e["track_id"]] = e["timestamp_ms"]
        elif e["event"] == "exit":
            seconds = (e["timestamp_ms"] - entered.pop(e["track_id"])) / 1000
            assert e["dwell_s"] == pytest.approx(seconds, abs=1e-3)
    assert "site: 3 cameras, 120 frames processed" in result.stdout

    # the site names each camera's ground truth: the summary scores the counts of those that ended
    assert "ground_truth" not in summary["cameras"]["cam3"]
    for cam in cams[:2]:
        counting = summary["cameras"][cam["name"]]["ground_truth"]["counting"]
        assert counting["all"]["true"] == len(_truth_events(Path(cam["truth"]), cam))
        assert counting["all"]["error"] == 0, (cam["name"], counting)
    assert result.stdout.count("against its ground truth:") == 2


class _Endless(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera that never ends: its clip, over and over, 20 frames a second."""

    frames: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        with contextlib.suppress(OSError):  # the watcher hung up
            for jpeg in itertools.cycle(type(self).frames):
                _send(self, [jpeg])
                time.sleep(0.05)

    def log_message(self, *args: object) -> None:
        pass


def test_sigterm_finishes_every_camera_with_complete_outputs(site: Path, tmp_path: Path) -> None:
    """Three live cameras that never end, a local model: SIGTERM is what ends the run."""
    _Endless.frames = _jpegs(site / "cam1.mp4")
    camera = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=camera.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{camera.server_address[1]}"
    config = yaml.safe_load((site / "site.yaml").read_text())
    config.pop("server")
    config |= {"model": str(MODEL), "events": str(tmp_path / "events.jsonl")}
    for cam in config["cameras"]:
        cam |= {
            "source": f"{url}/{cam['name']}",
            "jsonl": str(tmp_path / f"{cam['name']}.jsonl"),
            "out_video": str(tmp_path / f"{cam['name']}.mp4"),
        }
        cam.pop("truth")  # live cameras that never end: not the clip's frames
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "detect", "watch", str(site_file), "--status-every", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        outputs = [tmp_path / f"cam{k}.jsonl" for k in (1, 2, 3)]
        while time.monotonic() < deadline and not all(
            p.exists() and p.read_text().count("\n") >= 2 for p in outputs
        ):
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        camera.shutdown()
    assert process.returncode == 0, stderr[-3000:]
    assert stdout.count("stopped: SIGTERM received") == 3, stdout
    for cam in ("cam1", "cam2", "cam3"):
        lines = (tmp_path / f"{cam}.jsonl").read_text().splitlines()
        frames = [json.loads(line)["frame"] for line in lines]  # every line whole
        assert len(frames) >= 2 and frames == list(range(len(frames)))
        capture = cv2.VideoCapture(str(tmp_path / f"{cam}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)  # playable


def test_the_guides_site_file_loads(site: Path, tmp_path: Path) -> None:
    guide = (ROOT / "docs" / "watch.md").read_text()
    section = guide[guide.index("## Site file") :]
    text = section[section.index("```yaml") + len("```yaml") :]
    text = text[: text.index("```")]
    (tmp_path / "yard.mp4").write_bytes((site / "cam1.mp4").read_bytes())
    path = tmp_path / "site.yaml"
    path.write_text(text)
    loaded = read_site(path)
    gate, yard = loaded.cameras
    assert (gate.name, gate.target_fps, gate.every, yard.every, yard.target_fps) == (
        "gate",
        5.0,
        1,
        2,
        None,
    )
    assert [z.name for z in gate.counting.zones] == ["door"]
    assert [x.name for x in gate.counting.lines] == ["entry"]
    assert yard.options.classes == ("person", "car") and yard.reconnect is None
    assert loaded.events == tmp_path / "out" / "events.jsonl"


def test_site_file_mistakes_name_the_camera_and_the_key(site: Path, tmp_path: Path) -> None:
    good = yaml.safe_load((site / "site.yaml").read_text())

    def check(change: dict, fragment: str, camera: dict | None = None) -> None:
        data = json.loads(json.dumps(good)) | change
        if camera is not None:
            data["cameras"][0] |= camera
        path = site / "bad.yaml"
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=fragment):
            read_site(path)

    check({"camras": []}, r"bad.yaml: camras: unknown key \(did you mean cameras\?\)")
    check({"model": str(MODEL)}, "exactly one of server")
    check({"cameras": []}, "at least one camera")
    check({}, r"camera 'cam1': zone: unknown key \(did you mean zones\?\)", {"zone": []})
    check({}, r"camera 'cam1': min_frame: unknown key \(did you mean min_frames\?\)",
          {"min_frame": 3})  # fmt: skip
    check({}, "camera 'cam1': min_frames: 0: use 1 or more", {"min_frames": 0})
    check({}, "camera 'cam1': every: True: use a whole number", {"every": True})
    check({}, "camera 'cam1': source .*nope.mp4: no such file", {"source": "nope.mp4"})
    check({}, "camera 'cam1': .*anchor", {"anchor": "feet"})
    check({}, "camera 'cam1': reconnect", {"reconnect": "always"})
    check({}, "camera 'cam1': lines: line 'middle' needs 'points'", {"lines": [{"name": "middle"}]})
    check({}, "'cam2' is used twice", {"name": "cam2"})
    check({}, "camera 'cam1' and camera 'cam2' both write", {"jsonl": "out/cam2.jsonl"})
    check({}, "camera 'cam1': classes: {'a': 1}: use a list of class names or category ids",
          {"classes": {"a": 1}})  # fmt: skip
    result = run_detect("watch", str(site / "missing.yaml"))
    assert result.returncode == 2 and result.stderr.count("error:") == 1
    assert "missing.yaml" in result.stderr and "Traceback" not in result.stderr


def test_a_camera_without_frames_through_a_server_fails_with_the_sources_error(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.avi"  # opens, but has no frame
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump({"cameras": [{"name": "cam1", "source": str(empty)}]}))
    with start_server(MODEL) as server:
        result = run_detect("watch", str(site_file), "--server", server.address)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: camera cam1: no frame could be read from {empty}; is it a video?"]
    assert "UNKNOWN" not in result.stderr


def test_a_camera_that_never_connects_warns_once_then_fails_with_what_to_check(
    site: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load((site / "site.yaml").read_text())
    cam1 = config["cameras"][0]
    cam1 |= {"source": str(site / cam1["source"]), "truth": str(site / cam1["truth"])}
    cam1.pop("out_video", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/gone"  # nothing listens there
    gone = {"name": "gone", "source": url, "reconnect": 3}
    config["cameras"] = [cam1, gone]
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(config))
    result = run_detect("watch", str(site_file), "--model", str(MODEL), "--status-every", "60")
    assert result.returncode == 1, result.stderr
    check = "check the URL, and that the camera is on and reachable from here"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    failed = f"could not connect to stream {url} (tried 4 times): {check}"
    assert errors == [f"error: camera gone: {failed}"]
    assert result.stderr.count(f"could not connect to stream {url}: {check}; retrying") == 1
    assert "camera cam1:" in result.stdout


def test_a_source_reconnecting_for_ever_counts_its_attempts(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SimpleNamespace(
        source=str(site / "cam1.mp4"),
        every=1,
        target_fps=None,
        realtime=False,
        reconnect=None,  # for ever: `detect watch`'s default
        max_frames=None,
    )
    caplog.set_level(logging.INFO, "detect.video.source")
    frames = FrameSource(config)
    config.source = "http://127.0.0.1:1/gone"
    stopper = threading.Timer(2.0, frames.stop, ["stopped by the test"])
    stopper.start()
    assert frames._reconnect() is False  # gave up only because it was stopped
    stopper.join()
    frames.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    gone = "http://127.0.0.1:1/gone dropped; reconnecting in"
    assert (logging.WARNING, f"{gone} 0.5 s (attempt 1)") in said  # said once as a warning,
    assert (logging.INFO, f"{gone} 1 s (attempt 2)") in said  # then only with --verbose
    assert not frames.lost


def test_a_restarted_cameras_resume_point_drops_its_cut_short_last_line(tmp_path: Path) -> None:
    from detect.watch.resume import resume_point

    jsonl = tmp_path / "cam.jsonl"
    event = {"zone": "door", "event": "enter", "track_id": 5, "frame": 1}
    lines = [
        {"frame": 0, "timestamp_ms": 0.0, "detections": [{"track_id": 2}], "events": []},
        {"frame": 1, "timestamp_ms": 100.0, "detections": [{"track_id": 5}], "events": [event]},
    ]
    complete = "".join(json.dumps(line) + "\n" for line in lines)
    jsonl.write_text(complete + '{"frame": 2, "timestamp_ms": 200.0, "detec')
    point = resume_point(jsonl)
    assert (point.last_frame, point.last_track_id, point.events) == (1, 5, [event])
    assert jsonl.read_text() == complete
    assert resume_point(tmp_path / "none.jsonl").last_frame == -1

"""Motion gating (`detect.video.motion`): what goes to the model, on drawn frames and on a quiet
synthetic clip through the demo model, locally and through a server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import REPO, run_detect
from serving import start_server

from detect.data.synth_video import site_layout
from detect.errors import ConfigError, DetectError
from detect.metrics.clip import ClipRun
from detect.metrics.counting import score_counting
from detect.video.budget import Budget
from detect.video.config import VideoConfig
from detect.video.motion import MotionGate, MotionSettings, motion_setting
from detect.zones import CountingSettings, Line, zones_from_dict

DEMO = REPO / "models" / "demo.onnx"
RATE_MS = 100.0  # 10 frames/s


def _scene(rng: np.random.Generator, light: float = 1.0, box: tuple | None = None) -> np.ndarray:
    """A 240x320 BGR street under ``light``, with sensor noise (3 grey levels) and a red square
    at ``box`` = ``(x, y)`` (its top-left corner, 30 px a side)."""
    frame = np.full((240, 320, 3), 110, np.float32)
    frame[160:] = (70, 120, 70)
    frame[40:80, 200:260] = (150, 150, 40)  # a parked car
    if box is not None:
        x, y = box
        frame[y : y + 30, x : x + 30] = (30, 30, 200)
    frame = frame * light + rng.normal(0, 3, (240, 320, 1))
    return np.clip(frame, 0, 255).astype(np.uint8)


def _decide(gate: MotionGate, frames: list[np.ndarray]) -> list[str]:
    return [gate.decide(frame, k * RATE_MS) for k, frame in enumerate(frames)]


def test_noise_and_drifting_light_are_still_and_a_frame_is_forced_every_force_s() -> None:
    rng = np.random.default_rng(0)
    light = 1 + 0.15 * np.sin(np.arange(160) / 25)  # a cloud passing: +-15 % over seconds
    whys = _decide(MotionGate(MotionSettings()), [_scene(rng, v) for v in light])
    assert whys[0] == "first"
    assert {k for k, why in enumerate(whys) if why != "still"} == {0, 50, 100, 150}
    assert {whys[k] for k in (50, 100, 150)} == {"forced"}


def test_a_walker_is_seen_every_frame_a_creeper_once_it_has_moved_and_a_stopped_one_never() -> None:
    rng = np.random.default_rng(1)
    walk = [_scene(rng, box=(10 + 6 * k, 120)) for k in range(10)]
    gate = MotionGate(MotionSettings(force_s=0))
    assert _decide(gate, walk)[1:] == ["motion"] * 9
    stopped = [_scene(rng, box=(64, 120)) for _ in range(20)]
    assert _decide(gate, stopped) == ["still"] * 20
    # half a pixel a frame: each frame alone hardly differs from the one before, but the
    # square's drift since the last inferred frame adds up, and is caught within a few pixels
    creep = [_scene(rng, box=(64 + k // 2, 120)) for k in range(1, 41)]
    whys = _decide(gate, creep)
    sent = [k for k, why in enumerate(whys) if why == "motion"]
    assert 4 <= len(sent) <= 20
    assert max(np.diff([-1, *sent, len(whys)])) <= 8  # never more than 4 pixels behind


def test_a_light_switched_on_is_one_frame_to_the_model_not_motion() -> None:
    rng = np.random.default_rng(2)
    dark = [_scene(rng) for _ in range(5)]
    lit = []
    for _ in range(10):
        frame = _scene(rng).astype(np.float32)
        frame[:, :200] *= 1.8  # a lamp over most of the frame
        lit.append(np.clip(frame, 0, 255).astype(np.uint8))
    whys = _decide(MotionGate(MotionSettings()), dark + lit)
    assert whys == ["first"] + ["still"] * 4 + ["lighting"] + ["still"] * 9


def test_motion_under_a_mask_is_ignored() -> None:
    rng = np.random.default_rng(3)
    tree = ((150, 100), (250, 100), (250, 200), (150, 200))
    gate = MotionGate(MotionSettings(mask=(tree,), force_s=0))
    swaying = [_scene(rng, box=(180 + 10 * (k % 3), 140)) for k in range(12)]
    assert _decide(gate, swaying)[1:] == ["still"] * 11
    assert gate.decide(_scene(rng, box=(20, 120)), 1300.0) == "motion"  # outside the mask


def test_a_refused_frame_keeps_the_reference_so_its_motion_is_seen_again() -> None:
    rng = np.random.default_rng(4)
    gate = MotionGate(MotionSettings(force_s=0))
    gate.decide(_scene(rng), 0.0)
    moved = _scene(rng, box=(100, 120))
    assert gate.decide(moved, 100.0) == "motion"
    gate.refused()  # the site's budget did not run it
    assert gate.decide(_scene(rng, box=(100, 120)), 200.0) == "motion"
    assert gate.decide(_scene(rng, box=(100, 120)), 300.0) == "still"


def test_the_motion_key_is_true_false_or_a_mapping_and_a_bad_one_says_what_to_give() -> None:
    assert motion_setting(True, Path(), "motion") == MotionSettings()
    assert motion_setting(False, Path(), "motion") is False
    tuned = motion_setting({"threshold": 20, "mask": [[[0, 0], [10, 0], [10, 10]]]}, Path(), "m")
    assert tuned.threshold == 20 and tuned.mask == (((0, 0), (10, 0), (10, 10)),)
    with pytest.raises(ConfigError, match="threshold.*use"):
        motion_setting({"threshold": 0}, Path(), "motion")
    with pytest.raises(ConfigError, match="did you mean force_s"):
        motion_setting({"force": 2}, Path(), "motion")
    with pytest.raises(ConfigError, match=r"at least 3 \[x, y\] points"):
        motion_setting({"mask": [[[0, 0], [1, 1]]]}, Path(), "motion")
    assert VideoConfig(source="x.mp4", model=Path("m.onnx")).motion == MotionSettings()


@pytest.fixture(scope="module")
def quiet_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 frames (24 s) of three passers-by, about 60 % empty; the third stops in the zone."""
    clip = tmp_path_factory.mktemp("quiet") / "quiet.mp4"
    made = run_detect(
        "synth", "--video", str(clip), "--frames", "240", "--objects", "3", "--quiet", "0.6",
        "--seed", "3",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return clip


LINE = "middle=160,240,160,0"  # the synthetic site's line (`site_layout`): forward is rightwards


def _counting(folder: Path) -> tuple[CountingSettings, Path]:
    """The synthetic site's zone and line, and its zones.json (written in ``folder``)."""
    zones = {"zones": site_layout(320, 240)["zones"]}
    path = folder / "zones.json"
    path.write_text(json.dumps(zones))
    return CountingSettings(zones=zones_from_dict(zones), lines=[Line.parse(LINE)]), path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(clip: Path, jsonl: Path, *args: str) -> None:
    _, zones = _counting(jsonl.parent)
    result = run_detect(
        "video", str(clip), "--track", "--jsonl", str(jsonl), "--line", LINE, "--zones",
        str(zones), *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_quiet_clip_infers_only_what_moved_and_counts_as_without_gating(
    quiet_clip: Path, tmp_path: Path
) -> None:
    gated, plain = tmp_path / "gated.jsonl", tmp_path / "plain.jsonl"
    _run(quiet_clip, gated, "--model", str(DEMO))
    _run(quiet_clip, plain, "--model", str(DEMO), "--no-motion")
    records, truth = _lines(gated), json.loads(quiet_clip.with_suffix(".json").read_text())
    inferred = [r["frame"] for r in records if r["inferred"]]
    # the model ran on about the frames with someone moving in them, and on a forced frame at
    # least every 5 s of quiet
    busy = {a["image_id"] for a in truth["annotations"]}
    assert len(inferred) < 0.6 * len(records)
    assert len(inferred) < len(busy) + 15
    assert max(np.diff([*inferred, len(records)])) <= 50
    assert {r["motion"] for r in records} <= {"first", "motion", "forced", "still", "lighting"}
    # nobody lost or counted twice: the stopped passer-by keeps its track through the frames
    # not inferred, and the line counts equal the ungated run's
    counting, _ = _counting(tmp_path)
    scores = {
        name: score_counting(ClipRun.read(quiet_clip.with_suffix(".json"), path), counting)
        for name, path in (("gated", gated), ("plain", plain))
    }
    assert scores["gated"]["all"]["double_counts"] == 0
    assert scores["gated"]["all"]["f1"] >= scores["plain"]["all"]["f1"]
    ids = {d["track_id"] for r in records for d in r["detections"] if d["track_id"] >= 0}
    assert len(ids) == 3
    held = [r for r in records if not r["inferred"] and r["detections"]]
    assert held, "the passer-by who stopped is held, not inferred, while it stands"


def test_through_a_server_the_gated_frames_come_in_order_as_the_local_run_gives_them(
    quiet_clip: Path, tmp_path: Path
) -> None:
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    pinned = ("--backend", "onnxruntime")
    _run(quiet_clip, local, "--model", str(DEMO), *pinned, "--max-frames", "120")
    server = start_server(DEMO, *pinned)
    try:
        _run(quiet_clip, remote, "--server", server.address, "--max-frames", "120")
    finally:
        assert server.stop() == 0
    assert _lines(remote) == _lines(local)
    assert [r["frame"] for r in _lines(remote)] == list(range(120))


def test_a_camera_without_motion_between_forced_frames_still_shows_what_stands(
    tmp_path: Path,
) -> None:
    """A parked object in a scene where nothing moves: every frame reports it (held), and only
    the first and the forced frames go to the model."""
    rng = np.random.default_rng(5)
    clip = tmp_path / "parked.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(60):
        writer.write(_scene(rng, box=(140, 120)))
    writer.release()
    jsonl = tmp_path / "parked.jsonl"
    result = run_detect("video", str(clip), "--model", str(DEMO), "--jsonl", str(jsonl))
    assert result.returncode == 0, result.stderr
    records = _lines(jsonl)
    assert [r["frame"] for r in records if r["inferred"]] == [0, 50]
    assert len({len(r["detections"]) for r in records}) == 1
    assert "model: ran on 2 of them (3%)" in result.stdout


def test_the_budget_serves_frames_with_motion_first_then_in_order_and_a_late_one_gives_up() -> None:
    budget = Budget(1)
    assert budget.acquire(urgent=False)  # a quiet camera's forced frame is running
    served: list[str] = []

    def frame(name: str, urgent: bool) -> None:
        if budget.acquire(urgent):
            served.append(name)
            time.sleep(0.05)
            budget.release()

    waiting = []
    for name, urgent in (("quiet forced", False), ("busy 1", True), ("busy 2", True)):
        waiting.append(threading.Thread(target=frame, args=(name, urgent)))
        waiting[-1].start()
        time.sleep(0.05)  # they queue in this order
    assert not budget.acquire(urgent=True, timeout=0.1)  # a real-time frame gives up
    budget.release()
    for thread in waiting:
        thread.join()
    assert served == ["busy 1", "busy 2", "quiet forced"]
    assert budget.acquire(urgent=False, timeout=0)  # every slot came back


def test_a_quiet_camera_whose_server_goes_away_retries_and_stops_at_once_when_asked(
    quiet_clip: Path, tmp_path: Path
) -> None:
    """While the stream waits for the server, its still frames wait in line behind the frame
    in flight; SIGTERM still ends the run at once, its outputs complete."""
    server = start_server(DEMO)
    jsonl = tmp_path / "away.jsonl"
    video = subprocess.Popen(
        [
            *(sys.executable, "-m", "detect", "video", str(quiet_clip), "--realtime"),
            *("--server", server.address, "--retry", "forever", "--jsonl", str(jsonl)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not jsonl.exists() or len(_lines(jsonl)) < 20):
            time.sleep(0.1)
        server.stop()
        time.sleep(2.0)  # retrying now
        video.send_signal(signal.SIGTERM)
        stdout, stderr = video.communicate(timeout=15)
    finally:
        video.kill()
    assert video.returncode == 0, stderr[-2000:]
    assert "retrying in" in stderr and "Traceback" not in stderr
    frames = [r["frame"] for r in _lines(jsonl)]
    assert frames == list(range(len(frames))) and len(frames) >= 20
    assert "SIGTERM" in stdout


def test_every_budget_slot_comes_back_when_a_gated_stream_ends_or_loses_its_server(
    quiet_clip: Path,
) -> None:
    from detect.client import DetectorClient
    from detect.video.remote import gated_stream
    from detect.video.run import StreamLostError
    from detect.video.source import FrameSource

    budget = Budget(1)
    server = start_server(DEMO)
    try:
        with DetectorClient(server.address, timeout=None) as client:
            config = VideoConfig(source=str(quiet_clip), server=server.address, max_frames=60)
            frames = FrameSource(config)
            gate = MotionGate(MotionSettings())
            out = list(gated_stream(client, frames, gate, config.options, budget=budget))
            frames.close()
            assert [r[0] for r in out] == list(range(60))
            assert budget.acquire(urgent=True, timeout=0)  # the slot came back
            budget.release()
            frames = FrameSource(VideoConfig(source=str(quiet_clip), server=server.address))
            results = gated_stream(client, frames, None, config.options, budget=budget)
            next(results)
            server.stop()  # gone mid-stream, no retries
            with pytest.raises((StreamLostError, DetectError)):
                list(results)
            frames.close()
    finally:
        server.stop()
    assert budget.acquire(urgent=True, timeout=0)

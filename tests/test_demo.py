"""`detect demo` end to end (a reduced run: fewer images and frames); the committed demo model
still scoring what its card records on synthetic data it has never seen; and, with its real
detections, zone and line counts on a scripted clip with known answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_detect

from detect.config import Engine
from detect.data.synth import Shape, render_background, render_scene, write_dataset
from detect.evaluate import EvalConfig, evaluate

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "demo.onnx"
LINE = re.compile(r"^\d{6}\.jpg,(\d+\.\d+,){4}[a-z]+,[01]\.\d+$")


@pytest.mark.slow
def test_demo_serves_the_committed_model_and_prints_where_its_outputs_are(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo"
    result = run_detect("demo", "--out", str(out), "--images", "6", "--frames", "24")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stdout.splitlines() if LINE.match(line)]
    assert len(lines) >= 4  # the demo model finds the shapes of the first 4 images
    assert "ready: serving demo" in result.stdout and "exit code 0" in result.stdout
    assert len(list((out / "images").glob("*.jpg"))) == 4
    site = out / "site" / "out"
    for camera in ("cam1", "cam2"):
        records = [json.loads(x) for x in (site / f"{camera}.jsonl").read_text().splitlines()]
        assert [r["frame"] for r in records] == list(range(24))
        capture = cv2.VideoCapture(str(site / f"{camera}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    summary = json.loads((site / "summary.json").read_text())
    assert summary["frames_processed"] == 48 and summary["events"] >= 1
    counts: list[int] = []
    for camera in summary["cameras"].values():
        assert camera["unique_tracks"] >= 1 and camera["error"] is None
        # zone or line -> event kind -> class -> count
        counts += [
            n for kinds in camera["counts"].values() for c in kinds.values() for n in c.values()
        ]
        quality = camera["ground_truth"]
        assert quality["frames"] == 24 and 0.05 < quality["AP50"] <= 1 and quality["MOTA"] <= 1
        assert (
            quality["counting"]["all"]["true"] >= 0 and quality["counting"]["window_frames"] == 10
        )
    assert counts and all(isinstance(n, int) and n >= 1 for n in counts)
    assert result.stdout.count("its counts against its ground truth:") == 2
    assert (site / "events.jsonl").read_text().count("\n") == summary["events"]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["bbox"]["AP50"] > 0.05 and (out / "eval" / "report.md").is_file()
    tail = result.stdout.split("outputs:")[-1]
    for name in ("images", "cam1.mp4", "cam1.jsonl", "events.jsonl", "report.md"):
        assert name in tail


@pytest.mark.slow
def test_demo_model_keeps_the_ap_its_card_records_on_fresh_synthetic_data(
    tmp_path: Path,
) -> None:
    card = json.loads(MODEL.with_suffix(".json").read_text())
    recipe = card["recipe"]
    assert (recipe["arch"], recipe["backbone"], recipe["seed"]) == (
        "mask_rcnn",
        "mobilenet_v3_fpn",
        0,
    )
    gt = write_dataset(tmp_path / "fresh", images=40, seed=12345, size=256)
    result = evaluate(
        EvalConfig(gt=gt, out=tmp_path / "eval", model=MODEL, engine=Engine(device="cpu"))
    )
    for iou_type in ("bbox", "segm"):
        recorded = card["metrics"][iou_type]
        measured = result.metrics[iou_type]
        assert measured["AP"] >= recorded["AP"] - 0.08, (iou_type, measured, recorded)
        assert measured["AP50"] >= recorded["AP50"] - 0.08, (iou_type, measured, recorded)


def test_demo_errors_are_one_line(tmp_path: Path) -> None:
    missing = run_detect("demo", "--out", str(tmp_path / "d"), "--model", str(tmp_path / "x.onnx"))
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: --model")
    file = tmp_path / "file"
    file.write_text("")
    taken = run_detect("demo", "--out", str(file))
    assert taken.returncode == 2 and "is a file" in taken.stderr


@pytest.fixture(autouse=True)
def _model_present() -> None:
    assert MODEL.is_file(), f"{MODEL} is missing: the demo model is committed with the code"


def _scripted_clip(path: Path, frames: int = 36) -> None:
    """320x240 at 10 fps on a synthetic background: two circles, one crossing left to right in
    the upper half, the other right to left in the lower half, 7 px per frame."""
    rng = np.random.default_rng(3)
    background = render_background(rng, 240, 320)
    look = {
        "category_id": 1,
        "radius": 24.0,
        "angle": 0.0,
        "aspect": 1.0,
        "inner": 0.5,
        "color": (230, 40, 40),
        "color2": (250, 140, 60),
        "gradient_angle": 0.3,
        "texture": "gradient",
        "texture_freq": 1.0,
        "texture_amp": 0.1,
    }
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for i in range(frames):
        shapes = [
            Shape(cx=40.0 + 7 * i, cy=70.0, **look),
            Shape(cx=280.0 - 7 * i, cy=165.0, **look),
        ]
        image, _ = render_scene(background, shapes)
        writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    writer.release()


@pytest.mark.slow
def test_zone_and_line_counts_on_a_scripted_clip_match_the_script(tmp_path: Path) -> None:
    clip, zones, jsonl = tmp_path / "scripted.mp4", tmp_path / "zones.json", tmp_path / "s.jsonl"
    _scripted_clip(clip)
    halves = {
        "left": [[0, 0], [160, 0], [160, 240], [0, 240]],
        "right": [[160, 0], [320, 0], [320, 240], [160, 240]],
    }
    zones.write_text(json.dumps({"zones": [{"name": k, "polygon": v} for k, v in halves.items()]}))
    result = run_detect(
        *("video", str(clip), "--model", str(MODEL), "--classes", "circle"),
        *("--zones", str(zones), "--line", "160,240,160,0", "--jsonl", str(jsonl)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the line is drawn bottom to top, so left to right is forward; a new object inside a zone
    # enters it
    assert "tracks: 2 (circle 2)" in result.stdout, result.stdout
    assert (
        "counts: left enter circle 2, left exit circle 1, line backward circle 1, "
        "line forward circle 1, right enter circle 2, right exit circle 1"
    ) in result.stdout
    events = [e for line in jsonl.read_text().splitlines() for e in json.loads(line)["events"]]
    events = [e for e in events if "zone" in e]
    first = {e["zone"]: e["track_id"] for e in reversed(events) if e["event"] == "enter"}
    moves = [(e["zone"], e["event"], e["track_id"]) for e in events]
    assert ("left", "exit", first["left"]) in moves and ("right", "enter", first["left"]) in moves
    assert ("right", "exit", first["right"]) in moves and ("left", "enter", first["right"]) in moves

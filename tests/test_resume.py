"""A run started again with the same ``--out`` (`detect.resume`): `detect predict` killed mid-run
and `detect eval --model` run first over part of the images skip what is finished and write
the very files of a run never interrupted; other settings are refused. The real CLI, the demo
model and copies of the sample images. (On Ray: tests/test_cluster.py.)"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_detect

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "demo.onnx"
SAMPLES = REPO / "samples"
SAMPLE_IMAGES = sorted((SAMPLES / "images").glob("*.jpg"))


def _copies(folder: Path, times: int) -> Path:
    """``folder`` holding ``times`` copies of each sample image (``NN_000000.jpg``, ...)."""
    folder.mkdir(parents=True)
    for copy in range(times):
        for image in SAMPLE_IMAGES:
            shutil.copy(image, folder / f"{copy:02d}_{image.name}")
    return folder


def _manifest(out: Path) -> list[dict]:
    """manifest.jsonl's whole lines (a last one cut short left out)."""
    text = (out / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def _detected_images(stdout: str) -> set[str]:
    """The images named by the ``image,top,left,width,height,label,score`` lines."""
    return {line.rsplit(",", 6)[0] for line in stdout.splitlines()}


def _predict(images: Path | str, out: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_detect("predict", str(images), "--model", str(MODEL), "--out", str(out), *args)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def test_predict_killed_mid_run_then_run_again_skips_the_finished_images_and_writes_the_same_files(
    tmp_path: Path,
) -> None:
    images = _copies(tmp_path / "images", 10)  # 40 images
    total = len(list(images.iterdir()))
    whole = _predict(images, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "out"
    run = subprocess.Popen(
        [sys.executable, "-m", "detect", "predict", str(images), "--model", str(MODEL),
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline:
        if (out / "manifest.jsonl").is_file() and len(_manifest(out)) >= 4:  # settings + 3
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert run.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "predictions.json").exists()  # killed: no chance to write it
    finished = [line["file_name"] for line in _manifest(out)[1:]]
    assert 3 <= len(finished) < total

    again = _predict(images, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        f"predict: {len(finished)} of {total} images finished by an earlier run in {out}; skipped"
        in again.stderr.splitlines()
    )
    rest = total - len(finished)
    assert f"predict: {rest}/{rest} images, " in again.stderr  # the bar counts the rest only
    assert _detected_images(again.stdout) == _detected_images(whole.stdout) - set(finished)
    assert (out / "predictions.json").read_bytes() == (
        tmp_path / "whole" / "predictions.json"
    ).read_bytes()
    assert f"{total} images, " in again.stderr  # the summary is of the whole outputs
    assert len(_manifest(out)) == total + 1  # each image once (a line cut short dropped)


def test_an_image_changed_or_whose_annotated_copy_is_gone_runs_again(tmp_path: Path) -> None:
    images = _copies(tmp_path / "images", 1)
    out = tmp_path / "out"
    assert _predict(images, out).returncode == 0
    changed, gone = images / "00_000001.jpg", "00_000002.jpg"
    shutil.copy(SAMPLE_IMAGES[3], changed)
    (out / "annotated" / gone).unlink()
    manifest = (out / "manifest.jsonl").read_bytes()
    (out / "manifest.jsonl").write_bytes(manifest[:-20])  # the last line cut short

    again = _predict(images, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"predict: 1 of 4 images finished by an earlier run in {out}; skipped" in again.stderr
    assert _detected_images(again.stdout) == {
        str(images / n) for n in ("00_000001.jpg", "00_000002.jpg", "00_000003.jpg")
    }
    assert _predict(images, tmp_path / "fresh").returncode == 0
    assert (out / "predictions.json").read_bytes() == (
        tmp_path / "fresh" / "predictions.json"
    ).read_bytes()
    assert (out / "annotated" / gone).is_file()
    assert [line.get("file_name") for line in _manifest(out)] == [
        None,
        *(str(images / f"00_{image.name}") for image in SAMPLE_IMAGES[:3]),
        str(images / "00_000001.jpg"),  # again: its bytes changed
        str(images / "00_000002.jpg"),
        str(images / "00_000003.jpg"),  # its line had been cut short
    ]


def test_predict_into_an_out_made_with_other_settings_is_one_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(SAMPLES / "images", out).returncode == 0
    before = (out / "predictions.json").read_bytes()
    done = _predict(SAMPLES / "images", out, "--score", "0.5")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {out} was made with other settings (--score 0.7 -> 0.5); give another --out "
        "for these, or the same settings to resume it"
    ]
    assert (out / "predictions.json").read_bytes() == before


def _eval(gt: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_detect(
        "eval", "--gt", str(gt), "--images", str(SAMPLES), "--model", str(MODEL),
        "--out", str(out), *args,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def _metrics_but_speed(out: Path) -> str:
    """metrics.json as written, but its timings (``speed``)."""
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("speed")
    return json.dumps(metrics)


@pytest.fixture(scope="module")
def whole_eval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`detect eval --model` over the sample images, never interrupted: its --out."""
    out = tmp_path_factory.mktemp("whole") / "eval"
    done = _eval(SAMPLES / "annotations.json", out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_eval_model_run_again_over_more_images_skips_those_finished_with_the_same_report(
    whole_eval: Path, tmp_path: Path
) -> None:
    gt = json.loads((SAMPLES / "annotations.json").read_text())
    first = {image["id"] for image in gt["images"][:2]}
    part = {
        **gt,
        "images": [image for image in gt["images"] if image["id"] in first],
        "annotations": [a for a in gt["annotations"] if a["image_id"] in first],
    }
    (tmp_path / "part.json").write_text(json.dumps(part))
    out = tmp_path / "eval"
    assert _eval(tmp_path / "part.json", out).returncode == 0

    again = _eval(SAMPLES / "annotations.json", out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"eval: 2 of 4 images finished by an earlier run in {out}; skipped" in again.stderr
    assert "eval: 2/2 images, " in again.stderr
    assert json.loads((out / "metrics.json").read_text())["speed"]["images"] == 2  # run here
    assert _metrics_but_speed(out) == _metrics_but_speed(whole_eval)
    assert (out / "predictions.json").read_bytes() == (whole_eval / "predictions.json").read_bytes()


def test_eval_model_into_an_out_made_with_other_scoring_options_is_one_usage_error(
    whole_eval: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    shutil.copytree(whole_eval, out)
    same_detections = _eval(SAMPLES / "annotations.json", out, "--score", "0.9")
    assert same_detections.returncode == 0, same_detections.stderr[-3000:]  # the operating point
    assert f"eval: 4 of 4 images finished by an earlier run in {out}; skipped" in (
        same_detections.stderr
    )
    done = _eval(SAMPLES / "annotations.json", out, "--agnostic-nms")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {out} was made with other settings (--agnostic-nms False -> True); give "
        "another --out for these, or the same settings to resume it"
    ]


def test_a_manifest_that_is_not_one_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_text("not json\n")
    done = _predict(SAMPLES / "images", out)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {out / 'manifest.jsonl'}: not a manifest of finished images (unreadable); "
        "give another --out"
    ]

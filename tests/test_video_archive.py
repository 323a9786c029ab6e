"""`detect video SOURCE... --out DIR`: an archive of clips (files, folders, glob patterns) run one
after another, each as a single-clip run would; summary.json totals; a bad clip skipped; a killed
run resumed; other settings and clashing names refused."""

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

from detect.runtime.sources import list_files
from detect.video.source import VIDEO_SUFFIXES

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo.onnx"
COUNTING = ("--track", "--line", "middle=80,0,80,120")
NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three clips a, b, c: 12 frames of 160 x 120 each, different seeds."""
    folder = tmp_path_factory.mktemp("clips")
    for seed, name in enumerate(NAMES, 1):
        made = run_detect(
            "synth",
            "--video",
            str(folder / f"{name}.mp4"),
            "--frames",
            "12",
            "--video-size",
            "160x120",
            "--seed",
            str(seed),
        )
        assert made.returncode == 0, made.stderr
    return folder


def _video(*args: str | Path) -> subprocess.CompletedProcess:
    result = run_detect("video", *map(str, args), "--model", str(DEMO), *COUNTING)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def archive(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three clips run as one archive (the folder)."""
    out = tmp_path_factory.mktemp("archive") / "out"
    result = _video(clips, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_archive_writes_the_jsonl_of_each_clip_as_a_single_clip_run_does(
    clips: Path, archive: Path, tmp_path: Path
) -> None:
    for name in NAMES:
        single = tmp_path / f"{name}.jsonl"
        result = _video(clips / f"{name}.mp4", "--jsonl", single)
        assert result.returncode == 0, result.stderr
        assert (archive / f"{name}.jsonl").read_text() == single.read_text()
    assert sorted(p.name for p in archive.iterdir()) == [
        "a.jsonl",
        "b.jsonl",
        "c.jsonl",
        "manifest.json",
        "summary.json",
    ]


def test_summary_json_holds_each_clip_and_the_totals_over_them(archive: Path) -> None:
    summary = json.loads((archive / "summary.json").read_text())
    clips = summary["clips"]
    assert list(clips) == list(NAMES)
    for name, clip in clips.items():
        lines = [json.loads(t) for t in (archive / f"{name}.jsonl").read_text().splitlines()]
        assert clip["frames_processed"] == len(lines) == 12
        assert clip["error"] is None
        assert sum(clip["detections"].values()) == sum(len(x["detections"]) for x in lines)
        events = [e for x in lines for e in x["events"]]
        assert sum(
            n for kinds in clip["counts"].values() for k in kinds.values() for n in k.values()
        ) == len(events)
    totals = summary["totals"]
    assert (totals["clips"], totals["finished"], totals["failed"]) == (3, 3, 0)
    assert totals["frames_processed"] == 36
    for label in {k for c in clips.values() for k in c["detections"]}:
        assert totals["detections"][label] == sum(
            c["detections"].get(label, 0) for c in clips.values()
        )
    assert totals["unique_tracks"] == sum(c["unique_tracks"] for c in clips.values())
    for line, kinds in totals["counts"].items():
        for kind, labels in kinds.items():
            for label, n in labels.items():
                assert n == sum(
                    c["counts"].get(line, {}).get(kind, {}).get(label, 0) for c in clips.values()
                )


def test_a_folder_and_a_glob_pattern_give_the_same_clips(clips: Path, tmp_path: Path) -> None:
    ran = {}
    for how, source in (("folder", clips), ("glob", clips / "*.mp4")):
        result = _video(source, "--out", tmp_path / how, "--max-frames", "1")
        assert result.returncode == 0, result.stderr
        ran[how] = json.loads((tmp_path / how / "summary.json").read_text())["clips"]
    expected = {name: str(clips / f"{name}.mp4") for name in NAMES}
    for how in ("folder", "glob"):
        assert {name: clip["input"] for name, clip in ran[how].items()} == expected
        assert [clip["frames_processed"] for clip in ran[how].values()] == [1, 1, 1]


def test_a_bad_clip_is_named_and_skipped_the_others_finish_and_the_run_exits_1(
    clips: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(clips / "a.mp4", folder / "a.mp4")
    shutil.copy(clips / "b.mp4", folder / "c.mp4")
    (folder / "b.mp4").write_text("not a video")
    (folder / "empty.mp4").write_bytes(b"")
    out = tmp_path / "out"
    result = _video(folder, "--out", out, "--max-frames", "3")
    assert result.returncode == 1, result.stderr
    warnings = [t for t in result.stderr.splitlines() if t.startswith("warning: clip ")]
    assert len(warnings) == 2, result.stderr  # (the other: the CPU runs the int8 model)
    assert f"warning: clip b: cannot open video {folder / 'b.mp4'}" in warnings[0]
    assert "empty" in warnings[1] and warnings[1].endswith("; skipped")
    assert "error: 2 of 4 clips failed (b, empty; " in result.stderr
    assert "archive: 4 clips: 2 processed, 0 finished earlier, 2 failed" in result.stdout
    for name in ("a", "c"):
        assert len((out / f"{name}.jsonl").read_text().splitlines()) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["failed"] == 2
    assert summary["clips"]["b"]["error"].startswith("cannot open video")
    assert set(json.loads((out / "manifest.json").read_text())["clips"]) == {"a", "c"}


@pytest.mark.slow
def test_a_killed_run_started_again_skips_the_finished_clips_and_completes_the_rest(
    clips: Path, archive: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "detect", "video", str(clips), "--out", str(out)]
    command += ["--model", str(DEMO), *COUNTING]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    try:
        deadline = time.monotonic() + 120
        while not manifest.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=30)
    finished = list(json.loads(manifest.read_text())["clips"])
    assert finished[:1] == ["a"] and len(finished) < 3

    again = _video(clips, "--out", out)
    assert again.returncode == 0, again.stderr
    for name in NAMES:
        skipped = f"clip {name} ({clips / name}.mp4): finished by an earlier run; skipped"
        assert (skipped in again.stdout) == (name in finished), again.stdout
        assert (out / f"{name}.jsonl").read_text() == (archive / f"{name}.jsonl").read_text()
    assert json.loads((out / "summary.json").read_text())["totals"]["finished"] == 3


def test_other_settings_than_the_archive_was_made_with_are_refused(
    clips: Path, archive: Path
) -> None:
    before = (archive / "manifest.json").read_text()
    result = _video(clips, "--out", archive, "--every", "2")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: {archive} was made with other settings (--every 1 -> 2); give another --out "
        "for these, or the same settings to resume it"
    )
    assert (archive / "manifest.json").read_text() == before


def test_two_clips_of_one_name_are_refused(clips: Path, tmp_path: Path) -> None:
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        shutil.copy(clips / "a.mp4", tmp_path / day / "gate.mp4")
    result = _video(tmp_path / "day1", tmp_path / "day2", "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: clips {tmp_path / 'day1/gate.mp4'} and {tmp_path / 'day2/gate.mp4'} would both "
        f"write {tmp_path / 'out/gate'}.jsonl: rename one, or run them into different --out "
        "folders"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("a.mp4", "b.mp4"), "error: several sources: give --out DIR for their outputs"),
        (
            ("a.mp4", "--out", "o", "--jsonl", "a.jsonl"),
            "error: --jsonl names one file; with --out each clip's is DIR/<clip>.jsonl",
        ),
        (
            ("a.mp4", "--annotate"),
            "error: --annotate goes with --out DIR; for one clip give --out-video FILE",
        ),
        (
            ("rtsp://cam/1", "--out", "o"),
            "error: rtsp://cam/1: --out takes video files, folders and patterns, not a stream "
            "or a webcam; for one give --jsonl FILE",
        ),
    ],
)
def test_archive_flags_that_do_not_go_together_are_usage_errors(
    flags: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "detect", "video", *flags, "--model", str(DEMO)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == message


def test_inputs_list_as_files_folders_and_glob_patterns_each_clip_once(tmp_path: Path) -> None:
    for name in ("day1/a.mp4", "day1/notes.txt", "day2/b.MOV", "day2/deep/c.mkv", "d.avi"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listed = list_files(
        [tmp_path / "d.avi", tmp_path / "day*", tmp_path / "day1" / "a.mp4", tmp_path / "gone.mp4"],
        VIDEO_SUFFIXES,
    )
    assert listed == [
        tmp_path / "d.avi",
        tmp_path / "day1/a.mp4",
        tmp_path / "day2/b.MOV",
        tmp_path / "day2/deep/c.mkv",
        tmp_path / "gone.mp4",  # as given: its reader says it is not there
    ]
    assert list_files([tmp_path / "**" / "*.mkv"], VIDEO_SUFFIXES) == [tmp_path / "day2/deep/c.mkv"]

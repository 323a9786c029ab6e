"""`detect.progress.Progress`: a bar on a terminal, plain lines (never a carriage return) in a
log, with the counts, rate and ETA right. The verbs' own progress is checked end to end in their
tests (`detect predict`, `video`, `eval`, `train`, `export --verify`)."""

from __future__ import annotations

import io
import re

import pytest

from detect.progress import Progress, silent

LINE = r"\d+(/\d+)? \w+, [\d.e-]+ \w+/s"  # "3/4 images, 9.8 images/s"


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_plain_line_per_interval_and_a_final_one() -> None:
    log = io.StringIO()
    with Progress("predict", 4, "images", stream=log, interval=0) as progress:
        for _ in range(4):
            progress.update()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(",")[0] for line in lines] == [
        "predict: 1/4 images",
        "predict: 2/4 images",
        "predict: 3/4 images",
        "predict: 4/4 images",  # the final line only: none for the last item before it
    ]
    for line in lines[:-1]:
        assert re.fullmatch(rf"predict: {LINE}, ETA \d+:\d\d:\d\d", line), line
    assert re.fullmatch(rf"predict: {LINE}, took \d+:\d\d:\d\d", lines[-1]), lines[-1]


def test_between_intervals_a_log_gets_nothing_but_the_final_line() -> None:
    log = io.StringIO()
    with Progress("video", 100, "frames", stream=log, interval=3600) as progress:
        for _ in range(100):
            progress.update()
    (line,) = log.getvalue().splitlines()
    assert line.startswith("video: 100/100 frames, ") and ", took " in line


def test_an_unknown_total_shows_the_count_and_rate_without_an_eta() -> None:
    log = io.StringIO()
    with Progress("video", None, "frames", stream=log, interval=0) as progress:
        progress.update(5)
        progress.update(2)
    first, second, last = log.getvalue().splitlines()
    assert second.startswith("video: 7 frames, ") and "ETA" not in second
    assert re.fullmatch(r"video: 5 frames, [\d.e-]+ frames/s", first), first
    assert re.fullmatch(r"video: 7 frames, [\d.e-]+ frames/s, took \d+:\d\d:\d\d", last), last


def test_a_note_follows_the_counts() -> None:
    log = io.StringIO()
    with Progress("epoch 1/2", 2, "batches", stream=log, interval=0) as progress:
        for batch in progress.each(["a", "b"]):
            progress.note(f"loss {batch}")
    first, last = log.getvalue().splitlines()
    assert first.startswith("epoch 1/2: 1/2 batches, ") and first.endswith(", loss a")
    assert last.startswith("epoch 1/2: 2/2 batches, ") and last.endswith(", loss b")


def test_each_counts_an_item_once_the_loop_is_done_with_it() -> None:
    progress = Progress("work", 3, "items", stream=io.StringIO())
    seen = []
    for item in progress.each([10, 20, 30]):
        seen.append((item, progress.done))
    assert seen == [(10, 0), (20, 1), (30, 2)] and progress.done == 3


def test_work_that_fails_gets_no_final_line() -> None:
    log = io.StringIO()
    with pytest.raises(ValueError), Progress("eval", 3, "images", stream=log, interval=3600):
        raise ValueError("bad image")
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar_replaced_by_the_final_line() -> None:
    terminal = Terminal()
    with Progress("predict", 3, "images", stream=terminal, interval=0) as progress:
        for _ in range(3):
            progress.update()
    text = terminal.getvalue()
    bar, _, final = text.rpartition("\r")  # tqdm redraws its bar in place, then clears it
    assert "predict:" in bar and "| 0/3 [" in bar, bar
    assert re.fullmatch(rf"predict: {LINE}, took \d+:\d\d:\d\d\n", final), final
    assert "ETA" not in text  # no plain lines while the bar is shown


def test_silent_writes_nothing_however_the_work_goes(capsys: pytest.CaptureFixture) -> None:
    with silent("predict", 2, "images") as progress:
        progress.update(2)
    assert capsys.readouterr() == ("", "")

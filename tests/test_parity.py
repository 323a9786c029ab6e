"""`ParityReport`: which detections parity judges, and when a run passes."""

from __future__ import annotations

import numpy as np

from detect.parity import TOLERANCES, ParityReport
from detect.structures import RawDetections


def _dets(*rows: tuple[float, float, float, float, float, int]) -> RawDetections:
    """Detections from ``(x1, y1, x2, y2, score, label)`` rows."""
    array = np.array(rows, np.float64).reshape(-1, 6)
    return RawDetections(
        array[:, :4].astype(np.float32),
        array[:, 4].astype(np.float32),
        array[:, 5].astype(int),
        (100, 100),
    )


def _report() -> ParityReport:
    return ParityReport("fp32", TOLERANCES["fp32"], min_score=TOLERANCES["fp32"].floor)


def test_fp32_compares_detections_at_or_above_the_stated_floor() -> None:
    assert TOLERANCES["fp32"].floor == 0.05
    summary = _report().summary()
    assert summary["criteria"]["compared_score_at_least"] == 0.05


def test_near_zero_detections_on_one_side_only_are_reported_not_judged() -> None:
    """The failure seen on a new machine: boxes at the numerical floor that survive on one side
    and not on the other (a 1e-7 difference at the graph's own cut) decide nothing."""
    report = _report()
    confident = (10, 10, 40, 40, 0.9, 1)
    report.add(
        _dets(confident, (50, 50, 60, 60, 1e-7, 2), (5, 5, 9, 9, 0.0499, 3)),
        _dets(confident),
    )
    assert (report.expected, report.matched) == (1, 1)
    assert (report.torch_below, report.onnx_below) == (2, 0)
    assert report.passed
    summary = report.summary()
    assert (summary["torch_below_floor"], summary["onnx_below_floor"]) == (2, 0)
    assert "below 0.05 torch / onnx  2 / 0 (not compared)" in report.table()


def test_a_missing_detection_above_the_floor_fails() -> None:
    report = _report()
    report.add(
        _dets((10, 10, 40, 40, 0.9, 1), (50, 50, 70, 70, 0.3, 2)), _dets((10, 10, 40, 40, 0.9, 1))
    )
    assert (report.expected, report.matched) == (2, 1)
    assert not report.passed


def test_a_pair_straddling_the_floor_is_compared() -> None:
    report = _report()
    report.add(_dets((10, 10, 40, 40, 0.0500004, 1)), _dets((10, 10, 40, 40, 0.0499996, 1)))
    assert (report.expected, report.matched) == (1, 1) and report.passed


def test_a_shifted_box_or_score_does_not_match() -> None:
    report = _report()
    report.add(
        _dets((10, 10, 40, 40, 0.9, 1), (50, 50, 70, 70, 0.6, 2)),
        _dets((12, 10, 42, 40, 0.9, 1), (50, 50, 70, 70, 0.61, 2)),
    )
    assert (report.expected, report.matched) == (2, 0)
    assert not report.passed


def test_nothing_above_the_floor_is_a_failure_not_a_pass() -> None:
    report = _report()
    report.add(_dets((10, 10, 40, 40, 0.01, 1)), _dets((10, 10, 40, 40, 0.01, 1)))
    assert report.expected == 0 and not report.passed
    assert "nothing to compare" in report.table()

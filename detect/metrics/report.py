"""The evaluation report: ``metrics.json`` as is, ``report.md`` (the tables a person reads) and
the compact table `detect eval` prints.

A COCO figure with nothing to measure (None in metrics.json, pycocotools' -1: no ground-truth
objects of that size, or of that class) reads ``n/a``, with a line saying why. A predictions
file that `detect predict` thresholded and simplified carries a note (``predictions.note``)
printed with the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detect.metrics.coco import STAT_NAMES, ap_text


def write_report(out: Path, metrics: dict[str, Any], title: str) -> None:
    """``out/metrics.json`` and ``out/report.md``."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(report_markdown(metrics, title))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


SIZES = {
    "s": "small (area < 32x32 px)",
    "m": "medium (32x32 to 96x96 px)",
    "l": "large (> 96x96 px)",
}


def undefined_note(metrics: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """One line on why the figures ``names`` read n/a in some IoU type, or None when none do."""
    types = [t for t in ("bbox", "segm") if t in metrics]
    missing = [n for n in names if any(metrics[t][n] is None for t in types)]
    if not missing:
        return None
    sizes = sorted({n[-1] for n in missing if n[-1] in SIZES}, key="sml".index)
    if len(sizes) == len(missing):
        what = " or ".join(SIZES[s] for s in sizes)
        return f"n/a ({', '.join(missing)}): the ground truth has no {what} objects to measure"
    return f"n/a ({', '.join(missing)}): the ground truth has no objects to measure"


def _predictions_note(metrics: dict[str, Any]) -> str | None:
    note = metrics.get("predictions", {}).get("note")
    return f"note: {note}" if note else None


def report_markdown(metrics: dict[str, Any], title: str) -> str:
    """``report.md``: the tables a person reads."""
    lines = [f"# {title}", ""]
    types = [t for t in ("bbox", "segm") if t in metrics]
    lines += ["## COCO AP / AR (pycocotools)", ""]
    lines += ["| metric | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for name in STAT_NAMES:
        lines.append(f"| {name} | " + " | ".join(ap_text(metrics[t][name]) for t in types) + " |")
    for line in (undefined_note(metrics, STAT_NAMES), _predictions_note(metrics)):
        lines += ["", line] if line else []
    op = metrics["operating_point"]
    lines += [
        "",
        f"## Per class ({op['iou_type']}; P/R/F1 at score >= {op['score_threshold']:g}, IoU 0.5)",
        "",
        "| class | AP | AP50 | precision | recall | F1 | TP | FP | FN | best-F1 threshold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in metrics["per_class"].items():
        cells = [row[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")]
        lines.append(
            f"| {name} | {ap_text(row['AP'])} | {ap_text(row['AP50'])} | "
            + " | ".join(_fmt(v) for v in cells)
            + f" | {_fmt(row['best_f1_threshold'])} |"
        )
    lines.append(
        f"| **all** | | | {_fmt(op['precision'])} | {_fmt(op['recall'])} | {_fmt(op['f1'])} | "
        f"{op['tp']} | {op['fp']} | {op['fn']} | |"
    )
    if any(row["AP"] is None for row in metrics["per_class"].values()):
        lines += ["", "n/a: the ground truth has no objects of that class to measure"]
    lines += ["", f"Mean IoU of matched pairs: {_fmt(metrics['mean_iou_matched'])}", ""]
    confusion = metrics["confusion_matrix"]
    labels = confusion["labels"]
    lines += [
        "## Confusion matrix (rows: true class, columns: predicted; background = missed / "
        "false alarm)",
        "",
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for label, row in zip(labels, confusion["rows_true_columns_predicted"], strict=True):
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + " |")
    if "proposal_recall" in metrics:
        recall = metrics["proposal_recall"]
        keys = [k for k in recall if k.startswith("iou_")]
        tops = list(recall[keys[0]])
        lines += [
            "",
            f"## RPN proposal recall ({recall['proposals_per_image']:.0f} proposals per image)",
            "",
            "| | " + " | ".join(tops) + " |",
            "|---|" + "---|" * len(tops),
        ]
        for key in keys:
            lines.append(f"| {key} | " + " | ".join(_fmt(recall[key][t]) for t in tops) + " |")
    speed = metrics["speed"]
    lines += ["", "## Speed", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in speed.items()]
    return "\n".join(lines) + "\n"


def stdout_table(metrics: dict[str, Any]) -> str:
    """A compact table for the terminal, with why a figure reads n/a and the predictions' note."""
    types = [t for t in ("bbox", "segm") if t in metrics]
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    rows = [f"{'':<6}" + "".join(f"{n:>7}" for n in names)]
    for t in types:
        rows.append(f"{t:<6}" + "".join(f"{ap_text(metrics[t][n]):>7}" for n in names))
    why = undefined_note(metrics, names)
    rows += [why] if why else []
    note = _predictions_note(metrics)
    op = metrics["operating_point"]
    rows.append(
        f"at score >= {op['score_threshold']:g} ({op['iou_type']}, IoU 0.5): precision "
        f"{op['precision']:.3f}, recall {op['recall']:.3f}, F1 {op['f1']:.3f} "
        f"(TP {op['tp']}, FP {op['fp']}, FN {op['fn']})"
    )
    rows += [note] if note else []
    return "\n".join(rows)

"""What a camera's run writes of a frame: the annotated picture (boxes, track ids, zones, lines,
a counter panel) and the frame's detections as JSONL records (TLWH boxes, polygons)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from detect.rounding import BOX_DECIMALS, POLYGON_DECIMALS, SCORE_DECIMALS, rounded
from detect.runtime.draw import class_color, draw_detections
from detect.structures import Detections
from detect.zones import Counting


def annotate_frame(
    frame: np.ndarray, detections: Detections, counting: Counting, title: str
) -> np.ndarray:
    """The ``(H, W, 3)`` BGR frame with the (tracked) detections, zone outlines, lines and the
    counts panel (`draw_counts_panel`) headed by ``title``."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    captions = [
        f"{label} {score:.2f}" + (f" #{i}" if i >= 0 else "")
        for label, score, i in zip(
            detections.labels, detections.scores, detections.track_ids.tolist(), strict=True
        )
    ]
    canvas = draw_detections(rgb, detections.rows(), captions)
    for k, zone in enumerate(counting.zones):
        points = np.round(np.asarray(zone.polygon.exterior.coords)).astype(np.int32)
        color = class_color(k + 7)
        cv2.polylines(canvas, [points], True, color, 2, cv2.LINE_AA)
        x, y = points.min(axis=0)
        cv2.putText(canvas, zone.name, (int(x) + 3, int(y) + 14), 0, 0.45, color, 1, cv2.LINE_AA)
    for line in counting.lines:
        ends = (round(line.x1), round(line.y1)), (round(line.x2), round(line.y2))
        cv2.line(canvas, *ends, (255, 255, 0), 2, cv2.LINE_AA)
    draw_counts_panel(canvas, title, counting)
    return np.ascontiguousarray(canvas[:, :, ::-1])


_EVENTS = {
    "zone": (("enter", "in"), ("exit", "out")),
    "line": (("forward", "fwd"), ("backward", "bwd")),
}
_MAX_WIDTH, _MAX_HEIGHT = 0.5, 0.4  # of the frame's: the panel drops columns and rows beyond
_MAX_NAME = 12  # characters of a class name in the panel


def _counts_table(counting: Counting) -> tuple[list[str], list[str], list[list[str]]]:
    """The panel's table: group headers (a zone or line name over its two columns), column
    headers (``in``/``out`` of a zone, ``fwd``/``bwd`` of a line) and one row per counted
    class, alphabetically: ``[class, n, n, ...]``."""
    groups = [("zone", z.name) for z in counting.zones] + [("line", n.name) for n in counting.lines]
    labels = sorted({label for _, _, label in counting.totals})
    columns = [(name, event, short) for kind, name in groups for event, short in _EVENTS[kind]]
    rows = [
        [label if len(label) <= _MAX_NAME else label[: _MAX_NAME - 1] + "."]
        + [str(counting.totals[name, event, label]) for name, event, _ in columns]
        for label in labels
    ]
    return [name for _, name in groups], [short for _, _, short in columns], rows


def draw_counts_panel(canvas: np.ndarray, title: str, counting: Counting) -> None:
    """Draw the counts of ``counting`` as a compact table on a translucent panel in the top-left
    corner of ``canvas`` ``(H, W, 3)`` (in place): a class per row, a zone's ``in``/``out``
    (enter, exit) and a line's ``fwd``/``bwd`` (forward, backward crossings) as columns under
    the zone's or line's name, ``title`` in the corner cell. The font scales with the frame
    (0.35 at 240 pixels high); the panel stays within half the frame's width and 40 % of its
    height: columns of zones and lines beyond are left out (a ``+K`` header says how many), and
    the last rows give way to a ``+K more`` row."""
    height, width = canvas.shape[:2]
    scale = max(0.3, 0.35 * min(height / 240, width / 320))
    thick = max(1, round(scale * 1.2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, text_h), descent = cv2.getTextSize("gy", font, scale, thick)
    pad = max(2, round(text_h / 4))
    row_h = text_h + descent + pad

    def text_w(text: str) -> int:
        return cv2.getTextSize(text, font, scale, thick)[0][0]

    groups, headers, rows = _counts_table(counting)
    corner = list(title.partition("  ")[::2]) if groups else [title]  # "frame N", "K objects"
    max_rows = max(1, int(_MAX_HEIGHT * height - pad) // row_h - len(corner))
    if len(rows) > max_rows:
        rows = [*rows[: max_rows - 1], [f"+{len(rows) - max_rows + 1} more"]]
    col0 = max(text_w(t) for t in corner + [r[0] for r in rows]) + 2 * pad
    widths = [  # each column fits its header and its numbers
        max([text_w(headers[c])] + [text_w(r[c + 1]) for r in rows if len(r) > 1]) + 2 * pad
        for c in range(len(headers))
    ]
    for g, name in enumerate(groups):  # a name wider than its two columns widens them
        spare = text_w(name) + 2 * pad - widths[2 * g] - widths[2 * g + 1]
        if spare > 0:
            widths[2 * g] += spare - spare // 2
            widths[2 * g + 1] += spare // 2

    def more(shown: int) -> str:
        return f"+{len(groups) - shown}" if shown < len(groups) else ""

    def panel_width(shown: int) -> int:
        extra = text_w(more(shown)) + 2 * pad if more(shown) else 0
        return col0 + sum(widths[: 2 * shown]) + extra

    shown = len(groups)  # zones and lines whose columns fit
    while shown and panel_width(shown) > _MAX_WIDTH * width:
        shown -= 1
    panel_w = min(width, panel_width(shown))
    panel_h = min(height, (len(corner) + len(rows)) * row_h + pad)
    box = canvas[:panel_h, :panel_w]
    box[:] = (box * 0.45).astype(np.uint8)

    def put(text: str, x: int, row: int, color: tuple[int, int, int] = (255, 255, 255)) -> None:
        y = (row + 1) * row_h - descent
        cv2.putText(canvas, text, (x, y), font, scale, color, thick, cv2.LINE_AA)

    for row, text in enumerate(corner):
        put(text, pad, row)
    x = col0
    for g in range(shown):
        put(groups[g], x + pad, 0, (255, 255, 0))
        for c in (2 * g, 2 * g + 1):
            put(headers[c], x + widths[c] - pad - text_w(headers[c]), 1, (200, 200, 200))
            for r, cells in enumerate(rows, start=len(corner)):
                if len(cells) > 1:  # not the "+K more" row
                    put(cells[c + 1], x + widths[c] - pad - text_w(cells[c + 1]), r)
            x += widths[c]
    if more(shown):
        put(more(shown), x + pad, 0, (255, 255, 0))
    for r, cells in enumerate(rows, start=len(corner)):
        put(cells[0], pad, r)


def detection_records(detections: Detections) -> list[dict[str, Any]]:
    """The detections of a JSONL line, one dict each: TLWH box (pixels to 0.01), label, score
    (to 0.0001), track id, polygon rings (flat ``[x1, y1, x2, y2, ...]`` to 0.1 pixel): the
    precisions of `detect.rounding`."""
    return [
        {
            "top": top,
            "left": left,
            "width": width,
            "height": height,
            "label": str(label),
            "score": rounded(score, SCORE_DECIMALS),
            "track_id": track_id,
            "polygons": [
                [rounded(ring.ravel(), POLYGON_DECIMALS) for ring in p.rings()] for p in polygons
            ],
        }
        for (top, left, width, height), label, score, track_id, polygons in zip(
            rounded(detections.tlwh(), BOX_DECIMALS),
            detections.labels,
            detections.scores.tolist(),
            detections.track_ids.tolist(),
            detections.polygons,
            strict=True,
        )
    ]

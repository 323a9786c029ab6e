"""What annotated frames show: the counts panel is a compact table in the top-left corner at any
frame size and however many classes, zones and lines it counts; every caption lies fully inside
the image, and a small object's caption is drawn over a large one's."""

from __future__ import annotations

import numpy as np
import pytest

from detect.runtime.draw import class_color, draw_detections
from detect.structures import Detection
from detect.video.annotate import draw_counts_panel
from detect.zones import Counting, Line, zones_from_dict

GREY = 200


def _counting(width: int, height: int, zones: int, lines: int, labels: list[str]) -> Counting:
    """Zones and lines over a ``width`` x ``height`` frame, with every count of every class as
    after a busy run."""
    strips = [
        {"name": f"zone{k}", "polygon": [[k, 0], [k + 10, 0], [k + 10, height], [k, height]]}
        for k in range(zones)
    ]
    ends = [[0, height // 2], [width, height // 2]]
    counting = Counting(
        zones_from_dict({"zones": strips}, "zones"),
        [Line.of(f"line{k}", ends, "--line") for k in range(lines)],
    )
    for name, events in [(z.name, ("enter", "exit")) for z in counting.zones] + [
        (n.name, ("forward", "backward")) for n in counting.lines
    ]:
        for event in events:
            for k, label in enumerate(labels):
                counting.totals[name, event, label] = 10 + k
    return counting


def _panel(width: int, height: int, counting: Counting) -> tuple[int, int]:
    """Width and height of the panel drawn on a plain grey frame (its darkened corner)."""
    canvas = np.full((height, width, 3), GREY, np.uint8)
    draw_counts_panel(canvas, "frame 58  6 objects", counting)
    ys, xs = np.nonzero((canvas != GREY).any(axis=2))
    assert ys.min() == 0 and xs.min() == 0, "the panel sits in the top-left corner"
    assert canvas[ys.max(), xs.max()].max() < GREY, "translucent: darkened, not replaced"
    return int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(("width", "height"), [(320, 240), (1280, 720), (160, 120)])
def test_counts_panel_of_the_demo_covers_at_most_15_percent_of_the_frame(
    width: int, height: int
) -> None:
    counting = _counting(width, height, 1, 1, ["circle", "rectangle", "triangle"])
    panel_w, panel_h = _panel(width, height, counting)
    assert panel_w * panel_h <= 0.15 * width * height, (panel_w, panel_h)


def test_counts_panel_font_scales_with_the_frame() -> None:
    counting = _counting(320, 240, 1, 1, ["circle", "rectangle", "triangle"])
    small = _panel(320, 240, counting)
    large = _panel(1280, 960, counting)
    assert 3 * small[0] <= large[0] <= 5 * small[0], (small, large)  # bolder too
    assert 3 * small[1] <= large[1] <= 5 * small[1], (small, large)


def test_counts_panel_with_many_classes_zones_and_lines_stays_within_its_corner() -> None:
    labels = [f"class number {k}" for k in range(40)]  # long names, truncated too
    counting = _counting(320, 240, 6, 4, labels)
    panel_w, panel_h = _panel(320, 240, counting)
    assert panel_w <= 0.5 * 320 and panel_h <= 0.4 * 240, (panel_w, panel_h)


def test_counts_panel_without_zones_or_lines_is_one_line() -> None:
    panel_w, panel_h = _panel(320, 240, Counting())
    assert panel_h <= 20 and panel_w <= 120, (panel_w, panel_h)


def _label_columns(canvas: np.ndarray, color: tuple[int, int, int], above: int) -> np.ndarray:
    """Columns holding pixels of a caption's fill ``color`` (RGB) in the rows above ``above``
    (a box's top edge: the caption's rows, none of its outline)."""
    return np.nonzero((canvas[: above - 3] == color).all(axis=2).any(axis=0))[0]


@pytest.mark.parametrize(("width", "height"), [(320, 240), (1280, 720)])
def test_caption_of_a_box_touching_the_right_edge_lies_fully_inside_the_frame(
    width: int, height: int
) -> None:
    black = np.zeros((height, width, 3), np.uint8)
    caption = "circle 0.99 #12"

    def drawn(x1: float, x2: float) -> np.ndarray:
        det = Detection((x1, height / 2, x2, height / 2 + 40), "circle", 1, 0.99)
        canvas = draw_detections(black, [det], [caption])
        return _label_columns(canvas, class_color(1), height // 2)

    middle = drawn(20, 60)  # the caption in full, away from every edge
    edge = drawn(width - 30, width - 0.5)  # a box up to the last column
    assert edge.max() <= width - 1
    assert len(edge) == len(middle) and edge.max() - edge.min() == middle.max() - middle.min()


def test_small_objects_caption_is_drawn_over_a_large_ones() -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    large = Detection((10.0, 60.0, 300.0, 230.0), "rectangle", 2, 0.9)
    small = Detection((14.0, 62.0, 30.0, 78.0), "circle", 1, 0.8)  # caption over large's
    alone = (draw_detections(black, [small]) == class_color(1)).all(axis=2).sum()
    for order in ([large, small], [small, large]):
        canvas = draw_detections(black, order)
        assert (canvas == class_color(1)).all(axis=2).sum() == alone, "nothing hides the small one"

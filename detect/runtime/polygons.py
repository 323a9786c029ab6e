"""Binary mask <-> polygons, without torch (NumPy, OpenCV, shapely).

Coordinates are continuous pixel coordinates ``(x, y)`` = (column, row) of the original image:
mask pixel ``(row r, col c)`` is the unit square ``[c, c + 1) x [r, r + 1)``, with its centre at
``(c + 0.5, r + 0.5)``; a box of columns ``c0..c1`` spans ``x`` from ``c0`` to ``c1 + 1`` (the
project's COCO convention, see `detect.data.importers`). A polygon covers the pixels whose centre
it contains; `polygons_to_mask` rasterises by exactly that rule.

An object is a list of `Polygon`, one per connected part, largest first; a polygon is an exterior
ring and its holes. A ring is a ``(K, 2) float32`` array of ``(x, y)`` points, not closed (the
first point is not repeated). Exteriors run counter-clockwise and holes clockwise in the ``x, y``
axes (exteriors have a positive shoelace area; with ``y`` pointing down, that is clockwise on
screen).

Tracing (`mask_to_polygons`): ``cv2.findContours`` follows the centres of the boundary pixels
(parts are 8-connected, holes 4-connected), so its outlines, shifted by ``+0.5``, run half a pixel
inside the pixel edges. Each part's outline is grown, and its holes' outlines are shrunk, by half
a pixel with mitred buffers: axis-aligned edges land exactly on the pixel edges, 45-degree
staircases between their inner and outer corners, and no pixel centre changes side, since every
centre off an outline is at least ``1/sqrt(2)`` pixel from it. With ``tolerance=0`` the polygons
therefore rasterise back to the mask exactly. Where an outline collapses (a single pixel, a
1-pixel-wide line or spur), its points and lines are grown with square caps into the squares of
their pixels.

Parts and holes of fewer than ``min_area`` pixels are removed from the mask before tracing, and
so are all but the `MAX_PARTS` (256) largest parts and the `MAX_HOLES` (256) largest holes, by
pixel count (`_pruned`, linear in the pixels): an object keeps at most 256 parts and 256 holes
over all its parts, and the exact round trip holds for masks within those caps. The caps bound
the simplification, which is quadratic in the outlines' rings when they are simplified together
(GEOS checks each simplified stretch against every other ring): a 240x320 grid of 2x2-pixel
holes (8,480 holes of ``min_area`` pixels) took 5.7 s before, and 2x2-pixel parts on a 3-pixel
grid 2.2 s. All the holes of a part are subtracted from it in one set operation. A ragged mask
(an under-trained model's, with thousands of pinholes and specks) therefore costs what at most
512 outlines cost (``benchmarks/polygon_cost.py``).

Douglas-Peucker simplification runs in between, on outlines grown by only `_PRE_GROWTH` (0.1
pixel). On synthetic shapes that rasterises back 0.5-1% (IoU) closer to the mask than
simplifying the final outlines; the 0.1 pixel keeps 2-pixel-wide parts, whose centre outlines
are 1 pixel wide, from being flattened into wedges at the default tolerance (parts narrower than
about ``tolerance + 0.8`` pixels can be).

The caps do not bound the rings: where a part's pixels touch only at a corner, its outline is split
there into separate rings (the members of its `_centre_outline`: polygons, and the lines and points
of collapsed stretches). Diagonal chains of 2x2-pixel blocks give a ring for every 6 pixels or so
(12,707 rings at 240x320, 51,014 at 480x640), and simplifying those together took 0.43 s and 5.9 s.
So outlines of more than `MAX_JOINT_RINGS` (1024) rings in all are simplified ring by ring, each on
its own (keeping its own topology), which is linear (20 ms and 93 ms for those rings); at most 1024
rings together cost a few milliseconds (2.5 ms for 777, 8 ms for 1,766, 16 ms for 3,154: the
quadratic term takes over above a few thousand). Beyond that count two simplified rings may touch
or cross: a part's region may overlap a hole's or another part's, and a hole may cut into its
part's edge. The polygons stay valid (each part's members are grown and unioned, its holes
subtracted in a set operation), but two parts' polygons may overlap, and small pieces that the
neighbouring rings kept from flattening may flatten (a 2x2-pixel block into a triangle of 3
pixels): the diagonal chains rasterise back with IoU 0.84, 0.91 and 0.84 at 120x160, 240x320 and
480x640 at the default tolerance, against 0.95 and 0.98 simplified together at the first two. At
``tolerance=0`` simplification only drops collinear points, so the exact round trip holds either
way.
"""

from __future__ import annotations

import cv2
import numpy as np
import shapely

from detect.rounding import POLYGON_DECIMALS, rounded
from detect.structures import Polygon

_MITRE = {"cap_style": "square", "join_style": "mitre"}
_PRE_GROWTH = 0.1
"""Pixels of the half-pixel growth done before simplification (see the module docstring)."""
MAX_PARTS = 256
"""Most parts an object keeps: its largest by pixel count (see the module docstring)."""
MAX_HOLES = 256
"""Most holes an object keeps, over all its parts: its largest by pixel count."""
MAX_JOINT_RINGS = 1024
"""Most rings, over all of an object's outlines, that are simplified together; above that count
each ring is simplified on its own (see the module docstring)."""


def _centre_outline(points: np.ndarray, grow: float) -> shapely.GeometryCollection:
    """Valid geometry of a ``(K, 2)`` contour through pixel centres (continuous coordinates).

    Its members are single polygons, grown by ``grow`` pixels (negative: shrunk), lines where
    the contour runs along a 1-pixel-wide stretch and back (merged, so that they simplify), and
    points for a contour of 1 or 2 pixels.
    """
    if len(points) < 3:
        return shapely.GeometryCollection(list(shapely.points(points)))
    parts = shapely.get_parts(shapely.get_parts(shapely.make_valid(shapely.Polygon(points))))
    lines = shapely.get_dimensions(parts) == 1  # make_valid gives collapsed stretches 1 by 1
    merged = shapely.get_parts(shapely.line_merge(shapely.MultiLineString(list(parts[lines]))))
    grown = shapely.buffer(shapely.MultiPolygon(list(parts[~lines])), grow, **_MITRE)
    return shapely.GeometryCollection([*shapely.get_parts(grown), *merged])


def _union(geometries: np.ndarray) -> shapely.Geometry:
    """Union of a 1-D array of valid geometries; a single one is returned as it is (no set
    operation), none an empty geometry."""
    if len(geometries) == 1:
        return geometries[0]
    return shapely.union_all(geometries)


def _part_region(outline: shapely.GeometryCollection) -> shapely.Geometry:
    """Region of a part's pixels from its `_centre_outline`: the members grown the rest of the
    way to the pixel edges (polygons by ``0.5 - _PRE_GROWTH``, points and lines by 0.5)."""
    parts = shapely.get_parts(outline)
    distance = np.where(shapely.get_dimensions(parts) == 2, 0.5 - _PRE_GROWTH, 0.5)
    return _union(shapely.buffer(parts, distance, **_MITRE))


def _hole_region(outline: shapely.GeometryCollection) -> shapely.Geometry:
    """Region of a hole's pixels from its `_centre_outline` (which runs through the centres of
    the foreground pixels around it): the polygons shrunk the rest of the way to the pixel edges,
    minus the 1-pixel-wide foreground spurs (lines) that stick into them, grown by half a pixel.
    """
    parts = shapely.get_parts(outline)
    polygons = shapely.get_dimensions(parts) == 2
    region = _union(shapely.buffer(parts[polygons], _PRE_GROWTH - 0.5, **_MITRE))
    if polygons.all():
        return region
    return shapely.difference(region, _union(shapely.buffer(parts[~polygons], 0.5, **_MITRE)))


def _holes_region(regions: list[shapely.Geometry]) -> shapely.Geometry:
    """One geometry of the `_hole_region` of each of a part's holes, to subtract at once.

    Two holes' outlines may share an edge (through the centres of the same foreground pixels,
    as for holes that touch at a corner), but the regions, shrunk off them by half a pixel, are
    apart, and simplification together keeps the outlines from crossing: a MultiPolygon of the
    regions is valid and costs no set operation. Their union is a fallback, needed on no mask
    tried with the rings simplified together; simplified one by one (above `MAX_JOINT_RINGS`),
    two regions may overlap.
    """
    members = shapely.get_parts(regions)
    combined = shapely.MultiPolygon(list(members[~shapely.is_empty(members)]))
    return combined if shapely.is_valid(combined) else shapely.union_all(members)


def _largest(areas: np.ndarray, count: int) -> np.ndarray:
    """``bool`` mask of the ``count`` largest of ``areas`` (all of them if there are no more),
    ties going to the lower index. Linear in ``len(areas)``."""
    keep = np.ones(len(areas), bool)
    if len(areas) <= count:
        return keep
    threshold = np.partition(areas, len(areas) - count)[len(areas) - count]  # count-th largest
    keep = areas > threshold
    keep[np.flatnonzero(areas == threshold)[: count - np.count_nonzero(keep)]] = True
    return keep


def _pruned(binary: np.ndarray, min_area: float) -> np.ndarray:
    """``(H, W) bool`` mask ``binary`` with the parts and holes that are not traced removed:
    parts (8-connected components) of fewer than ``min_area`` pixels and those beyond the
    `MAX_PARTS` largest, then holes of fewer than ``min_area`` pixels and those beyond the
    `MAX_HOLES` largest filled (largest by pixel count, ties to the lower label).

    A hole is a 4-connected component of the background that does not touch the mask's border
    (the parts and holes that `cv2.findContours` traces). For ``min_area`` a hole is counted
    with what lies inside it, as its traced outline would be: one with a part inside (an island
    of at least ``min_area`` pixels) is left to the area check after tracing. For the cap it is
    counted by its own pixels. Removing parts makes no holes, and filling holes makes
    no parts: the result has at most `MAX_PARTS` parts and `MAX_HOLES` holes. Linear in the
    pixels.
    """
    _, parts, part_stats, _ = cv2.connectedComponentsWithStats(
        binary.view(np.uint8), connectivity=8
    )
    part_area = part_stats[:, cv2.CC_STAT_AREA]
    dropped = part_area < min_area
    dropped[0] = False  # the background
    dropped[1:] |= ~_largest(np.where(dropped[1:], -1, part_area[1:]), MAX_PARTS)
    if dropped.any():
        binary = binary & ~dropped[parts]
    _, holes, hole_stats, _ = cv2.connectedComponentsWithStats(
        (~binary).view(np.uint8), connectivity=4
    )
    left, top, width, height, area = hole_stats.T
    height_px, width_px = binary.shape
    inside = (left > 0) & (top > 0) & (left + width < width_px) & (top + height < height_px)
    inside[0] = False  # label 0 is the foreground
    small = inside & (area < min_area)
    if small.any():
        # a part's top row is 4-adjacent to the background component around the part: the
        # pixels just above it find the holes that have a part inside
        top_row = binary & (np.arange(height_px)[:, None] == part_stats[parts, cv2.CC_STAT_TOP])
        small[holes[:-1][top_row[1:]]] = False
    kept = inside & ~small
    filled = small | (kept & ~_largest(np.where(kept, area, -1), MAX_HOLES))
    if not filled.any():
        return binary
    return binary | filled[holes]


def _simplified(
    outlines: list[shapely.GeometryCollection], tolerance: float
) -> list[shapely.GeometryCollection]:
    """``outlines`` simplified with Douglas-Peucker at ``tolerance``, keeping their topology:
    together, so that no ring crosses another, if they hold at most `MAX_JOINT_RINGS` rings
    (members) in all, else each ring on its own, so that two rings may touch or cross (see the
    module docstring). No outline is empty (each holds pixel centres), so all come back, in order.
    """
    if shapely.get_num_geometries(outlines).sum() <= MAX_JOINT_RINGS:
        return list(
            shapely.simplify(
                shapely.GeometryCollection(outlines), tolerance, preserve_topology=True
            ).geoms
        )
    rings, index = shapely.get_parts(outlines, return_index=True)
    rings = shapely.simplify(rings, tolerance, preserve_topology=True)
    return list(shapely.geometrycollections(rings, indices=index))


def _ring_array(ring: shapely.LinearRing, offset: tuple[float, float]) -> np.ndarray:
    """``(K, 2) float32`` points of a closed shapely ring, without the repeated last point."""
    return (shapely.get_coordinates(ring)[:-1] + offset).astype(np.float32)


def mask_to_polygons(
    mask: np.ndarray,
    tolerance: float = 1.0,
    min_area: float = 4.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> list[Polygon]:
    """Polygons of the object in ``mask``, largest first (``[]`` for an empty mask).

    ``mask`` is ``(H, W)``: bool, uint8 (0/1 or 0/255) or float probabilities; foreground is
    ``> 0.5``. The traced outlines (see the module docstring) are simplified together with
    Douglas-Peucker at ``tolerance`` pixels, keeping their topology (no ring crosses another; ``0``
    keeps them, dropping only collinear points). Above `MAX_JOINT_RINGS` (1024) rings over all the
    outlines (masks whose parts pinch, their pixels touching only at corners, thousands of times),
    the rings are simplified one by one instead, so two simplified rings may touch or cross (two
    parts' polygons may overlap; each polygon stays valid). Parts and holes smaller than
    ``min_area`` are dropped (a dropped hole is filled): those of fewer than ``min_area`` pixels
    before tracing (a hole counted with any part inside it), then any traced part or hole of less
    than ``min_area`` square pixels. The object keeps at most `MAX_PARTS` (256) parts (8-connected:
    one that pinches, its pixels touching only at a corner, comes out as a polygon per piece) and
    `MAX_HOLES` (256) holes over all its parts, its largest by pixel count; the smaller ones go
    before tracing (parts removed, holes filled), so a mask within the caps round trips exactly at
    ``tolerance=0, min_area=0``, however many rings it has, and one beyond them as if those were
    gone. (The polygons' holes can be a few more than the mask's: a notch of the background whose
    1-pixel opening lies between two 45-degree corners comes back closed off by their mitres, with
    the same pixels.) ``offset`` ``(x, y)`` is added to every point, e.g. the top-left corner in
    the image of the crop that ``mask`` covers.
    """
    binary = np.asarray(mask)
    if binary.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {binary.shape}")
    binary = _pruned(binary > 0.5, min_area)
    contours, hierarchy = cv2.findContours(
        binary.view(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE
    )
    if not contours:
        return []
    # hierarchy rows: next, previous, first child, parent. RETR_CCOMP gives two levels: the outer
    # contours of the parts (no parent), and the holes of each part as its children
    links = hierarchy[0]
    outlines = [
        _centre_outline(c[:, 0] + 0.5, _PRE_GROWTH if parent < 0 else -_PRE_GROWTH)
        for c, (_, _, _, parent) in zip(contours, links, strict=True)
    ]
    outlines = _simplified(outlines, tolerance)
    polygons = []
    for index, (_, _, child, parent) in enumerate(links):
        if parent >= 0:
            continue
        region = _part_region(outlines[index])
        holes = []
        while child >= 0:
            holes.append(_hole_region(outlines[child]))
            child = links[child, 0]
        if holes:
            region = shapely.difference(region, _holes_region(holes))
        for part in shapely.get_parts(shapely.orient_polygons(region)):
            if part.area < min_area:
                continue
            holes = [h for h in part.interiors if shapely.Polygon(h).area >= min_area]
            exterior = _ring_array(part.exterior, offset)
            polygons.append(Polygon(exterior, tuple(_ring_array(h, offset) for h in holes)))
    return sorted(polygons, key=lambda p: p.area, reverse=True)


def _row_spans(rings: list[np.ndarray], height: int) -> tuple[np.ndarray, ...]:
    """``(row, x_in, x_out)`` of the stretches of the rows' centre lines ``y = row + 0.5``,
    ``0 <= row < height``, that lie inside ``rings`` (even-odd rule: holes are outside)."""
    start = np.concatenate(rings).astype(np.float64)
    end = np.concatenate([np.roll(ring, -1, axis=0) for ring in rings]).astype(np.float64)
    (x0, y0), (x1, y1) = start.T, end.T
    # an edge crosses the centre lines of rows first <= row < last (half-open, so a vertex on a
    # centre line counts once)
    first = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, height).astype(np.int64)
    counts = last - first
    edge = np.repeat(np.arange(len(start)), counts)
    row = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts - first, counts)
    x = x0[edge] + (row + 0.5 - y0[edge]) * (x1 - x0)[edge] / (y1 - y0)[edge]
    order = np.lexsort((x, row))  # along a row, crossings pair up: inside, outside
    row, x = row[order], x[order]
    return row[0::2], x[0::2], x[1::2]


def polygons_to_mask(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """``(H, W) bool`` mask of the pixels whose centre lies inside any of ``polygons``.

    An exact scanline fill. Not ``cv2.fillPoly``: that rounds each edge crossing to the nearest
    pixel and fills inclusively, which grows a region by about half a pixel on every side.
    """
    if not polygons:
        return np.zeros((height, width), bool)
    spans = zip(*(_row_spans(polygon.rings(), height) for polygon in polygons), strict=True)
    rows, x_in, x_out = (np.concatenate(s) for s in spans)
    # pixel c is inside [x_in, x_out) when its centre c + 0.5 is: columns ceil(x_in - 0.5) up to
    # ceil(x_out - 0.5), exclusive; marked +1 / -1, then summed along each row
    edges = np.zeros(height * (width + 1))
    for x, sign in ((x_in, 1.0), (x_out, -1.0)):
        column = np.clip(np.ceil(x - 0.5), 0, width).astype(np.int64)
        edges += sign * np.bincount(rows * (width + 1) + column, minlength=edges.size)
    return np.cumsum(edges.reshape(height, width + 1), axis=1)[:, :width] > 0


def polygons_to_coco(polygons: list[Polygon]) -> list[list[float]]:
    """COCO ``segmentation`` polygons: one flat ``[x1, y1, x2, y2, ...]`` list per polygon.

    pycocotools rasterises them by the same pixel convention (a traced outline decodes to exactly
    its mask). COCO polygons cannot express holes (pycocotools unions the lists of an object), so
    only the exteriors are written: holes come out filled. Use an RLE of `polygons_to_mask` where
    holes matter. Coordinates are rounded to 0.1 pixel (`detect.rounding`).
    """
    return [rounded(p.exterior.ravel(), POLYGON_DECIMALS) for p in polygons]

"""The precision every output file writes numbers at, and the one helper that rounds to it.

One stated precision per kind, in every file and line a verb writes (predict's
``predictions.json`` and its ``image,top,left,width,height,label,score`` lines, eval's
``predictions.json``, the client's lines, video's and watch's JSONL):

- box coordinates (xyxy, TLWH, COCO ``[x, y, w, h]``): `BOX_DECIMALS`, 0.01 pixel;
- polygon vertices (COCO ``segmentation``, JSONL ``polygons``): `POLYGON_DECIMALS`, 0.1 pixel
  (they are traced from a mask upsampled from 28 x 28 and simplified by about a pixel);
- scores: `SCORE_DECIMALS`, 0.0001.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

BOX_DECIMALS = 2
POLYGON_DECIMALS = 1
SCORE_DECIMALS = 4


def rounded(values: ArrayLike, decimals: int) -> Any:
    """``values`` (a number or an array of any shape) rounded to ``decimals``, as Python floats
    of the same nesting. Each number is widened to float64 first, so that float32's 245.2 is
    written 245.2, not 245.1999969482422, then rounded by Python's `round` (to the nearest
    decimal of the double's exact value: 0.98765 is 0.9877, where NumPy's scaled rounding gives
    0.9876)."""
    widened = np.asarray(values, np.float64)
    return np.asarray(_ROUND(widened, decimals), object).tolist()


_ROUND = np.frompyfunc(round, 2, 1)

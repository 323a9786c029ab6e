"""`PredictRecord`: how `detect predict` made a ``predictions.json``, in the sidecar
``predict.json`` beside it (the COCO results list itself stays what pycocotools' ``loadRes``
takes).

``predict.json``::

    {"predictions": "predictions.json",
     "model": {"name": "demo", "file": "models/demo.onnx", "sha256": "6074..."},
     "score_threshold": 0.5, "max_detections": 100, "classes": [], "agnostic_nms": false,
     "polygons": true, "polygon_tolerance": 1.0,
     "precision": {"box_px": 0.01, "polygon_px": 0.1, "score": 0.0001}}

``score_threshold`` and ``agnostic_nms`` are the values that applied (the model card's where the
run left them unset); ``polygon_tolerance`` is the simplification in pixels (null without
polygons). `detect eval --predictions` reads it (`read_predict_record`) to say that such
predictions were thresholded and simplified, and to take their threshold as its operating one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detect.errors import DataError
from detect.rounding import BOX_DECIMALS, POLYGON_DECIMALS, SCORE_DECIMALS

RECORD_NAME = "predict.json"


@dataclass(frozen=True)
class PredictRecord:
    """What a `detect predict` run used (see the module): the model and the options."""

    model: dict[str, str]  # name, file, sha256 (the model card's)
    score_threshold: float
    max_detections: int | None
    classes: list[str]
    agnostic_nms: bool
    polygons: bool
    polygon_tolerance: float | None
    predictions: str = "predictions.json"
    precision: dict[str, float] = field(
        default_factory=lambda: {
            "box_px": 10.0**-BOX_DECIMALS,
            "polygon_px": 10.0**-POLYGON_DECIMALS,
            "score": 10.0**-SCORE_DECIMALS,
        }
    )

    def write(self, folder: Path) -> Path:
        """``folder/predict.json``; its path."""
        path = folder / RECORD_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_predict_record(predictions: Path) -> PredictRecord | None:
    """The record of the `detect predict` run that wrote ``predictions`` (``predict.json`` in
    its folder, naming that file), or None when there is none; a `DataError` naming the file
    when it is there but unreadable."""
    from detect.data.coco import load_json  # pycocotools: the eval extra, which predict lacks

    path = Path(predictions).parent / RECORD_NAME
    if not path.is_file():
        return None
    data = load_json(path)
    if not isinstance(data, dict) or data.get("predictions") != Path(predictions).name:
        return None  # another file's record, or not a record at all
    try:
        return PredictRecord(
            model=dict(data["model"]),
            score_threshold=float(data["score_threshold"]),
            max_detections=data["max_detections"],
            classes=list(data["classes"]),
            agnostic_nms=bool(data["agnostic_nms"]),
            polygons=bool(data["polygons"]),
            polygon_tolerance=data["polygon_tolerance"],
            predictions=data["predictions"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path}: not a `detect predict` record ({exc!r} is missing or wrong); "
            "rerun detect predict, or remove the file to score the predictions without it"
        ) from None

"""``detect export --int8``: the int8 model of an exported fp32 graph, kept only when its AP on
held-out images is within ``--max-ap-drop`` points of fp32's on every installed engine.
`detect.quantize` quantizes (NNCF) and measures the AP; this module is the gate."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from detect.errors import ModelError
from detect.export.config import ExportConfig
from detect.progress import StartProgress, silent
from detect.runtime.model_card import ModelCard, card_path, sha256_file
from detect.runtime.precision import FP32_SHA256, INT8
from detect.runtime.sources import list_images

log = logging.getLogger(__name__)


class Int8RefusedError(ModelError):
    """An int8 model that loses more AP than ``--max-ap-drop`` allows, so nothing was written;
    ``record`` is what its card would have said (``quantization``: the AP per engine)."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


def int8_model(
    model_path: Path,
    card: ModelCard,
    int8_path: Path,
    config: ExportConfig,
    progress: StartProgress = silent,
) -> ModelCard:
    """Write ``int8_path``, the int8 model of ``model_path`` (fp32, its card ``card`` written
    beside it), and its card beside it; return that card, with its AP on ``config.int8_val``
    against fp32's per engine and the fp32 model's sha256 (`FP32_SHA256`) in its
    ``quantization``. An `Int8RefusedError` when it loses more than ``config.max_ap_drop``
    points (unless ``force``). The calibration's and each AP measurement's images done go to
    ``progress``."""
    from detect.quantize import held_out_ap, quantization_record, quantize_int8
    from detect.runtime.engines import installed_engines

    calibration = list_images([config.int8])
    log.info("int8: calibrating on %d images of %s", len(calibration), config.int8)
    quantize_int8(model_path, int8_path, calibration, progress)
    # the graph's own card, but for what the int8 file lacks: batch graphs, fp32's parity
    int8_card = replace(card, precision=INT8, batch_graphs={}, parity={}, quantization={})
    int8_card.sha256 = sha256_file(int8_path)
    int8_card.write(card_path(int8_path))
    engines = installed_engines()
    fp32 = {e: held_out_ap(model_path, config.int8_val, e, progress) for e in engines}
    int8 = {e: held_out_ap(int8_path, config.int8_val, e, progress) for e in engines}
    record = quantization_record(
        calibration, config.int8, config.int8_val, fp32, int8, config.max_ap_drop, config.force
    )
    drop = record["ap_drop_points"]
    if drop > config.max_ap_drop and not config.force:
        raise Int8RefusedError(
            f"int8 loses {drop:.2f} AP points on {config.int8_val} (--max-ap-drop "
            f"{config.max_ap_drop:g}); nothing written: calibrate on more of the model's own "
            "images, raise --max-ap-drop, or --force",
            record,
        )
    int8_card.quantization = record | {FP32_SHA256: card.sha256}
    return int8_card

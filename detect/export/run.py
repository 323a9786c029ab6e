"""`export`: one `ExportConfig` -> ``NAME.onnx`` and its card ``NAME.json`` (with ``--batch-sizes``
the batch graphs beside them, with ``--int8`` the int8 model instead), each step in its module:
`source` (what is exported), `trace` and `onnx_file` (the graph files), `card`, `int8`,
`verify`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from torch import nn

from detect.errors import ModelError
from detect.export.card import model_card
from detect.export.config import ExportConfig, check_export
from detect.export.int8 import int8_model
from detect.export.onnx_file import convert_fp16, record_num_classes
from detect.export.source import ModelSource, checkpoint_source, pretrained_source
from detect.export.trace import export_graph
from detect.export.verify import verify
from detect.parity import ParityReport
from detect.progress import StartProgress, silent
from detect.runtime.model_card import batch_graph_path, card_path, sha256_file


@dataclass
class ExportResult:
    """What `export` wrote: the model and its card, the model's size in MiB, and the checks'
    figures: ``parity`` (``verify``), ``quantization`` (``int8``: the card's record)."""

    model: Path
    card: Path
    size_mb: float
    parity: ParityReport | None = None
    quantization: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """False only when the parity check ran and failed."""
        return self.parity is None or self.parity.passed


def _load(config: ExportConfig) -> ModelSource:
    if config.pretrained is not None:
        return pretrained_source(config.pretrained, config.weights)
    return checkpoint_source(config.checkpoint)


def _write_graph(
    model: nn.Module, path: Path, config: ExportConfig, num_classes: int, batch: int = 1
) -> None:
    """One graph file at ``path``: traced, in float16 with ``fp16``, its class count recorded,
    checked by ONNX's checker; any failure is a `ModelError` naming what was exported."""
    try:
        export_graph(model, path, config.opset, batch=batch)
        if config.fp16:
            convert_fp16(path)
        record_num_classes(path, num_classes)
        onnx.checker.check_model(str(path))
    except Exception as exc:
        what = config.checkpoint or config.pretrained
        raise ModelError(f"export of {what} failed: {exc}") from exc


def export(config: ExportConfig, progress: StartProgress = silent) -> ExportResult:
    """Export, write the card, and with ``verify`` run the parity check into the card; the
    images done by the int8 calibration and checks and by the parity check go to ``progress``.

    Everything is written in a work folder beside ``out`` and moved into place at the end, so
    a failed export leaves nothing (and an earlier model at ``out`` intact). `ConfigError` for
    settings that cannot work, before anything is traced; `detect.export.int8.Int8RefusedError` for
    an int8 model that costs too much AP.
    """
    check_export(config)
    source = _load(config)
    model = source.model
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    num_classes = len(source.checkpoint["labels"])
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}-export-") as work:
        path = Path(work) / "model.onnx"
        _write_graph(model, path, config, num_classes)
        card = model_card(out.stem, source, path, config)
        for batch in config.batch_sizes:
            batch_path = batch_graph_path(path, batch)
            _write_graph(model, batch_path, config, num_classes, batch)
            card.batch_graphs[str(batch)] = sha256_file(batch_path)
        if config.int8 is not None:
            card.write(card_path(path))
            path, card = int8_model(path, card, config, progress)
        card.write(card_path(path))  # moved in right after the model: no time with a stale card
        for batch in config.batch_sizes:
            batch_graph_path(path, batch).replace(batch_graph_path(out, batch))
        path.replace(out)
        card_path(path).replace(card_path(out))
    result = ExportResult(out, card_path(out), out.stat().st_size / 2**20)
    result.quantization = card.quantization or None
    if config.verify is not None:
        result.parity = verify(model, out, card, config.verify, progress)
    return result

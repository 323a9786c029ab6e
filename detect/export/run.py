"""`export`: one `ExportConfig` -> ``NAME.onnx`` and its card ``NAME.json`` (with ``--batch-sizes``
the batch graphs beside them, with ``--int8`` the int8 model ``NAME.int8.onnx`` and its card
too), or with ``--model`` only the int8 model of an exported ``NAME.onnx``; each step in its
module: `source` (what is exported), `trace` and `onnx_file` (the graph files), `card`, `int8`,
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
from detect.runtime.detector import check_model
from detect.runtime.model_card import batch_graph_path, card_path, sha256_file
from detect.runtime.precision import int8_sibling


@dataclass
class ExportResult:
    """What `export` wrote: the model and its card (with ``--model``: the model given, not
    written), the model's size in MiB, the int8 model (``--int8``; its card beside it), and the
    checks' figures: ``parity`` (``verify``), ``quantization`` (``int8``: its card's record)."""

    model: Path
    card: Path
    size_mb: float
    parity: ParityReport | None = None
    quantization: dict[str, Any] | None = None
    int8: Path | None = None

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
    """Export, write the card, with ``int8`` the int8 model beside it, and with ``verify`` run
    the parity check into the card; the images done by the int8 calibration and checks and by
    the parity check go to ``progress``. With ``model``: only the int8 model of that file.

    Everything is written in a work folder beside ``out`` and moved into place at the end, so
    a failed export leaves nothing (and an earlier model at ``out`` intact). `ConfigError` for
    settings that cannot work, before anything is traced; `detect.export.int8.Int8RefusedError` for
    an int8 model that costs too much AP (then nothing is written, not even the fp32 model).
    """
    check_export(config)
    if config.model is not None:
        return _int8_of_exported(config, progress)
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
        card.write(card_path(path))
        int8_card = None
        if config.int8 is not None:
            int8_card = int8_model(path, card, int8_sibling(path), config, progress)
            int8_card.write(card_path(int8_sibling(path)))
        for batch in config.batch_sizes:
            batch_graph_path(path, batch).replace(batch_graph_path(out, batch))
        _move_in(path, out)
        if int8_card is not None:
            _move_in(int8_sibling(path), int8_sibling(out))
    result = ExportResult(out, card_path(out), out.stat().st_size / 2**20)
    if int8_card is not None:
        result.int8 = int8_sibling(out)
        result.quantization = int8_card.quantization
    if config.verify is not None:
        result.parity = verify(model, out, card, config.verify, progress)
    return result


def _int8_of_exported(config: ExportConfig, progress: StartProgress) -> ExportResult:
    """``--model NAME.onnx --int8 ...``: its int8 model ``NAME.int8.onnx`` and card beside it
    (nothing written when the gate refuses it)."""
    assert config.model is not None
    given = config.model
    card = check_model(given)
    with tempfile.TemporaryDirectory(dir=given.parent, prefix=f".{given.stem}-int8-") as work:
        int8_path = Path(work) / "model.int8.onnx"
        int8_card = int8_model(given, card, int8_path, config, progress)
        int8_card.write(card_path(int8_path))
        _move_in(int8_path, int8_sibling(given))
    result = ExportResult(given, card_path(given), given.stat().st_size / 2**20)
    result.int8 = int8_sibling(given)
    result.quantization = int8_card.quantization
    return result


def _move_in(path: Path, target: Path) -> None:
    """The model ``path`` and its card to ``target`` and its card: the card right after the
    model, so that no time passes with a stale card."""
    path.replace(target)
    card_path(path).replace(card_path(target))

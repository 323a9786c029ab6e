"""Which file of an exported model runs: ``NAME.onnx`` as given, or its int8 model
``NAME.int8.onnx`` beside it (with its card ``NAME.int8.json``; `detect export --int8` writes
both), by the ``precision`` setting (`detect.config.Engine`) of the verbs that run a model to use
it: `detect serve`, `detect video` and `detect watch`. Predict, eval and parity run exactly the
file they are given: they measure it.

- ``auto`` (the default): the int8 sibling when it and its card are there and the model runs on
  the CPU (where OpenVINO runs it in int8, `detect.quantize`), else the file given;
- ``fp32``: the file given;
- ``int8``: the int8 sibling, or the file given when its card says it is an int8 model itself;
  else a `ConfigError` naming the missing file and how to make it.

A sibling whose card records that it was quantized from another ``NAME.onnx`` than the one
beside it (the fp32 model was exported again since) is passed over by ``auto``, with a warning,
and refused by ``int8``. When the file run is not the one given, `say_chosen` logs so once.

No torch here; ONNX Runtime is loaded only to ask whether it runs on CUDA (`runs_on_cpu`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from detect.config import PRECISIONS
from detect.errors import ConfigError
from detect.runtime.engines import runs_on_cpu
from detect.runtime.model_card import card_fields, card_path

if TYPE_CHECKING:
    from detect.config import Engine

log = logging.getLogger(__name__)

INT8 = "int8"
"""The card's ``precision`` of an int8 model, and the infix of its file name."""

FP32_SHA256 = "fp32_sha256"
"""The key of an int8 card's ``quantization`` record that holds the sha256 of the fp32 model it
was quantized from."""

_said: set[tuple[Path, Path]] = set()
_said_lock = threading.Lock()


def int8_sibling(path: Path) -> Path:
    """``NAME.int8.onnx`` beside ``NAME.onnx`` (its card: ``NAME.int8.json``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{INT8}.onnx")


def chosen_file(path: Path, precision: str, device: str = "auto", engine: str = "auto") -> Path:
    """The file to run for the model ``path`` at ``precision`` ("auto", "fp32", "int8"; see the
    module docstring) when it runs on ``device`` with ``engine`` (`detect.runtime.engines`).
    Reads only the two cards; the file's own checks are its loader's. `ConfigError` for
    ``int8`` without an int8 model."""
    path = Path(path)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return path
    sibling = int8_sibling(path)
    if precision == "auto":
        whole = sibling.is_file() and card_path(sibling).is_file()  # not half-copied
        if not whole or not runs_on_cpu(device, engine):
            return path
        stale = _quantized_from_another(sibling, path)
        if stale is not None:
            _say_once(path, path, log.warning, f"{stale}; running {path}")
            return path
        return sibling
    if sibling.is_file():
        stale = _quantized_from_another(sibling, path)
        if stale is not None:
            raise ConfigError(f"precision int8: {stale}")
        return sibling
    if card_fields(path).get("precision") == INT8:
        return path
    raise ConfigError(
        f"precision int8: no int8 model {sibling} beside {path}; make it with `detect export "
        f"--model {path} --int8 CALIB_IMAGES --int8-val GT_JSON`"
    )


def say_chosen(given: Path, chosen: Path, precision: str) -> None:
    """Log, once per process and pair of files, that ``chosen`` runs instead of the model
    ``given``, and how to run ``given`` itself (a warning when ``precision`` auto chose it,
    else an info line)."""
    given, chosen = Path(given), Path(chosen)
    if chosen == given:
        return
    if precision == "auto":
        _say_once(
            given,
            chosen,
            log.warning,
            f"running {chosen}, the int8 model of {given}, on the CPU; --precision fp32 runs "
            f"{given} itself",
        )
    else:
        _say_once(given, chosen, log.info, f"running {chosen}, the int8 model of {given}")


def file_to_run(path: Path, engine: Engine) -> Path:
    """`chosen_file` for the model ``path`` with the ``engine`` settings (precision, device,
    backend), said by `say_chosen`."""
    chosen = chosen_file(path, engine.precision, engine.device, engine.backend)
    say_chosen(path, chosen, engine.precision)
    return chosen


def _say_once(given: Path, chosen: Path, say: Callable[[str], None], message: str) -> None:
    with _said_lock:
        if (given, chosen) in _said:
            return
        _said.add((given, chosen))
    say(message)


def _quantized_from_another(sibling: Path, path: Path) -> str | None:
    """Why the int8 ``sibling`` is not the int8 model of ``path``: its card records another
    fp32 sha256 than ``path``'s card (None when either card cannot say: their loader will)."""
    record = card_fields(sibling).get("quantization")
    made_from = record.get(FP32_SHA256) if isinstance(record, dict) else None
    sha256 = card_fields(path).get("sha256")
    if made_from is None or sha256 is None or made_from == sha256:
        return None
    return (
        f"{sibling} was quantized from another {path.name} (sha256 {made_from[:12]}, not "
        f"{sha256[:12]}); make it again with `detect export --model {path} --int8 CALIB_IMAGES "
        "--int8-val GT_JSON`, or remove it"
    )

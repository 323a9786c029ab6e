"""Resuming a run over images: ``OUT/manifest.jsonl`` lists the images that a run into OUT
(`detect predict`, `detect eval --model`) has finished, so that the same command run again with
the same OUT, after an interruption, skips them and still writes the outputs of a run never
interrupted (the same detections in the same order, the same AP to every digit).

The manifest is JSON Lines, only ever appended to (a run of millions of images rewrites nothing):

- its first line, ``{"settings": {...}}``: what decides the outputs, as JSON values by name
  (``model_sha256``, the model's sha256, and the detection options that applied);
- then one line per image finished, written and flushed right after the image's outputs:
  ``{"file_name": "<its path as given>", "sha256": "<hex of its bytes>", "results": [...], ...}``
  with its COCO results without their ``image_id`` (an image id is a position in a run) and
  whatever else its verb needs to rebuild its outputs without the model (predict: the name of its
  annotated copy).

An image that failed is not listed (a run again tries it again), nor one whose bytes cannot be
read for hashing. A last line cut short (the process killed while writing it) is dropped. A run
again takes an image as finished when its path as given and the sha256 of its bytes (read by this
process, `sha256_file`) are those of a line; its results then take this run's image id. A run
again with other settings is refused: a `UsageError` naming what changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from detect.errors import DataError, UsageError
from detect.runtime.sources import sha256_file

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class Resumed:
    """A run that an earlier one into ``out`` had started: ``finished`` of its ``total`` images
    were done then and are skipped."""

    finished: int
    total: int
    out: Path

    def line(self, verb: str) -> str:
        """``predict: 120 of 200 images finished by an earlier run in OUT; skipped``."""
        return (
            f"{verb}: {self.finished} of {self.total} images finished by an earlier run in "
            f"{self.out}; skipped"
        )


OnResume = Callable[[Resumed], None]
"""Told, before any image runs, how many images an earlier run finished (when some were)."""


def check_settings(
    out: Path, made_with: dict[str, Any], settings: dict[str, Any], spell: Callable[[str], str]
) -> None:
    """A `UsageError` when ``out`` was made with other settings than ``settings`` (both JSON
    values by name), naming each that differs as the user spells it (``spell``; the model as
    ``--model (its sha256)``): ``--score 0.5 -> 0.7``."""
    if made_with == settings:
        return
    names = {"model_sha256": "--model (its sha256)"}
    changes = ", ".join(
        f"{names.get(k) or spell(k)} {made_with.get(k)} -> {settings.get(k)}"
        for k in sorted(made_with.keys() | settings.keys())
        if made_with.get(k) != settings.get(k)
    )
    raise UsageError(
        f"{out} was made with other settings ({changes}); give another --out for these, or the "
        "same settings to resume it"
    )


def results_of(line: dict[str, Any], image_id: int) -> list[dict[str, Any]]:
    """A manifest line's COCO results as this run's: each with ``image_id`` first, as
    `detect.data.results.coco_result` makes them."""
    return [{"image_id": image_id, **result} for result in line["results"]]


class Manifest:
    """``OUT/manifest.jsonl`` (see the module docstring) of a run with ``settings``. Opening it
    reads what an earlier run finished and refuses other settings (`check_settings`, flags as
    ``spell`` names them); it writes nothing until the first `add`; `close` closes its file."""

    def __init__(self, out: Path, settings: dict[str, Any], spell: Callable[[str], str]) -> None:
        self.out = out
        self.path = out / MANIFEST
        self.settings = json.loads(json.dumps(settings))  # as read back
        self._lines: dict[tuple[str, str], dict[str, Any]] = {}
        self._whole = 0  # bytes of the whole lines; a line cut short after them is dropped
        self._file: IO[str] | None = None
        try:
            held = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DataError(
                f"{self.path}: cannot read it ({exc.strerror}); give another --out"
            ) from None
        self._whole = held.rfind(b"\n") + 1
        lines = held[: self._whole].splitlines()
        if not lines:
            return
        try:
            made_with = json.loads(lines[0])["settings"]
            for text in lines[1:]:
                line = json.loads(text)
                if not isinstance(line["results"], list):
                    raise TypeError("results is not a list")
                self._lines[line["file_name"], line["sha256"]] = line
        except (ValueError, KeyError, TypeError):
            raise DataError(
                f"{self.path}: not a manifest of finished images (unreadable); give another --out"
            ) from None
        check_settings(out, made_with, self.settings, spell)

    def finished(self, images: Mapping[int, Path]) -> dict[int, dict[str, Any]]:
        """The images (id -> file) that an earlier run finished: id -> its line. Only the files
        that a line names are read (to hash them); one that cannot be is not finished."""
        named = {name for name, _ in self._lines}
        found: dict[int, dict[str, Any]] = {}
        for image_id, path in images.items():
            if str(path) not in named:
                continue
            try:
                line = self._lines.get((str(path), sha256_file(path)))
            except OSError:
                continue
            if line is not None:
                found[image_id] = line
        return found

    def add(self, path: Path, results: list[dict[str, Any]], **more: Any) -> None:
        """Record ``path`` finished, with its COCO ``results`` (kept without ``image_id``) and
        ``more``: one line, appended and flushed. A file that cannot be read for hashing any
        more is not recorded (a run again runs it)."""
        try:
            digest = sha256_file(path)
        except OSError:
            return
        line = {
            "file_name": str(path),
            "sha256": digest,
            "results": [{k: v for k, v in r.items() if k != "image_id"} for r in results],
            **more,
        }
        self._write(json.dumps(line))

    def _write(self, text: str) -> None:
        if self._file is None:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                if self.path.exists():
                    os.truncate(self.path, self._whole)
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close)
            except OSError as exc:
                raise DataError(
                    f"{self.path}: cannot write it ({exc.strerror}); give a writable --out"
                ) from None
            if self._whole == 0:
                self._file.write(json.dumps({"settings": self.settings}) + "\n")
        self._file.write(text + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

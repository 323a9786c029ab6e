"""Progress of long work: a bar on a terminal, a plain line every few seconds elsewhere.

Library functions take a `StartProgress` (their ``progress`` argument; `silent` unless the
caller asks) and call it once per piece of work with what it is, how many items it has (None
when that cannot be known, as for a live stream) and their unit; they call ``update`` on the
`Progress` it returns as items are done and ``close`` (or leave its ``with`` block) at the end.
The commands pass `Progress` itself, which writes on stderr:

- on a terminal, a tqdm bar, replaced by the final line when the work is done;
- elsewhere (logs, CI, pipes), one line every ``interval`` seconds and the final line, never a
  carriage return::

    predict: 120/400 images, 9.8 images/s, ETA 0:00:29
    predict: 400/400 images, 9.7 images/s, took 0:00:41
    video: 120 frames, 9.8 frames/s

Work that ends in an exception gets no final line (the error says what happened).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from types import TracebackType
from typing import TextIO, TypeVar

from tqdm import tqdm

INTERVAL_S = 5.0
T = TypeVar("T")


def _duration(seconds: float) -> str:
    """``H:MM:SS`` of whole seconds."""
    return str(timedelta(seconds=round(seconds)))


def _rate(per_second: float) -> str:
    return f"{per_second:.1f}" if per_second >= 1 else f"{per_second:.2g}"


class Progress:
    """One piece of long work: ``total`` items of ``unit`` (plural, e.g. "images"; ``total``
    None: unknown), ``what`` naming it in each line. ``show`` False: nothing is written.
    ``stream``: where (stderr when None); a bar when it is a terminal, else plain lines every
    ``interval`` seconds (see the module docstring)."""

    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str,
        stream: TextIO | None = None,
        interval: float = INTERVAL_S,
        show: bool = True,
    ) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.show = show
        self.done = 0
        self.note_text = ""
        self.started = self._last_line = time.monotonic()
        self._closed = False
        self._bar: tqdm | None = None
        if show and self.stream.isatty():
            self._bar = tqdm(
                total=total,
                desc=what,
                unit=unit,
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )

    def update(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total  # the final line follows
        if self.show and not finished and now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self.line())

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, each counted as done when the next one is asked for (or at the end)."""
        for item in items:
            yield item
            self.update()

    def note(self, text: str) -> None:
        """A short figure shown after the counts (e.g. ``loss 0.123``), until replaced."""
        self.note_text = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def line(self, final: bool = False) -> str:
        """The plain line: items done (of the total), the rate, and the ETA or, when
        ``final``, the time it took."""
        elapsed = time.monotonic() - self.started
        per_second = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        parts = [f"{count} {self.unit}", f"{_rate(per_second)} {self.unit}/s"]
        if final:
            parts.append(f"took {_duration(elapsed)}")
        elif self.total is not None and per_second > 0 and self.done <= self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / per_second)}")
        if self.note_text:
            parts.append(self.note_text)
        return f"{self.what}: {', '.join(parts)}"

    def close(self, final_line: bool = True) -> None:
        """End the work: the bar goes, and the final line is written (unless not
        ``final_line``). Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        if self.show and final_line:
            self._write(self.line(final=True))

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(final_line=kind is None)


StartProgress = Callable[[str, int | None, str], Progress]
"""Starts the `Progress` of one piece of work: ``(what, total, unit)``. `Progress` itself
shows it; `silent` does not."""


def silent(what: str, total: int | None, unit: str) -> Progress:
    """A `Progress` that writes nothing: what library functions use unless told otherwise."""
    return Progress(what, total, unit, show=False)

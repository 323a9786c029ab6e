"""What makes a synthetic clip (`detect synth --video`) as hard as surveillance footage.

Each condition is off unless given; ``hard`` switches every one not given to its `HARD` value:

* ``perspective`` P: an object is ``1 + P * (2 * cy / height - 1)`` times its size, ``cy`` the
  row of its centre: ``1 - P`` at the top of the frame, ``1 + P`` at the bottom; objects lower in
  the frame are nearer and painted over those above them;
* ``occluders`` N: N static poles and trees (every third a tree) painted over the objects;
* ``crowd`` N: N more, smaller objects walking left or right (alternately) through the middle
  third of the frame's height, so they keep crossing and hiding one another;
* ``shake`` S: each frame, the whole picture moves by a random whole number of pixels in
  ``[-S, S]`` along each axis;
* ``night``: dim, bluish light and strong sensor noise;
* ``motion_blur`` E: each object smeared along its motion over E frames' worth of it (1: the
  shutter open the whole frame interval);
* ``quiet`` SHARE (not one of ``hard``'s): long quiet stretches between passers-by, about SHARE
  of the frames showing no object, under slowly drifting light and sensor noise
  (`detect.data.synth_video.passers`); no crowd then, and ``hard`` leaves it out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from detect.settings import FLAGS, Spelling, between, setting

HARD: dict[str, Any] = {
    "perspective": 0.5,
    "occluders": 3,
    "crowd": 8,
    "shake": 3,
    "night": True,
    "motion_blur": 1.5,
}
"""The value of each condition under ``hard`` (``--hard``) when it is not given."""

OFF: dict[str, Any] = {name: type(value)(0) for name, value in HARD.items()} | {"quiet": 0.0}
"""Every condition's value when it is off (not given, and not switched on by ``hard``)."""

MAX_OCCLUDERS = 10
MAX_CROWD = 100
MAX_SHAKE = 16
MAX_EXPOSURE = 5.0


def _hard(name: str) -> str:
    """``--help``'s default of a condition: off, and its value with --hard."""
    value = HARD[name]
    return f"off; {'on' if value is True else value} with --hard"


def _fraction(value: float | None) -> str | None:
    """The check of a fraction: 0 or more and less than 1 (None passes)."""
    return None if value is None or 0 <= value < 1 else "use 0 or more and less than 1"


@dataclass(frozen=True)
class ClipConditions:
    """The conditions a synthetic clip is filmed under (see the module docstring); None: not
    given (off, or its `HARD` value with ``hard``). `resolved` gives every one's value."""

    hard: bool = setting(
        False, "--video: hard footage: each condition below that is not given at its --hard value"
    )
    perspective: float | None = setting(
        None,
        "--video: objects 1-P times their size at the top of the frame, 1+P at the bottom",
        check=_fraction,
        metavar="P",
        shown_default=_hard("perspective"),
    )
    occluders: int | None = setting(
        None,
        "--video: static poles and trees (every third) painted over the objects",
        check=between(0, MAX_OCCLUDERS),
        metavar="N",
        shown_default=_hard("occluders"),
    )
    crowd: int | None = setting(
        None,
        "--video: more, smaller objects walking left or right through the middle of the frame",
        check=between(0, MAX_CROWD),
        metavar="N",
        shown_default=_hard("crowd"),
    )
    shake: int | None = setting(
        None,
        "--video: camera shake: the picture moves up to this many pixels each frame",
        check=between(0, MAX_SHAKE),
        metavar="PIXELS",
        shown_default=_hard("shake"),
    )
    night: bool | None = setting(
        None,
        "--video: night: low, bluish light and strong sensor noise",
        shown_default=_hard("night"),
    )
    motion_blur: float | None = setting(
        None,
        "--video: objects smeared along their motion over this many frames of it",
        check=between(0, MAX_EXPOSURE),
        metavar="FRAMES",
        shown_default=_hard("motion_blur"),
    )
    quiet: float | None = setting(
        None,
        "--video: about this share of the frames empty: passers-by one after another, with "
        "drifting light and sensor noise",
        check=_fraction,
        metavar="SHARE",
        shown_default="off; not part of --hard",
    )

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks that involve several conditions: `UsageError` in ``spell``'s spelling."""
        spell = spell or Spelling(ClipConditions, FLAGS)
        if self.quiet and self.crowd:
            raise spell.problem(
                f"{spell('quiet')} {self.quiet:g} with {spell('crowd')} {self.crowd}: a crowd "
                f"walks through every frame; give one of them"
            )

    def resolved(self) -> ClipConditions:
        """Every condition's value: the one given, else its `HARD` value with ``hard`` (but no
        crowd with ``quiet``), else off (`OFF`)."""
        values = {}
        for name, off in OFF.items():
            given = getattr(self, name)
            if given is not None:
                values[name] = given
            elif self.hard and name in HARD and not (name == "crowd" and self.quiet):
                values[name] = HARD[name]
            else:
                values[name] = off
        return dataclasses.replace(self, **values)

    def given(self) -> list[str]:
        """The names of the conditions given (``hard`` included)."""
        names = [name for name in OFF if getattr(self, name) is not None]
        return ["hard", *names] if self.hard else names

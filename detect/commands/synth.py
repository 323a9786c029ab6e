"""`detect synth` (its flags and run still live in `detect.data.synth`)."""

from detect.data.synth import add_arguments, run

__all__ = ["add_arguments", "run"]

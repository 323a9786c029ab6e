"""`detect parity` (its flags and run still live in `detect.parity`)."""

from detect.parity import add_arguments, run

__all__ = ["add_arguments", "run"]

"""`detect eval` (its flags and run still live in `detect.evaluate`)."""

from detect.evaluate import add_arguments, run

__all__ = ["add_arguments", "run"]

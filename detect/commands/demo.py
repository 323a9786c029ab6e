"""`detect demo` (its flags and run still live in `detect.demo`)."""

from detect.demo import add_arguments, run

__all__ = ["add_arguments", "run"]

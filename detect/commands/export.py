"""`detect export` (its flags and run still live in `detect.export`)."""

from detect.export import add_arguments, run

__all__ = ["add_arguments", "run"]

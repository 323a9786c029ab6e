"""`detect client` (its flags and run still live in `detect.client`)."""

from detect.client import add_arguments, run

__all__ = ["add_arguments", "run"]

"""`detect predict` (its flags and run still live in `detect.predict`)."""

from detect.predict import add_arguments, run

__all__ = ["add_arguments", "run"]

"""`detect import` (its flags and run still live in `detect.data.importers`)."""

from detect.data.importers import add_arguments, run

__all__ = ["add_arguments", "run"]

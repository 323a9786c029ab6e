"""`detect split` (its flags and run still live in `detect.data.split`)."""

from detect.data.split import add_arguments, run

__all__ = ["add_arguments", "run"]

"""`detect bench` (its flags and run still live in `detect.bench`)."""

from detect.bench import add_arguments, run

__all__ = ["add_arguments", "run"]

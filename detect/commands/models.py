"""`detect models` (its flags and run still live in `detect.models.zoo`)."""

from detect.models.zoo import add_arguments, run

__all__ = ["add_arguments", "run"]

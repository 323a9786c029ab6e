"""`detect train` (its flags and run still live in `detect.train_config`)."""

from detect.train_config import add_arguments, run

__all__ = ["add_arguments", "run"]

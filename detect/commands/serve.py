"""`detect serve` (its flags and run still live in `server.app`)."""

from server.app import add_arguments, run

__all__ = ["add_arguments", "run"]

"""User-fixable errors. The CLI prints their message (no traceback) and exits with code 1, or 2
for a `UsageError` (a bad flag or file key value, an unknown key)."""

from pathlib import Path


class DetectError(Exception):
    """Base class: the message names the file or field at fault and how to fix it."""


class DataError(DetectError):
    """A dataset, annotation file or image that cannot be used as given."""


class ConfigError(DetectError):
    """A flag or configuration value that is out of range or inconsistent."""


class UsageError(ConfigError):
    """Flags' or a file's keys' values the settings checks refuse, or unknown keys: a usage error
    (exit code 2, as argparse's own). ``problems``: one line each (``camera 'gate': every: 'two':
    use a whole number``); the message is the line when there is one, else ``WHERE: N problems``
    and the lines below it, indented (without their ``WHERE:``)."""

    def __init__(self, *problems: str, where: str = "") -> None:
        self.problems = problems
        message = problems[0] if len(problems) == 1 else f"{where}: {len(problems)} problems"
        if len(problems) > 1:
            message += "".join(f"\n  {p.removeprefix(f'{where}: ')}" for p in problems)
        super().__init__(message)


class CheckpointError(DetectError):
    """A checkpoint or weights file that is missing, corrupt or of another model."""


class ModelError(DetectError):
    """An exported model (.onnx) or its model card that is missing, corrupt or mismatched."""


class InputError(DetectError):
    """One input (an image file, an image's bytes) that cannot be used: a run over many inputs
    reports it and goes on with the others."""


def install_extra(extra: str) -> str:
    """How to install the optional dependencies ``extra`` (a pyproject.toml extra) into this
    installation: detect is installed from its checkout, not from PyPI, so the command names the
    checkout when this is one (an editable install), else says where to run it."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return f"pip install '{checkout}[{extra}]'"
    return f"pip install '.[{extra}]' (in the detect checkout)"

"""User-fixable errors. The CLI prints their message (no traceback) and exits with code 1."""


class DetectError(Exception):
    """Base class: the message names the file or field at fault and how to fix it."""


class DataError(DetectError):
    """A dataset, annotation file or image that cannot be used as given."""


class ConfigError(DetectError):
    """A flag or configuration value that is out of range or inconsistent."""


class CheckpointError(DetectError):
    """A checkpoint or weights file that is missing, corrupt or of another model."""


class ModelError(DetectError):
    """An exported model (.onnx) or its model card that is missing, corrupt or mismatched."""


class InputError(DetectError):
    """One input (an image file, an image's bytes) that cannot be used: a run over many inputs
    reports it and goes on with the others."""

"""What every verb's configuration shares: building itself from parsed flags, and the flags that
several verbs have (device, connection to a server, the detection options).

Each verb's config dataclass registers its own flags (``add_arguments``) and builds itself from
the parsed namespace (``from_args``, through `from_flags`); `detect.cli` only wires verbs. No
torch, no ONNX Runtime, no gRPC here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from detect.errors import ConfigError
from detect.structures import DetectOptions, options_from_flags

T = TypeVar("T")


def from_flags(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """``cls(...)`` from the flags named as its fields (the others keep their defaults), with
    ``overrides`` for fields a flag does not give as is."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def add_device_flag(p: argparse.ArgumentParser, help_text: str = "ONNX Runtime device") -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help=help_text)


def add_backend_flag(p: argparse.ArgumentParser) -> None:
    """``--backend``: the engine that runs an exported model (`detect.runtime.engines`)."""
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "openvino"],
        help="engine for the exported model (auto: OpenVINO on the CPU when installed, else "
        "ONNX Runtime)",
    )


def add_agnostic_nms_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agnostic-nms",
        action=argparse.BooleanOptionalAction,
        help="suppress overlapping boxes across classes, keeping the highest-scoring one "
        "(default: the model card's)",
    )


def add_connection_flags(p: argparse.ArgumentParser) -> None:
    """``--tls``, ``--ca``, ``--token-file``, ``--model-name`` and ``--model-version``: how a
    verb reaches a server and which of its models it asks for."""
    p.add_argument("--tls", action="store_true", help="connect with TLS (system CA roots)")
    p.add_argument("--ca", type=Path, help="CA certificate (PEM) to verify the server; implies TLS")
    p.add_argument("--token-file", type=Path, help="bearer token (first line of the file)")
    p.add_argument(
        "--model-name", default="", help="served model to ask for (default: the server's default)"
    )
    p.add_argument(
        "--model-version", default="", help="its version (default: its newest served one)"
    )


@dataclass(frozen=True)
class Connection:
    """How a verb reaches a server: TLS (``ca``: the PEM certificate that verifies the server;
    implies TLS), a bearer ``token``, and the served ``model`` and ``model_version`` to ask for
    (empty: the server's default). The keywords of `detect.client.DetectorClient`."""

    tls: bool = False
    ca: Path | None = None
    token: str | None = None
    model: str = ""
    model_version: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Connection:
        """From ``--tls``, ``--ca``, ``--token-file`` (its first line is the token),
        ``--model-name`` and ``--model-version``."""
        return cls(args.tls, args.ca, token(args), args.model_name, args.model_version)


def token(args: argparse.Namespace) -> str | None:
    """The bearer token of ``--token-file`` (its first line), or None."""
    if getattr(args, "token_file", None) is None:
        return None
    from server.auth import read_tokens

    return read_tokens(args.token_file)[0]


def detect_options(args: argparse.Namespace, **fixed: Any) -> DetectOptions:
    """`DetectOptions` of the detection flags a verb has (``--score``, ``--max-detections``,
    ``--classes``, ``--agnostic-nms``, ``--polygon-tolerance``, ``--no-polygons``) and
    ``fixed`` values; a bad value is a `ConfigError` naming its flag."""
    values: dict[str, Any] = {
        "score_threshold": getattr(args, "score", None),
        "max_detections": getattr(args, "max_detections", None),
        "classes": tuple(getattr(args, "classes", None) or ()),
        "agnostic_nms": getattr(args, "agnostic_nms", None),
    }
    if getattr(args, "polygon_tolerance", None) is not None:
        values["polygon_tolerance"] = args.polygon_tolerance
    if getattr(args, "no_polygons", False):
        values["polygons"] = False
    return options_from_flags(**{**values, **fixed})


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; ConfigError names the file when it is missing or malformed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}; check the path") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config {path} must be a mapping of key: value lines")
    return values

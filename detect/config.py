"""The settings several verbs share, each declared once (`detect.settings`): where a model runs
(`Engine`: device, backend), on how many machines (`Cluster`: Ray), how a verb reaches a server
(`Connection`) and the detection options (`DetectSettings`); and reading a YAML file.

No torch, no ONNX Runtime, no gRPC here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detect.errors import ConfigError, UsageError
from detect.settings import Check, Spelling, at_least, nested, pem_file, setting
from detect.structures import DetectOptions, OptionError

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "onnxruntime", "openvino")
PRECISIONS = ("auto", "fp32", "int8")


SERVER_HELP = (
    "HOST:PORT of a running `detect serve`; several: HOST:PORT,HOST:PORT or dns:///NAME:PORT"
)
"""The help of every ``--server`` (its check: `host_port`)."""


def host_port(address: str | None) -> str | None:
    """The check of a ``--server`` address: ``HOST:PORT`` (``[::1]:PORT`` for IPv6), several
    of them comma-separated (``A:50051,B:50051``: the calls spread over them, `detect.client`),
    or a gRPC target with its scheme (``dns:///NAME:PORT``, ``ipv4:...``, ``unix:...``). Without a
    port gRPC would dial 443, and an ``http://`` URL is no gRPC target."""
    if address is None:
        return None
    if address.startswith(("http://", "https://")):
        return "give HOST:PORT without http:// (gRPC is not HTTP/1)"
    if address.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
        return None
    for one in address.split(","):
        host, colon, port = one.strip().rpartition(":")
        if not (colon and host and port.isdecimal() and 0 < int(port) < 65536):
            if "," in address:
                return f"give HOST:PORT,HOST:PORT,... ({one.strip() or 'an empty one'} is not)"
            return "give HOST:PORT, e.g. 127.0.0.1:50051"
    return None


def read_tokens(path: Path) -> list[str]:
    """The bearer tokens in ``path``: one a line, blank lines and lines starting with ``#``
    ignored; `ConfigError` naming the file when it cannot be read or holds none."""
    fix = token_file(path)
    if fix is not None:
        raise ConfigError(f"{path}: {fix}")
    return _token_lines(path.read_text(encoding="utf-8"))


def token_file(path: Path | None) -> str | None:
    """The check of a token file (``--token-file``, ``--auth-token-file``): readable UTF-8 text
    holding a token."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    except UnicodeDecodeError:
        return "cannot read it (not UTF-8 text)"
    return None if _token_lines(text) else "holds no token; write one token per line"


def _token_lines(text: str) -> list[str]:
    return [t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")]


@dataclass(frozen=True)
class Engine:
    """Where and on what an exported model runs (`detect.runtime.backend.open_backend`)."""

    device: str = setting("auto", "where the exported model runs", choices=DEVICES)
    backend: str = setting(
        "auto",
        "engine for the exported model (auto: OpenVINO on the CPU when installed, else "
        "ONNX Runtime)",
        choices=BACKENDS,
    )
    threads: int = setting(
        0,
        "intra-op threads of the model on the CPU (0: the engine's default, one per core; "
        "on Ray, each worker's share of the cluster's CPUs)",
        check=at_least(0),
    )
    precision: str = setting(
        "auto",
        "which file of NAME.onnx runs (auto: its int8 model NAME.int8.onnx when that is beside "
        "it and the model runs on the CPU; fp32: NAME.onnx itself; int8: NAME.int8.onnx)",
        choices=PRECISIONS,
    )


def exact_engine(defaults: dict[str, Any] | None = None, skip: tuple[str, ...] = ()) -> Any:
    """The `Engine` field of a verb that runs exactly the model file it is given (predict,
    eval, parity: they measure that file): no ``precision`` setting, and its value fp32 (the
    file given); ``defaults`` and ``skip`` as `nested`'s."""
    return nested(
        Engine, defaults={**(defaults or {}), "precision": "fp32"}, skip=("precision", *skip)
    )


LOCAL_RAY = "local"
"""``--ray`` given without an address: start a Ray on this machine (Ray's own spelling)."""


def ray_address(address: str | None) -> str | None:
    """The check of ``--ray ADDRESS``: ``local``, ``auto`` (the cluster this machine is part of),
    ``HOST:PORT`` (its head's GCS port) or ``ray://HOST:PORT`` (Ray Client)."""
    if address is None or address in (LOCAL_RAY, "auto"):
        return None
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if colon and host and "/" not in host and port.isdecimal() and 0 < int(port) < 65536:
        return None
    return (
        "give auto, HOST:PORT or ray://HOST:PORT of a Ray cluster (--ray alone, after the "
        "images, starts a Ray on this machine)"
    )


@dataclass(frozen=True)
class Cluster:
    """Where an offline verb runs its model: in this process (``ray`` None), or on Ray
    (`detect.cluster`): ``ray`` `LOCAL_RAY` starts one on this machine, another address joins a
    running cluster; ``workers`` actors each hold one backend (None: one per free CPU, or per GPU
    with ``--device cuda``), each given ``gpus_per_worker`` GPUs (None: 1 with ``--device cuda``,
    else 0)."""

    ray: str | None = setting(
        None,
        "run on Ray: alone, a Ray started on this machine; auto, HOST:PORT or ray://HOST:PORT "
        "joins that cluster",
        check=ray_address,
        const=LOCAL_RAY,
        metavar="ADDRESS",
    )
    workers: int | None = setting(
        None,
        "--ray: model workers, each holding one model (default: one per free CPU, or per GPU "
        "with --device cuda)",
        check=at_least(1),
    )
    gpus_per_worker: float | None = setting(
        None,
        "--ray: GPUs each worker holds, a fraction shares one (default: 1 with --device cuda, "
        "else 0)",
        check=at_least(0),
    )

    def validate(self, spell: Spelling) -> None:
        """``--workers`` and ``--gpus-per-worker`` need ``--ray``."""
        for name in ("workers", "gpus_per_worker"):
            if self.ray is None and getattr(self, name) is not None:
                raise spell.problem(f"{spell(name)} is for {spell('ray')}; add it or leave it out")


@dataclass(frozen=True)
class Connection:
    """How a verb reaches a server: TLS (``ca``: the PEM certificate that verifies the server;
    implies TLS), a bearer token (the first line of ``token_file``), and the served model and
    version to ask for (empty: the server's default)."""

    tls: bool = setting(False, "connect with TLS (system CA roots)")
    ca: Path | None = setting(
        None, "CA certificate (PEM) to verify the server; implies TLS", check=pem_file
    )
    token_file: Path | None = setting(
        None, "bearer token (first line of the file)", check=token_file
    )
    model_name: str = setting(
        "", "served model to ask for (default: the server's default)", key="model_name"
    )
    model_version: str = setting("", "its version (default: its newest served one)")

    def client_kwargs(self) -> dict[str, Any]:
        """The keywords of `detect.client.DetectorClient`: tls, ca, token, model, model_version."""
        token = None
        if self.token_file is not None:
            token = read_tokens(self.token_file)[0]
        return {
            "tls": self.tls,
            "ca": self.ca,
            "token": token,
            "model": self.model_name,
            "model_version": self.model_version,
        }


def _option_check(name: str) -> Check:
    """`DetectOptions`' own check of its field ``name``."""

    def check(value: Any) -> str | None:
        try:
            DetectOptions(**{name: value})
        except OptionError as exc:
            return exc.fix
        return None

    return check


def _classes(value: Any, root: Path, what: str) -> tuple[str, ...]:
    """``--classes circle,ring`` (one comma-separated text, so that it takes no image after it)
    or a file's list of class names or category ids."""
    shown = f"{what} {value}" if what.startswith("-") else f"{what}: {value!r}"
    if isinstance(value, str | int) and not isinstance(value, bool):
        names = str(value).split(",")
    elif isinstance(value, list | tuple) and not any(
        isinstance(v, bool | dict | list) for v in value
    ):
        names = [str(v) for v in value]
    else:
        raise ConfigError(f"{shown}: use a list of class names or category ids")
    names = [name.strip() for name in names]
    if not all(names):
        raise ConfigError(
            f"{shown}: give class names or category ids separated by commas, e.g. circle,ring"
        )
    return tuple(names)


@dataclass(frozen=True)
class DetectSettings:
    """The detection options a verb takes (`DetectOptions` by their flag and key names)."""

    score: float | None = setting(
        None,
        "score threshold (default: the model card's)",
        check=_option_check("score_threshold"),
    )
    max_detections: int | None = setting(
        None, "keep at most this many detections per image", check=_option_check("max_detections")
    )
    classes: tuple[str, ...] = setting(
        (),
        "keep only these class names or category ids, comma-separated (circle,ring)",
        parse=_classes,
        metavar="NAMES",
    )
    agnostic_nms: bool | None = setting(
        None,
        "suppress overlapping boxes across classes, keeping the highest-scoring one "
        "(default: the model card's)",
    )
    polygons: bool = setting(True, "trace masks to polygons (--no-polygons: boxes only)")
    polygon_tolerance: float = setting(
        1.0, "polygon simplification in pixels", check=_option_check("polygon_tolerance")
    )

    def options(self) -> DetectOptions:
        return DetectOptions(
            score_threshold=self.score,
            max_detections=self.max_detections,
            classes=self.classes,
            agnostic_nms=self.agnostic_nms,
            polygons=self.polygons,
            polygon_tolerance=self.polygon_tolerance,
        )


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; `UsageError` names the file when it is missing or malformed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}; check the path") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"config {path} is not valid YAML: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UsageError(f"config {path} must be a mapping of key: value lines")
    return values

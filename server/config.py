"""`ServeConfig`: every setting of `detect serve`, checked before the server starts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from detect.config import Engine, from_namespace
from detect.errors import ConfigError
from detect.runtime.engines import DEVICES, ENGINES
from detect.runtime.image import DEFAULT_MAX_PIXELS
from detect.settings import add_flags

MIB = 1024 * 1024


@dataclass
class ServeConfig:
    """Settings of the gRPC detection server (flags of `detect serve`).

    ``model`` (one ONNX file) or ``models`` (a model repository, `server.repository`) is served;
    ``default_model`` answers requests that name none, ``versions`` is how many of each model's
    newest versions are served, and every ``poll_s`` seconds the files are looked at again (0:
    only on the ReloadModels RPC). ``port`` and ``metrics_port`` 0 pick free ports (the chosen
    ones are printed). TLS needs both
    ``tls_cert`` and ``tls_key`` (PEM); ``tls_client_ca`` additionally requires client
    certificates signed by that CA (mutual TLS). ``grace_s`` is how long SIGTERM/SIGINT wait for
    requests in flight before cancelling them. ``warmup_runs`` model runs happen before health
    turns SERVING.
    """

    model: Path | None = None
    models: Path | None = None
    default_model: str = ""
    versions: int = 1
    poll_s: float = 2.0
    host: str = "127.0.0.1"
    port: int = 50051
    device: str = "auto"
    backend: str = "auto"
    max_batch: int = 8
    batch_timeout_ms: float = 5.0
    max_queue: int = 256
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token_file: Path | None = None
    max_message_mb: float = 16.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    metrics_port: int = 9100
    grace_s: float = 10.0
    warmup_runs: int = 1

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """`detect serve`'s flags."""
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--model", type=Path, help="exported NAME.onnx (card beside it)")
        source.add_argument(
            "--models",
            type=Path,
            metavar="DIR",
            help="model repository: DIR/NAME/VERSION/model.onnx with its card model.json",
        )
        p.add_argument(
            "--default-model",
            default="",
            metavar="NAME",
            help="model for requests that name none (default: the first by name)",
        )
        p.add_argument(
            "--versions", type=int, default=1, help="newest versions of each model to serve"
        )
        p.add_argument(
            "--poll",
            dest="poll_s",
            metavar="SECONDS",
            type=float,
            default=2.0,
            help="look for new or changed model files this often (0: only on ReloadModels)",
        )
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
        p.add_argument("--port", type=int, default=50051, help="gRPC port (0: any free port)")
        add_flags(p, Engine)
        p.add_argument("--max-batch", type=int, default=8, help="most images per model call")
        p.add_argument(
            "--batch-timeout-ms", type=float, default=5.0, help="longest wait for a batch to fill"
        )
        p.add_argument(
            "--max-queue", type=int, default=256, help="waiting requests before RESOURCE_EXHAUSTED"
        )
        p.add_argument(
            "--tls-cert", type=Path, help="server certificate chain (PEM); needs --tls-key"
        )
        p.add_argument("--tls-key", type=Path, help="server private key (PEM)")
        p.add_argument(
            "--tls-client-ca", type=Path, help="require client certificates from this CA"
        )
        p.add_argument(
            "--auth-token-file",
            type=Path,
            help="require 'authorization: Bearer T', T a line of this",
        )
        p.add_argument("--max-message-mb", type=float, default=16.0, help="largest request, MiB")
        p.add_argument(
            "--max-pixels",
            type=int,
            default=50_000_000,
            help="refuse larger images (width * height)",
        )
        p.add_argument(
            "--metrics-port", type=int, default=9100, help="Prometheus /metrics port (0: any free)"
        )
        p.add_argument(
            "--grace",
            dest="grace_s",
            metavar="GRACE",
            type=float,
            default=10.0,
            help="seconds to drain calls on SIGTERM",
        )
        p.add_argument(
            "--warmup-runs", type=int, default=1, help="model runs before health reports SERVING"
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        return from_namespace(cls, args)

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * MIB)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first flag that is out of range or inconsistent."""
        if (self.model is None) == (self.models is None):
            raise ConfigError("serve one model file (--model) or a model repository (--models)")
        if self.models is not None and not self.models.is_dir():
            raise ConfigError(
                f"--models {self.models}: no such folder; it holds NAME/VERSION/model.onnx"
            )
        if self.versions < 1:
            raise ConfigError(f"--versions {self.versions}: use 1 or more")
        if not self.poll_s >= 0:
            raise ConfigError(f"--poll {self.poll_s}: use 0 (off) or more seconds")
        if self.device not in DEVICES:
            raise ConfigError(f"--device {self.device}: use one of {', '.join(DEVICES)}")
        if self.backend not in ENGINES:
            raise ConfigError(f"--backend {self.backend}: use one of {', '.join(ENGINES)}")
        for flag, value in (("--port", self.port), ("--metrics-port", self.metrics_port)):
            if not 0 <= value <= 65535:
                raise ConfigError(f"{flag} {value}: use 0 (any free port) to 65535")
        if self.metrics_port and self.metrics_port == self.port:
            raise ConfigError(f"--metrics-port {self.metrics_port} is also --port; pick another")
        if self.max_batch < 1:
            raise ConfigError(f"--max-batch {self.max_batch}: use 1 or more")
        if not self.batch_timeout_ms >= 0:
            raise ConfigError(f"--batch-timeout-ms {self.batch_timeout_ms}: use 0 or more")
        if self.max_queue < 1:
            raise ConfigError(f"--max-queue {self.max_queue}: use 1 or more")
        if not 0 < self.max_message_mb <= 2047:
            raise ConfigError(f"--max-message-mb {self.max_message_mb}: use more than 0, ≤ 2047")
        if self.max_pixels < 1:
            raise ConfigError(f"--max-pixels {self.max_pixels}: use 1 or more")
        if not self.grace_s >= 0:
            raise ConfigError(f"--grace {self.grace_s}: use 0 or more seconds")
        if self.warmup_runs < 0:
            raise ConfigError(f"--warmup-runs {self.warmup_runs}: use 0 or more")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together: give both PEM files")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS)")
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--tls-client-ca", self.tls_client_ca),
            ("--auth-token-file", self.auth_token_file),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"{flag} {path}: no such file")

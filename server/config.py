"""`ServeConfig`: every setting of `detect serve`, each declared once (`detect.settings`), and
checked before the server starts."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from detect.config import Engine, token_file
from detect.runtime.image import DEFAULT_MAX_PIXELS
from detect.settings import FLAGS, Spelling, at_least, nested, pem_file, setting

MIB = 1024 * 1024


def _folder(path: Path | None) -> str | None:
    if path is None or path.is_dir():
        return None
    return "no such folder; it holds NAME/VERSION/model.onnx"


def _port(port: int) -> str | None:
    return None if 0 <= port <= 65535 else "use 0 (any free port) to 65535"


def _seconds(value: float) -> str | None:
    return None if value >= 0 else "use 0 or more seconds"


def _message_mb(value: float) -> str | None:
    return None if 0 < value <= 2047 else "use more than 0, ≤ 2047"


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the gRPC detection server (the flags of `detect serve`).

    ``model`` (one ONNX file) or ``models`` (a model repository, `server.repository`) is served;
    ``default_model`` answers requests that name none, ``versions`` is how many of each model's
    newest versions are served, and every ``poll_s`` seconds the files are looked at again (0:
    only on the ReloadModels RPC). ``port`` and ``metrics_port`` 0 pick free ports (the chosen
    ones are reported). TLS needs both ``tls_cert`` and ``tls_key`` (PEM); ``tls_client_ca``
    additionally requires client certificates signed by that CA (mutual TLS). ``grace_s`` is how
    long SIGTERM/SIGINT wait for requests in flight before cancelling them. ``warmup_runs`` model
    runs happen before health turns SERVING.
    """

    model: Path | None = setting(None, "exported NAME.onnx (card beside it)", group="source")
    models: Path | None = setting(
        None,
        "model repository: DIR/NAME/VERSION/model.onnx with its card model.json",
        check=_folder,
        key="repository",  # not "models": one letter from "model", a typo the file check misses
        metavar="DIR",
        group="source",
    )
    default_model: str = setting(
        "",
        "model for requests that name none (default: the first by name)",
        metavar="NAME",
    )
    versions: int = setting(1, "newest versions of each model to serve", check=at_least(1))
    poll_s: float = setting(
        2.0,
        "look for new or changed model files this often (0: only on ReloadModels)",
        check=lambda v: None if v >= 0 else "use 0 (off) or more seconds",
        flag="--poll",
        metavar="SECONDS",
    )
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: all)")
    port: int = setting(50051, "gRPC port (0: any free port)", check=_port)
    engine: Engine = nested(Engine)
    max_batch: int = setting(8, "most images per model call", check=at_least(1))
    batch_timeout_ms: float = setting(5.0, "longest wait for a batch to fill", check=at_least(0))
    max_queue: int = setting(256, "waiting requests before RESOURCE_EXHAUSTED", check=at_least(1))
    tls_cert: Path | None = setting(
        None, "server certificate chain (PEM); needs --tls-key", check=pem_file
    )
    tls_key: Path | None = setting(None, "server private key (PEM)", check=pem_file)
    tls_client_ca: Path | None = setting(
        None, "require client certificates from this CA", check=pem_file
    )
    auth_token_file: Path | None = setting(
        None, "require 'authorization: Bearer T', T a line of this", check=token_file
    )
    max_message_mb: float = setting(16.0, "largest request, MiB", check=_message_mb)
    max_pixels: int = setting(
        DEFAULT_MAX_PIXELS, "refuse larger images (width * height)", check=at_least(1)
    )
    metrics_port: int = setting(9100, "Prometheus /metrics port (0: any free)", check=_port)
    grace_s: float = setting(
        10.0, "seconds to drain calls on SIGTERM", check=_seconds, flag="--grace", metavar="GRACE"
    )
    warmup_runs: int = setting(1, "model runs before health reports SERVING", check=at_least(0))

    @property
    def device(self) -> str:
        """``engine.device``: where the models run."""
        return self.engine.device

    @property
    def backend(self) -> str:
        """``engine.backend``: what runs them."""
        return self.engine.backend

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * MIB)

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks that involve several settings, and the files named: `ConfigError` in
        ``spell``'s spelling (the pairs first, so that a lone ``--tls-cert`` says it needs
        ``--tls-key`` before whether its file exists)."""
        spell = spell or Spelling(ServeConfig, FLAGS)
        if (self.model is None) == (self.models is None):
            raise spell.problem(
                f"serve one model file ({spell('model')}) or a model repository ({spell('models')})"
            )
        if self.metrics_port and self.metrics_port == self.port:
            raise spell.problem(
                f"{spell('metrics_port')} {self.metrics_port} is also {spell('port')}; pick another"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise spell.problem(
                f"{spell('tls_cert')} and {spell('tls_key')} go together: give both PEM files"
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise spell.problem(
                f"{spell('tls_client_ca')} needs {spell('tls_cert')} and {spell('tls_key')} "
                "(mutual TLS)"
            )
        for name in ("tls_cert", "tls_key", "tls_client_ca", "auth_token_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise spell.error(name, path, "no such file")
        if self.tls_cert is not None and self.tls_key is not None:
            try:  # gRPC would only say that it failed to bind the port
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(self.tls_cert, self.tls_key, password=lambda: b"")
            except ssl.SSLError as exc:
                raise spell.error(
                    "tls_key",
                    self.tls_key,
                    f"does not go with {spell('tls_cert')} {self.tls_cert} "
                    f"({exc.reason}); give the certificate's own unencrypted key",
                ) from None

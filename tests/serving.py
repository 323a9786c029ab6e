"""A real `detect serve` process on 127.0.0.1 for the tests, with its ports read from stdout; the
model repositories and certificates such servers are started with."""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from detect.local_server import LocalServer


def start_server(
    model: Path,
    *args: str,
    wait_ready: bool = True,
    python: Path | str = sys.executable,
    cwd: Path | None = None,
) -> LocalServer:
    """``detect serve --model MODEL --port 0 --metrics-port 0 ARGS``, its ports read."""
    return LocalServer(model, *args, python=python, cwd=cwd).start(wait_ready)


def add_version(repository: Path, name: str, version: int, model: Path) -> Path:
    """Copy ``model`` and its card into ``repository/name/version/`` (a model repository's
    layout, for ``detect serve --models``)."""
    folder = repository / name / str(version)
    folder.mkdir(parents=True)
    shutil.copy(model.with_suffix(".json"), folder / "model.json")
    shutil.copy(model, folder / "model.onnx")
    return folder


def metric_value(text: str, metric: str, **labels: str) -> float:
    """The value of one Prometheus sample (0.0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample != metric:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def certificate(
    folder: Path, name: str, issuer: tuple[Path, Path] | None = None
) -> tuple[Path, Path]:
    """``folder/name.pem`` and ``folder/name.key`` (P-256, valid for a day) for CN "localhost
    NAME" with the subject alternative names localhost and 127.0.0.1: self-signed (a CA) or
    signed by ``issuer`` (its PEM certificate and key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"localhost {name}")])
    issuer_name, signing_key = subject, key
    if issuer is not None:
        issuer_name = x509.load_pem_x509_certificate(issuer[0].read_bytes()).subject
        signing_key = serialization.load_pem_private_key(issuer[1].read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path

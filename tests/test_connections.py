"""How every verb that talks to a server reaches it, end to end: the real CLI (`detect client`,
`video`, `eval`, `bench`, `watch`) in a subprocess against real `detect serve` processes on
127.0.0.1 — one with TLS, a bearer token and a model repository, one with mutual TLS — with and
without the connection flags (and, for `detect watch`, the site file's keys); and
`detect client --health`, the Docker image's health check, against a serving and a stopped
server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import run_detect
from serving import add_version, certificate, metric_value, start_server

from detect.local_server import LocalServer

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo.onnx"
VERBS = ("client", "video", "eval", "bench", "watch")
FRAMES = 5  # --max-frames of `detect video` and `detect watch`
TOKEN = "s3cret"


@dataclass(frozen=True)
class Inputs:
    """What the verbs send: two images, a ground truth of those two, an 8-frame clip."""

    images: list[Path]
    image_folder: Path
    gt: Path
    clip: Path


@dataclass(frozen=True)
class Secure:
    """A server with TLS (``cert`` verifies it), token auth (``token`` holds a valid one) and a
    repository serving ``shapes`` 1 (the default model) and ``demo`` 1 and 2."""

    server: LocalServer
    cert: Path
    token: Path


@pytest.fixture(scope="module")
def inputs(shapes_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    folder = tmp_path_factory.mktemp("inputs")
    coco = json.loads((shapes_small / "train.json").read_text())
    coco["images"] = coco["images"][:2]
    kept = {image["id"] for image in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    gt = folder / "two.json"
    gt.write_text(json.dumps(coco))
    clip = folder / "clip.mp4"
    made = run_detect(
        *("synth", "--video", str(clip), "--frames", "8", "--video-size", "160x120"),
        *("--seed", "4"),
    )
    assert made.returncode == 0, made.stderr
    images = [shapes_small / image["file_name"] for image in coco["images"]]
    return Inputs(images, shapes_small, gt, clip)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Secure:
    folder = tmp_path_factory.mktemp("secure")
    repository = folder / "models"
    for name, version in (("shapes", 1), ("demo", 1), ("demo", 2)):
        add_version(repository, name, version, DEMO)
    cert, key = certificate(folder, "server")
    tokens = folder / "tokens.txt"
    tokens.write_text(f"{TOKEN}\n")
    token = folder / "token.txt"
    token.write_text(f"{TOKEN}\n")
    server = start_server(
        repository,
        *("--default-model", "shapes", "--versions", "2"),
        *("--tls-cert", str(cert), "--tls-key", str(key), "--auth-token-file", str(tokens)),
    )
    yield Secure(server, cert, token)
    assert server.stop() == 0


def _site(folder: Path, inputs: Inputs, **keys: object) -> Path:
    """A one-camera site file (camera ``cam1``: the clip, its JSONL in ``folder``) with ``keys``."""
    camera = {"name": "cam1", "source": str(inputs.clip), "jsonl": str(folder / "cam1.jsonl")}
    site = folder / "site.yaml"
    site.write_text(yaml.safe_dump({**keys, "cameras": [camera]}))
    return site


def _command(verb: str, address: str, inputs: Inputs, out: Path) -> list[str]:
    """A tiny run of ``verb`` against the server at ``address``, its outputs under ``out``."""
    server = ("--server", address)
    if verb == "client":
        return ["client", *map(str, inputs.images), *server, "--score", "0.01"]
    if verb == "video":
        jsonl = ("--jsonl", str(out / "run.jsonl"))
        return ["video", str(inputs.clip), *server, "--max-frames", str(FRAMES), *jsonl]
    if verb == "eval":
        gt = ("--gt", str(inputs.gt), "--images", str(inputs.image_folder))
        return ["eval", *gt, *server, "--out", str(out / "eval")]
    if verb == "bench":
        load = ("--concurrency", "1", "--duration", "0.3", "--synthetic", "2", "--size", "96")
        return ["bench", *server, *load]
    site = str(_site(out, inputs))
    return ["watch", site, *server, "--max-frames", str(FRAMES), "--status-every", "60"]


def _check_output(
    verb: str, result: subprocess.CompletedProcess, inputs: Inputs, out: Path
) -> None:
    """``verb``'s run (`_command`) ended well and wrote what it should."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert "error:" not in result.stderr, result.stderr[-3000:]
    if verb == "client":
        named = {line.split(",")[0] for line in result.stdout.splitlines()}
        assert named == {str(p) for p in inputs.images}, result.stdout
    elif verb == "video":
        assert len((out / "run.jsonl").read_text().splitlines()) == FRAMES
    elif verb == "eval":
        assert json.loads((out / "eval" / "metrics.json").read_text())["bbox"]["AP50"] > 0
    elif verb == "bench":
        rows = [line.split() for line in result.stdout.splitlines()]
        row = next(r for r in rows if r[:1] == ["server"] and r[1].isdigit())  # server 1 ...
        assert int(row[2]) > 0 and int(row[3]) == 0, result.stdout  # requests, errors
    else:
        assert len((out / "cam1.jsonl").read_text().splitlines()) == FRAMES


def _one_error(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a run that failed (exit 1, no traceback)."""
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def _images_run(server: LocalServer) -> dict[tuple[str, str], float]:
    """Images each model version of the `secure` server has run so far."""
    metrics = server.metrics()
    return {
        (name, version): metric_value(metrics, "detect_batch_size_sum", model=name, version=version)
        for name, version in (("shapes", "1"), ("demo", "1"), ("demo", "2"))
    }


def _only_demo_1_ran(before: dict[tuple[str, str], float], server: LocalServer) -> None:
    """Since `_images_run` gave ``before``, only demo version 1 ran images: not the default
    model (shapes), not demo's newest version (2)."""
    after = _images_run(server)
    ran = {key: after[key] - before[key] for key in after}
    assert ran[("demo", "1")] > 0 and ran[("demo", "2")] == ran[("shapes", "1")] == 0, ran


# --------------------------------------------------------------------------- --health


def test_client_health_prints_serving_exit_0_then_after_sigterm_one_error_line_exit_1() -> None:
    """The Docker image's HEALTHCHECK command, against a server, then against its stopped
    process."""
    server = start_server(DEMO)
    try:
        health = ("client", "--server", server.address, "--health", "--timeout", "4")
        result = run_detect(*health)
        assert (result.returncode, result.stdout, result.stderr) == (0, "SERVING\n", "")
    finally:
        assert server.stop() == 0
    result = run_detect(*health)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot reach the detection server at {server.address}" in _one_error(result)


def test_client_health_with_nothing_listening_is_one_error_line_exit_1() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = run_detect("client", "--server", address, "--health", "--timeout", "4")
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"cannot reach the detection server at {address}" in _one_error(result)


def test_client_health_of_a_tls_server_needs_its_ca_but_no_token(secure: Secure) -> None:
    address = secure.server.address
    result = run_detect("client", "--server", address, "--health", "--ca", str(secure.cert))
    assert (result.returncode, result.stdout) == (0, "SERVING\n"), result.stderr


# --------------------------------------------------------------------------- TLS, token, model


@pytest.mark.slow
@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_reaches_a_tls_token_server_and_asks_for_the_model_version_given(
    verb: str, secure: Secure, inputs: Inputs, tmp_path: Path
) -> None:
    """``--ca``, ``--token-file``, ``--model-name demo --model-version 1``: the run succeeds, and
    only version 1 of demo ran its images (not the default model, not demo's newest)."""
    before = _images_run(secure.server)
    result = run_detect(
        *_command(verb, secure.server.address, inputs, tmp_path),
        *("--ca", str(secure.cert), "--token-file", str(secure.token)),
        *("--model-name", "demo", "--model-version", "1"),
    )
    _check_output(verb, result, inputs, tmp_path)
    _only_demo_1_ran(before, secure.server)


@pytest.mark.slow  # every verb end to end: make test runs them, make check the happy path
@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_without_ca_against_a_tls_server_is_one_error_line(
    verb: str, secure: Secure, inputs: Inputs, tmp_path: Path
) -> None:
    """Plaintext to a TLS server: the connection fails (`detect watch` waits 10 s for it)."""
    result = run_detect(
        *_command(verb, secure.server.address, inputs, tmp_path),
        *("--token-file", str(secure.token)),
    )
    error = _one_error(result)
    assert f"cannot reach the detection server at {secure.server.address}" in error


@pytest.mark.slow  # every verb end to end: make test runs them, make check the happy path
@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_without_a_token_is_one_unauthenticated_error_line(
    verb: str, secure: Secure, inputs: Inputs, tmp_path: Path
) -> None:
    result = run_detect(
        *_command(verb, secure.server.address, inputs, tmp_path), "--ca", str(secure.cert)
    )
    error = _one_error(result)
    assert "UNAUTHENTICATED: missing bearer token: pass --token-file" in error, error


def test_watch_takes_the_connection_from_the_site_files_keys(
    secure: Secure, inputs: Inputs, tmp_path: Path
) -> None:
    """``server``, ``ca``, ``token_file`` (paths relative to the site file), ``model_name`` and
    ``model_version`` as site keys; without ``token_file`` the camera fails UNAUTHENTICATED."""
    shutil.copy(secure.cert, tmp_path / "server.pem")
    shutil.copy(secure.token, tmp_path / "token.txt")
    keys = {"server": secure.server.address, "ca": "server.pem", "token_file": "token.txt"}
    keys |= {"model_name": "demo", "model_version": "1"}
    before = _images_run(secure.server)
    result = run_detect("watch", str(_site(tmp_path, inputs, **keys)), "--max-frames", str(FRAMES))
    _check_output("watch", result, inputs, tmp_path)
    _only_demo_1_ran(before, secure.server)
    del keys["token_file"]
    result = run_detect("watch", str(_site(tmp_path, inputs, **keys)), "--max-frames", "2")
    error = _one_error(result)
    assert error.startswith("error: camera cam1:") and "UNAUTHENTICATED" in error, error


# --------------------------------------------------------------------------- mutual TLS


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalServer, dict[str, Path]]:
    """A mutual-TLS server, and the PEM files: its certificate (``ca``), a client certificate
    and key from its client CA (``cert``, ``key``)."""
    folder = tmp_path_factory.mktemp("mutual")
    server_cert, server_key = certificate(folder, "server")
    client_ca = certificate(folder, "client-ca")
    client_cert, client_key = certificate(folder, "client", issuer=client_ca)
    server = start_server(
        DEMO,
        *("--tls-cert", str(server_cert), "--tls-key", str(server_key)),
        *("--tls-client-ca", str(client_ca[0])),
    )
    yield server, {"ca": server_cert, "cert": client_cert, "key": client_key}
    assert server.stop() == 0


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        (("ca", "cert", "key"), None),
        (("ca",), "cannot reach the detection server"),
        (("ca", "cert"), "a client certificate needs both cert and key"),
    ],
    ids=["cert-and-key", "no-client-certificate", "cert-without-key"],
)
def test_client_cert_and_key_against_a_mutual_tls_server(
    mutual: tuple[LocalServer, dict[str, Path]],
    inputs: Inputs,
    tmp_path: Path,
    given: tuple[str, ...],
    fragment: str | None,
) -> None:
    server, pem = mutual
    flags = [arg for name in given for arg in (f"--{name}", str(pem[name]))]
    result = run_detect(*_command("client", server.address, inputs, tmp_path), *flags)
    if fragment is None:
        _check_output("client", result, inputs, tmp_path)
    else:
        assert fragment in _one_error(result)

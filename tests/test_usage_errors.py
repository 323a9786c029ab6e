"""Errors that name the real cause, through the real CLI (and real servers): an output folder that
cannot be made, a token or TLS file, a refused reload, a port or a model repository that fails
before anything says "listening", a missing extra, site and training files with several bad
keys; and the exit codes: 0 ok, 1 failure, 2 usage (bad flags, bad flag or key values)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from helpers import run_detect, run_detect_without
from serving import add_version, certificate, start_server

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo.onnx"


def _error(result: subprocess.CompletedProcess, code: int) -> str:
    """The stderr of a run that ended with ``code``, one ``error:`` message, no traceback."""
    assert result.returncode == code, result.stdout + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return result.stderr


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), np.full((48, 64, 3), 128, np.uint8))
    return path


# --------------------------------------------------------------------------- --out


@pytest.mark.parametrize("verb", ["predict", "eval", "demo"])
def test_out_under_a_file_is_one_line_naming_the_file_exit_2(
    verb: str, image: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    out = blocker / "run"
    args = {
        "predict": ["predict", str(image), "--model", str(DEMO)],
        "eval": ["eval", "--gt", str(tmp_path / "gt.json"), "--model", str(DEMO)],
        "demo": ["demo"],
    }[verb]
    error = _error(run_detect(*args, "--out", str(out)), 2)
    assert f"error: --out {out}: cannot make it: {blocker} is a file, not a folder" in error


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_is_one_line_exit_2(image: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    error = _error(
        run_detect("predict", str(image), "--model", str(DEMO), "--out", str(locked / "o")), 2
    )
    assert f"cannot make it: {locked} is not writable" in error


# --------------------------------------------------------------------------- tokens and TLS


def test_a_token_server_tells_the_client_to_pass_its_token_file(
    image: Path, tmp_path: Path
) -> None:
    tokens, wrong = tmp_path / "tokens.txt", tmp_path / "wrong.txt"
    tokens.write_text("s3cret\n")
    wrong.write_text("guess\n")
    server = start_server(DEMO, "--auth-token-file", str(tokens))
    try:
        sent = ("client", str(image), "--server", server.address)
        missing = _error(run_detect(*sent), 1)
        assert "UNAUTHENTICATED: missing bearer token: pass --token-file FILE" in missing
        refused = _error(run_detect(*sent, "--token-file", str(wrong)), 1)
        assert "invalid bearer token: check that the first line of --token-file" in refused
        for error in (missing, refused):
            assert "--auth-token-file" not in error and "authorization" not in error
        assert run_detect(*sent, "--token-file", str(tokens)).returncode == 0
    finally:
        assert server.stop() == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("# no token yet\n")
    error = _error(run_detect(*sent, "--token-file", str(empty)), 2)
    assert f"error: --token-file {empty}: holds no token; write one token per line" in error


def test_tls_files_that_are_not_pem_or_do_not_match_are_named_not_the_port(
    image: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    client = run_detect("client", str(image), "--server", "127.0.0.1:50051", "--ca", str(junk))
    assert f"error: --ca {junk}: is not PEM (no -----BEGIN line)" in _error(client, 2)

    serve = ("serve", "--model", str(DEMO), "--port", "0", "--metrics-port", "0")
    cert, _ = certificate(tmp_path, "server")
    _, other_key = certificate(tmp_path, "other")
    garbage = run_detect(*serve, "--tls-cert", str(junk), "--tls-key", str(other_key))
    assert f"error: --tls-cert {junk}: is not PEM" in _error(garbage, 2)
    mismatched = run_detect(*serve, "--tls-cert", str(cert), "--tls-key", str(other_key))
    error = _error(mismatched, 2)
    assert f"--tls-key {other_key}: does not go with --tls-cert {cert}" in error
    for result in (garbage, mismatched):
        assert "listening" not in result.stdout and "--port" not in result.stderr


# --------------------------------------------------------------------------- detect serve


def test_reload_that_the_server_refuses_exits_1_with_its_reason(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    add_version(repository, "demo", 1, DEMO)
    server = start_server(repository, "--poll", "0")
    try:
        broken = add_version(repository, "demo", 2, DEMO)
        with (broken / "model.onnx").open("ab") as onnx:
            onnx.write(b"not the exported bytes")
        result = run_detect("client", "--server", server.address, "--reload")
        error = _error(result, 1)
        assert f"error: {server.address}: refused demo 2: " in error
        assert "does not match its model card" in error
        listed = run_detect("client", "--server", server.address, "--list-models")
        assert listed.stdout.startswith("demo 1 "), listed.stdout  # version 1 serves on
    finally:
        assert server.stop() == 0


def test_a_second_server_on_the_same_metrics_port_fails_before_listening() -> None:
    first = start_server(DEMO, wait_ready=False)
    try:
        second = run_detect(
            *("serve", "--model", str(DEMO), "--port", "0"),
            *("--metrics-port", str(first.metrics_port)),
        )
        error = _error(second, 1)
        assert (
            f"error: metrics port {first.metrics_port} is in use: pass --metrics-port N "
            "(0: any free port)"
        ) in error
        assert "listening" not in second.stdout
    finally:
        assert first.stop() == 0


@pytest.mark.parametrize(
    ("layout", "args", "fragment", "code"),
    [
        ({}, (), "no model found; put each model at NAME/VERSION/model.onnx", 2),
        ({"demo": 1}, ("--default-model", "cars"), "--default-model cars: no such model", 2),
        ({"demo": 1, "broken": 1}, (), "does not match its model card", 1),
    ],
    ids=["empty", "unknown-default", "broken-version"],
)
def test_a_bad_model_repository_fails_before_listening(
    tmp_path: Path, layout: dict[str, int], args: tuple[str, ...], fragment: str, code: int
) -> None:
    repository = tmp_path / "models"
    repository.mkdir()
    for name, version in layout.items():
        folder = add_version(repository, name, version, DEMO)
        if name == "broken":
            with (folder / "model.onnx").open("ab") as onnx:
                onnx.write(b"not the exported bytes")
    result = run_detect(
        "serve", "--models", str(repository), "--port", "0", "--metrics-port", "0", *args
    )
    assert fragment in _error(result, code)
    assert "listening" not in result.stdout


# --------------------------------------------------------------------------- a missing extra


def test_a_missing_extra_names_the_pip_command_for_this_checkout(tmp_path: Path) -> None:
    """detect is installed from its checkout (README: Install), not from PyPI: the hint installs
    the checkout's extra, one line that can be pasted."""
    (tmp_path / "t.json").write_text("{}")  # there: the files are checked before torch loads
    result = run_detect_without("torch", "train", "--data", str(tmp_path / "t.json"))
    error = _error(result, 1)
    assert f"install the `train` extra: pip install '{ROOT}[train]'" in error
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "train" in extras["optional-dependencies"]


# --------------------------------------------------------------------------- site and config files


def test_every_bad_key_of_a_site_file_is_reported_at_once_in_its_spelling(
    tmp_path: Path,
) -> None:
    for name in ("gate.mp4", "door.mp4"):
        (tmp_path / name).write_bytes(b"")
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "model": str(DEMO),
                "evnets": "events.jsonl",
                "defaults": {"min_frame": 2},
                "cameras": [
                    {"name": "gate", "source": "gate.mp4", "every": "two", "score": 5},
                    {"name": "door", "source": "door.mp4"},
                ],
            }
        )
    )
    error = _error(run_detect("watch", str(site)), 2)
    assert error.splitlines() == [
        f"error: {site}: 4 problems",
        "  evnets: unknown key (did you mean events?)",
        "  defaults: min_frame: unknown key (did you mean min_frames?)",
        "  camera 'gate': every: 'two': use a whole number",
        "  camera 'gate': score: 5: use a value in [0, 1]",
    ]


def test_every_bad_key_of_a_training_config_is_reported_at_once_as_keys(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("epochs: two\nlr: -1\nbatchsize: 2\n")
    error = _error(run_detect("train", "--config", str(config)), 2)
    assert error.splitlines() == [
        f"error: {config}: 3 problems",
        "  epochs: 'two': use a whole number",
        "  lr: -1: use 0 or more",
        "  batchsize: unknown key (did you mean batch?)",
    ]
    flag = _error(run_detect("train", "--config", str(config), "--epochs", "0"), 2)
    assert "epochs: 'two'" in flag  # the file's keys first, in their spelling


# --------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    "args",
    [
        ("predict", "IMAGE", "--model", str(DEMO), "--out", "OUT", "--score", "5"),
        ("predict", "IMAGE", "--model", str(DEMO), "--out", "OUT", "--classes", "zebra"),
        ("video", "IMAGE", "--model", str(DEMO), "--min-frames", "0"),
        ("client", "--server", "127.0.0.1"),
        ("predict", "IMAGE", "--model", str(DEMO), "--out", "OUT", "--no-such-flag"),
    ],
    ids=["score", "unknown-class", "min-frames", "server-without-port", "unknown-flag"],
)
def test_bad_flag_values_exit_2(args: tuple[str, ...], image: Path, tmp_path: Path) -> None:
    given = [str(image) if a == "IMAGE" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    result = run_detect(*given)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_a_failure_exits_1(image: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, now closed
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = run_detect("client", str(image), "--server", address, "--timeout", "3")
    assert "cannot reach the detection server" in _error(result, 1)


# --------------------------------------------------------------------------- --classes


def test_classes_takes_one_comma_separated_value_and_leaves_the_images_after_it(
    image: Path, tmp_path: Path
) -> None:
    second = tmp_path / "b.jpg"
    second.write_bytes(image.read_bytes())
    out = tmp_path / "out"
    result = run_detect(
        *("predict", "--classes", "circle,4", str(image), str(second)),
        *("--model", str(DEMO), "--out", str(out), "--score", "0"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (out / "annotated").iterdir()) == ["a.jpg", "b.jpg"]
    labels = {p["category_id"] for p in json.loads((out / "predictions.json").read_text())}
    assert labels <= {1, 4}, labels  # circle, and category id 4 (star)
    empty = run_detect("predict", str(image), "--model", str(DEMO), "--out", str(out),
                       "--classes", "circle,,star")  # fmt: skip
    assert "error: --classes circle,,star: give class names or category ids separated" in _error(
        empty, 2
    )

"""The committed Python stubs of the gRPC API are what grpcio-tools makes of the proto today."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ("detector_pb2.py", "detector_pb2.pyi", "detector_pb2_grpc.py")


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        str(ROOT / "proto/detect/v1/detector.proto"),
    ]
    assert protoc.main(args) == 0
    for name in STUBS:
        fresh = (tmp_path / "detect/v1" / name).read_text()
        committed = (ROOT / "detect/v1" / name).read_text()
        assert committed == fresh, f"detect/v1/{name} is stale: run `make proto` and commit"


def test_every_field_and_message_of_the_proto_is_commented() -> None:
    lines = (ROOT / "proto/detect/v1/detector.proto").read_text().splitlines()
    for i, line in enumerate(lines):
        text = line.strip()
        is_field = text.endswith(";") and "=" in text and not text.startswith(("//", "option"))
        is_decl = text.startswith(("message ", "enum ", "rpc ", "service "))
        if (is_field or is_decl) and not text.startswith("syntax"):
            assert lines[i - 1].strip().startswith("//"), f"line {i + 1} has no comment: {text}"


def test_stubs_import_without_grpc_tools() -> None:
    import subprocess

    code = (
        "import sys; sys.modules['grpc_tools'] = None\n"
        "from detect.v1 import detector_pb2, detector_pb2_grpc\n"
        "print(detector_pb2.DESCRIPTOR.package)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "detect.v1", result.stderr

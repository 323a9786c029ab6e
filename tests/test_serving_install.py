"""A serving install has no torch and no Ray: the runtime imports and `detect predict` runs
without them, and `pip install 'detect[serve]'` into a fresh virtual environment pulls in no
torch, torchvision, triton, NVIDIA CUDA wheels or ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving import start_server

REPO = Path(__file__).resolve().parent.parent

BLOCKED = ("torch", "torchvision", "ray")

# Runs in a subprocess: torch, torchvision and ray (and their submodules) cannot be imported, as on
# a machine where they are not installed; then the serving modules and `detect predict`.
NO_TORCH_SCRIPT = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {blocked!r}


def blocked(name):
    return name.partition(".")[0] in BLOCKED


class NoTorch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, NoTorch())
assert not [m for m in sys.modules if blocked(m)], "torch imported before the test started"
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise AssertionError("the blocker let torch through")

import detect.ops
import detect.predict
import detect.runtime.detector
import detect.runtime.draw
import detect.runtime.image
import detect.runtime.masks
import detect.runtime.model_card
import detect.runtime.polygons
import detect.client
import detect.demo
import detect.local_server
import detect.metrics.video
import detect.track
import detect.v1.detector_pb2_grpc
import detect.video
import detect.zones
import server.app
import server.auth
import server.batcher
import detect.messages
import detect.runtime.backend
import detect.structures
import server.metrics
import server.service
from detect.cli import main

image, model, out = sys.argv[1:]
code = main(["predict", image, "--model", model, "--out", out, "--score", "0"])
assert code == 0, f"detect predict returned {{code}}"
loaded = sorted(m for m in sys.modules if blocked(m))
assert not loaded, f"torch or ray modules imported: {{loaded}}"
print("OK without torch")
"""


def _image(shapes: Path) -> Path:
    return sorted((shapes / "images").glob("*.jpg"))[0]


def test_runtime_imports_without_torch(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    script = NO_TORCH_SCRIPT.format(blocked=BLOCKED)
    result = subprocess.run(
        [sys.executable, "-c", script, str(_image(shapes_small)), str(mask_model), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK without torch" in result.stdout
    assert isinstance(json.loads((out / "predictions.json").read_text()), list)


# What the build needs from the checkout; everything else (.venv, runs/, datasets/, .git, caches,
# a stale build/ or *.egg-info, and the top-level models/ with the demo model) stays behind.
_NOT_BUILT = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "runs",
    "datasets",
    "build",
    "dist",
    "tests",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "*.pyc",
)


def _source_copy(dst: Path) -> Path:
    """A clean copy of the checkout to build from.

    pip builds a local directory in place: setuptools writes build/ and detect.egg-info into it,
    and whatever already lies in build/lib goes into the wheel, stale modules included. Building
    from a copy keeps the checkout untouched and the wheel made of the current sources only.
    """

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = {"models"} if Path(folder) == REPO else set()  # not detect/models
        return set(_NOT_BUILT(folder, names)) | top

    shutil.copytree(REPO, dst, ignore=ignore)
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    assert size < 20_000_000, f"the source copy is {size / 1e6:.0f} MB: a big folder got in"
    return dst


def _run(cmd: list[str | Path], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run in `cwd` (not the checkout, whose detect/ would shadow the installed one) without
    PYTHONPATH or an active virtual environment leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow  # a pip install into a fresh virtual environment
def test_serve_extra_installs_without_torch(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    created = _run([sys.executable, "-m", "venv", venv], tmp_path)
    assert created.returncode == 0, created.stderr[-3000:]
    python = venv / "bin" / "python"
    source = _source_copy(tmp_path / "src")

    start = time.perf_counter()
    install = _run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q", f"{source}[serve]"],
        tmp_path,
    )
    seconds = time.perf_counter() - start
    print(f"pip install '.[serve]' took {seconds:.1f} s")
    assert install.returncode == 0, f"pip install failed:\n{install.stderr[-3000:]}"

    listed = _run([python, "-m", "pip", "list", "--format", "json"], tmp_path)
    assert listed.returncode == 0, listed.stderr[-3000:]
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"detect", "onnxruntime", "shapely", "numpy"} <= names, names
    unwanted = {n for n in names if n in {"torch", "torchvision", "triton", "ray"}}
    unwanted |= {n for n in names if n.startswith("nvidia-")}
    assert not unwanted, f"the serve extra pulls in {sorted(unwanted)}"

    imported = _run(
        [
            python,
            "-c",
            "import importlib.util, detect.runtime.detector as d; "
            "assert importlib.util.find_spec('torch') is None; print(d.__file__)",
        ],
        tmp_path,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert imported.stdout.strip().startswith(str(venv)), imported.stdout  # not the checkout's

    out = tmp_path / "out"
    image = _image(shapes_small)
    predicted = _run(
        [venv / "bin" / "detect", "predict", image, "--model", mask_model, "--out", out],
        tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "Traceback" not in predicted.stderr
    assert isinstance(json.loads((out / "predictions.json").read_text()), list)
    assert (out / "annotated" / image.name).is_file()

    # verbs that need another extra say which, in one line
    gt, predictions = tmp_path / "gt.json", out / "predictions.json"
    evaluated = _run(
        [venv / "bin" / "detect", "eval", "--gt", gt, "--predictions", predictions, "--out", out],
        tmp_path,
    )
    assert evaluated.returncode == 1 and "Traceback" not in evaluated.stderr
    assert "install the `eval` extra" in evaluated.stderr, evaluated.stderr

    served = start_server(mask_model, python=python, cwd=tmp_path)
    try:
        sent = _run(
            [venv / "bin" / "detect", "client", image, "--server", served.address, "--score", "0"],
            tmp_path,
        )
        assert sent.returncode == 0, sent.stderr[-3000:]
        assert sent.stdout.startswith(f"{image},")
    finally:
        assert served.stop() == 0


# Runs in a subprocess: onnxruntime cannot be imported; `detect client` and `detect video
# --server` then talk to a real server (which has it) and must never need it.
NO_ORT_SCRIPT = """
import sys
from importlib.abc import MetaPathFinder


class NoOnnxRuntime(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "onnxruntime":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, NoOnnxRuntime())
from detect.cli import main

address, image, clip, jsonl, model = sys.argv[1:]
assert main(["client", image, "--server", address, "--score", "0"]) == 0
assert main(["video", clip, "--server", address, "--track", "--jsonl", jsonl]) == 0
assert main(["predict", image, "--model", model, "--out", "o"]) == 1  # needs it: one line
loaded = sorted(m for m in sys.modules if m.partition(".")[0] == "onnxruntime")
assert not loaded, f"onnxruntime modules imported: {loaded}"
print("OK without onnxruntime")
"""


@pytest.mark.slow
def test_client_and_video_through_a_server_never_import_onnxruntime(
    shapes_small: Path, mask_model: Path, tmp_path: Path
) -> None:
    plain = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['onnxruntime'] = None; "
         "import detect.client, detect.runtime.draw, detect.video.remote"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-3000:]

    from detect.data.synth_video import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, frames=6, seed=3)
    jsonl = tmp_path / "clip.jsonl"
    served = start_server(mask_model)
    try:
        result = subprocess.run(
            [sys.executable, "-c", NO_ORT_SCRIPT, served.address, str(_image(shapes_small)),
             str(clip), str(jsonl), str(mask_model)],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
    finally:
        assert served.stop() == 0
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK without onnxruntime" in result.stdout
    assert "install the `serve` extra" in result.stderr  # predict says what it lacks
    assert len(jsonl.read_text().splitlines()) == 6

"""Errors that name the real cause across verbs, through the real CLI: a ``--model`` that is a
model card, a folder or a training checkpoint (decided once, when the runtime loads a model)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_detect
from serving import start_server

MODEL = Path(__file__).parent.parent / "models" / "demo.onnx"


@pytest.fixture
def wrong_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Things given as ``--model`` by mistake, each with the one error line it must give."""
    card = tmp_path / "demo.json"
    shutil.copy(MODEL.with_suffix(".json"), card)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not read")
    return {
        "card": (card, f"{card} is a model card: pass its model, {tmp_path / 'demo.onnx'}"),
        "folder": (
            tmp_path,
            f"{tmp_path} is a folder: pass a .onnx file "
            f"(or serve a model repository with --models {tmp_path})",
        ),
        "checkpoint": (
            checkpoint,
            f"{checkpoint} is a training checkpoint: export it first with "
            f"`detect export --checkpoint {checkpoint} --out models/best.onnx`",
        ),
    }


@pytest.mark.parametrize("what", ["card", "folder", "checkpoint"])
def test_a_model_argument_that_is_no_onnx_names_what_it_is_in_every_verb(
    wrong_models: dict[str, tuple[Path, str]], what: str, tmp_path: Path
) -> None:
    model, message = wrong_models[what]
    image, clip, gt = tmp_path / "a.png", tmp_path / "clip.avi", tmp_path / "gt.json"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    writer.write(np.zeros((32, 32, 3), np.uint8))
    writer.release()
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16}
    gt.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
                "annotations": [annotation],
                "categories": [{"id": 1, "name": "circle"}],
            }
        )
    )
    verbs = {
        "predict": ["predict", str(image), "--out", str(tmp_path / "p")],
        "video": ["video", str(clip)],
        "serve": ["serve", "--port", "0", "--metrics-port", "0"],
        "eval": ["eval", "--gt", str(gt), "--out", str(tmp_path / "e")],
    }
    for verb, args in verbs.items():
        result = run_detect(*args, "--model", str(model))
        assert (result.returncode, result.stderr.splitlines()) == (2, [f"error: {message}"]), verb


def test_eval_whose_images_moved_is_one_line_with_the_count_the_first_and_the_images_flag(
    tmp_path: Path,
) -> None:
    images = [
        {"id": k, "file_name": f"images/{k}.jpg", "width": 32, "height": 32} for k in (1, 2, 3)
    ]
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16}
    gt = tmp_path / "gt.json"
    gt.write_text(
        json.dumps(
            {"images": images, "annotations": [annotation], "categories": [{"id": 1, "name": "c"}]}
        )
    )
    result = run_detect("eval", "--gt", str(gt), "--model", str(MODEL), "--out", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: 3 of the 3 images of {gt} are missing (the first: {tmp_path / 'images/1.jpg'}); "
        "point --images at the folder that holds them"
    ]


def test_an_image_over_the_servers_message_limit_names_its_size_the_limit_and_the_flag(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), np.uint8)
    cv2.imwrite(str(big), noise, [cv2.IMWRITE_PNG_COMPRESSION, 0])  # 1.4 MiB
    clip = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (700, 700))
    writer.write(noise)  # sent as raw pixels: 1.4 MiB
    writer.release()
    labels = json.loads(MODEL.with_suffix(".json").read_text())["labels"]
    gt = tmp_path / "gt.json"
    annotation = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16}
    gt.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "big.png", "width": 700, "height": 700}],
                "annotations": [annotation],
                "categories": [{"id": k + 1, "name": name} for k, name in enumerate(labels)],
            }
        )
    )
    fix = "resize it, or raise the server's limit (`detect serve --max-message-mb 3`)"
    with start_server(MODEL, "--max-message-mb", "1") as server:
        client = run_detect("client", str(big), "--server", server.address)
        video = run_detect("video", str(clip), "--server", server.address)
        out = str(tmp_path / "eval")
        evaluated = run_detect("eval", "--gt", str(gt), "--server", server.address, "--out", out)
    assert (client.returncode, client.stderr.splitlines()) == (
        1,
        [f"error: {big}: 1.4 MiB, over the server's 1 MiB message limit: {fix}"],
    )
    assert (video.returncode, video.stderr.splitlines()) == (
        1,
        [f"error: a frame of {clip}: 1.4 MiB, over the server's 1 MiB message limit: {fix}"],
    )
    errors = [line for line in evaluated.stderr.splitlines() if not line.startswith("eval: ")]
    assert (evaluated.returncode, errors) == (  # without its progress line
        1,
        [
            f"error: {big}: 1.4 MiB, over the server's 1 MiB message limit: {fix}",
            "error: no image could be predicted; see the errors above",
        ],
    )


# the server's own lines, and which file of the model it runs (its int8 model on a CPU)
SERVE_LOG = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    r"(INFO detect\.serve|WARNING detect\.runtime\.precision): "
)


def test_a_server_and_a_bad_source_print_only_their_own_lines_unless_verbose(
    tmp_path: Path,
) -> None:
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    server = start_server(MODEL)
    client = run_detect("client", str(image), "--server", server.address)
    assert server.stop() == 0
    assert server.process.stderr is not None
    served = server.process.stderr.read().splitlines()
    assert served and all(SERVE_LOG.match(line) for line in served), served
    assert (client.returncode, client.stderr) == (0, "")

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    error = f"error: cannot open video {empty}: OpenCV cannot read it (corrupt or unsupported?)"
    quiet = run_detect("video", str(empty), "--model", str(MODEL))
    assert (quiet.returncode, quiet.stderr.splitlines()) == (1, [error])
    verbose = run_detect("video", str(empty), "--model", str(MODEL), "--verbose")
    assert "moov atom not found" in verbose.stderr and error in verbose.stderr.splitlines()
    loud = {"OPENCV_FFMPEG_LOGLEVEL": "32"}  # the user's own setting wins
    own = run_detect("video", str(empty), "--model", str(MODEL), env=loud)
    assert "moov atom not found" in own.stdout + own.stderr  # OpenCV's logger prints it

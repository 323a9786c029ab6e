"""`detect demo`: the serving path end to end on this machine, with the committed demo model.

1. data: a synthetic test split (``images`` images of 256 px, a seed the model never saw) and a
   synthetic surveillance clip (``frames`` frames of 320x240 with ground-truth identities), plus
   two zones (the clip's left and right halves) and a counting line down its middle;
2. serve: ``detect serve`` in its own process on 127.0.0.1 (free ports), ready when it says so;
3. images: the first few test images through the ``Detect`` RPC, printed as
   ``image,top,left,width,height,label,score`` lines, with annotated copies;
4. video: the clip through ``DetectStream`` (`detect.video` with tracking, zones and the line):
   annotated MP4, JSONL, summary, and AP50 / ID switches against the clip's ground truth;
5. eval: `detect eval --server` on the test split (report, plots);
6. the server is stopped with SIGTERM (it drains), and the output paths are printed.

Nothing here imports torch: the demo runs on a serving install with the ``eval`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from detect.config import from_flags
from detect.errors import ConfigError

DEMO_MODEL = Path("models/demo.onnx")
TEST_SEED = 1  # the demo model was trained on seed 0 (models/README.md)
IMAGE_SIZE = 256
CLIP_SIZE = (320, 240)
CLIP_SEED = 7
SHOWN_IMAGES = 4


@dataclass
class DemoConfig:
    """Settings of `detect demo`: where outputs go, which model, how much data."""

    out: Path = Path("runs/demo")
    model: Path | None = None  # None: models/demo.onnx here, else beside the package
    images: int = 24
    frames: int = 80

    def resolved_model(self) -> Path:
        """The model to serve; ConfigError when there is none."""
        if self.model is not None:
            if not self.model.is_file():
                raise ConfigError(f"--model {self.model}: no such file")
            return self.model
        for candidate in (DEMO_MODEL, Path(__file__).resolve().parents[1] / DEMO_MODEL):
            if candidate.is_file():
                return candidate
        raise ConfigError(
            f"{DEMO_MODEL} not found: run `detect demo` from the repository root, or pass "
            "--model NAME.onnx"
        )

    def validate(self) -> None:
        if self.images < 1 or self.frames < 1:
            raise ConfigError("--images and --frames must be 1 or more")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")


@contextmanager
def _step(number: int, title: str) -> Iterator[None]:
    print(f"\n[{number}/6] {title}", flush=True)
    started = time.perf_counter()
    yield
    print(f"      ({time.perf_counter() - started:.1f} s)", flush=True)


def _write_zones(path: Path) -> str:
    """Zones: the clip's left and right halves; the line: its vertical middle (x1,y1,x2,y2)."""
    width, height = CLIP_SIZE
    half = width // 2
    zones = {
        "zones": [
            {"name": "left", "polygon": [[0, 0], [half, 0], [half, height], [0, height]]},
            {"name": "right", "polygon": [[half, 0], [width, 0], [width, height], [half, height]]},
        ]
    }
    path.write_text(json.dumps(zones, indent=2))
    return f"{half},0,{half},{height}"


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Run the six steps; the output paths by name."""
    from detect.client import DetectorClient
    from detect.data.synth import write_dataset
    from detect.data.synth_video import write_clip
    from detect.evaluate import EvalConfig, evaluate, stdout_table
    from detect.local_server import LocalServer
    from detect.metrics.video import score_video
    from detect.runtime.backend import detect_batch
    from detect.runtime.draw import draw_detections
    from detect.runtime.image import decode_image
    from detect.structures import DetectOptions
    from detect.video import VideoConfig, run_video
    from detect.zones import Line, read_zones

    config.validate()
    model = config.resolved_model()
    out = config.out
    started = time.perf_counter()
    paths = {
        "annotated images": out / "images",
        "annotated video": out / "video" / "annotated.mp4",
        "JSONL": out / "video" / "detections.jsonl",
        "video summary": out / "video" / "summary.json",
        "eval report": out / "eval" / "report.md",
    }

    with _step(1, f"data: {config.images} test images and a {config.frames}-frame clip"):
        gt = write_dataset(out / "data", images=config.images, seed=TEST_SEED, size=IMAGE_SIZE)
        clip = out / "data" / "clip.mp4"
        clip_gt = write_clip(
            clip, frames=config.frames, seed=CLIP_SEED, width=CLIP_SIZE[0], height=CLIP_SIZE[1]
        )
        zones = out / "data" / "zones.json"
        line = _write_zones(zones)
        print(f"      {gt}, {clip} (+ {clip_gt.name}), {zones}")

    with _step(2, f"serve: detect serve --model {model} on 127.0.0.1"):
        server = LocalServer(model).start()
        print(f"      {server.seen[-1]}")
    try:
        with _step(3, "images through the Detect RPC: image,top,left,width,height,label,score"):
            paths["annotated images"].mkdir(parents=True, exist_ok=True)
            images = sorted((out / "data" / "images").glob("*.jpg"))[:SHOWN_IMAGES]
            with DetectorClient(server.address) as client:
                for path in images:
                    data = path.read_bytes()
                    (result,) = detect_batch(client, [data], DetectOptions())
                    for detection in result.detections:
                        print(f"{path.name},{detection.line()}")
                    drawn = draw_detections(decode_image(data), result.detections)
                    target = paths["annotated images"] / path.name
                    cv2.imwrite(str(target), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))

        with _step(4, "video through DetectStream: tracks, zones, line"):
            summary = run_video(
                VideoConfig(
                    source=str(clip),
                    server=server.address,
                    track=True,
                    zones=read_zones(zones),
                    lines=[Line.parse(line)],
                    out_video=paths["annotated video"],
                    jsonl=paths["JSONL"],
                )
            )
            for text in summary.lines():
                print(f"      {text}")
            quality = score_video(clip_gt, paths["JSONL"])
            print(
                f"      against the clip's ground truth: AP50 {quality['AP50']:.3f}, "
                f"AP {quality['AP']:.3f} over {quality['frames']} frames; "
                f"MOTA {quality['MOTA']:.3f}, IDF1 {quality['IDF1']:.3f}, HOTA "
                f"{quality['HOTA']:.3f}, {quality['id_switches']} ID switches "
                f"({quality['objects']} objects)"
            )
            paths["video summary"].write_text(
                json.dumps({**summary.as_dict(), "ground_truth": quality}, indent=2)
            )

        with _step(5, f"eval: detect eval --server {server.address} --gt {gt}"):
            result = evaluate(EvalConfig(gt=gt, out=out / "eval", server=server.address))
            print(stdout_table(result.metrics))
    finally:
        with _step(6, "stop the server (SIGTERM: drain, then exit)"):
            code = server.stop()
            print(f"      exit code {code}")

    print(f"\ndemo done in {time.perf_counter() - started:.1f} s; outputs:")
    for name, path in paths.items():
        print(f"  {name + ':':<18} {path}")
    sys.stdout.flush()
    return paths


# --------------------------------------------------------------------------- `detect demo`


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`detect demo`'s flags."""
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--model", type=Path, help="model to serve (default: models/demo.onnx)")
    p.add_argument("--images", type=int, default=24, help="synthetic test images")
    p.add_argument("--frames", type=int, default=80, help="frames of the synthetic clip")


def run(args: argparse.Namespace) -> int:
    """`detect demo` from parsed flags."""
    run_demo(from_flags(DemoConfig, args))
    return 0

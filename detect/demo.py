"""`detect demo`: the serving path end to end on this machine, with the committed demo model.

1. data: a synthetic test split (``images`` images of 256 px, a seed the model never saw) and a
   synthetic site of two cameras (`detect synth --video DIR --cameras 2`: clips of ``frames``
   frames of 320x240 with ground-truth identities, a zone and a counting line each, site.yaml);
2. serve: ``detect serve`` in its own process on 127.0.0.1 (free ports), ready when it says so;
3. images: the first few test images through the ``Detect`` RPC, printed as
   ``image,top,left,width,height,label,score`` lines, with annotated copies;
4. site: both cameras through the server at once (`detect watch`: one ``DetectStream`` and one
   tracker per camera): annotated MP4s, JSONL, the site's event log (zone enter/exit with dwell,
   line crossings), summaries, and per camera AP50, MOTA, IDF1 and HOTA against its ground truth;
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

from detect.config import from_namespace
from detect.errors import ConfigError, DetectError

DEMO_MODEL = Path("models/demo.onnx")
TEST_SEED = 1  # the demo model was trained on seed 0 (models/README.md)
IMAGE_SIZE = 256
CLIP_SIZE = (320, 240)
CLIP_SEED = 7
CAMERAS = 2
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


def run_demo(config: DemoConfig) -> dict[str, Path]:
    """Run the six steps; the output paths by name."""
    from detect.client import DetectorClient
    from detect.data.synth import write_dataset
    from detect.data.synth_video import write_site
    from detect.evaluate import EvalConfig, evaluate, stdout_table
    from detect.local_server import LocalServer
    from detect.metrics.video import score_video
    from detect.runtime.backend import detect_batch
    from detect.runtime.draw import draw_detections
    from detect.runtime.image import decode_image
    from detect.structures import DetectOptions
    from detect.watch import read_site, watch

    config.validate()
    model = config.resolved_model()
    out = config.out
    started = time.perf_counter()
    paths = {
        "annotated images": out / "images",
        "site": out / "site" / "site.yaml",
        "annotated video": out / "site" / "out" / "cam1.mp4",
        "JSONL": out / "site" / "out" / "cam1.jsonl",
        "events": out / "site" / "out" / "events.jsonl",
        "site summary": out / "site" / "out" / "summary.json",
        "eval report": out / "eval" / "report.md",
    }

    title = f"{config.images} test images, {CAMERAS} cameras of {config.frames} frames"
    with _step(1, f"data: {title}"):
        gt = write_dataset(out / "data", images=config.images, seed=TEST_SEED, size=IMAGE_SIZE)
        site_file = write_site(
            out / "site",
            CAMERAS,
            frames=config.frames,
            seed=CLIP_SEED,
            width=CLIP_SIZE[0],
            height=CLIP_SIZE[1],
            objects=3,
        )
        print(f"      {gt}, {site_file} (cam1.mp4, cam2.mp4 with their ground truth)")

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

        with _step(4, f"site: {CAMERAS} cameras through DetectStream at once (detect watch)"):
            site = read_site(site_file, server=server.address)
            watched = watch(site)
            report = watched.as_dict()
            for name, summary in watched.summaries.items():
                print(f"      camera {name}:")
                for text in summary.lines():
                    print(f"        {text}")
                quality = score_video(
                    site_file.parent / f"{name}.json", site_file.parent / "out" / f"{name}.jsonl"
                )
                print(
                    f"        against its ground truth: AP50 {quality['AP50']:.3f}, "
                    f"MOTA {quality['MOTA']:.3f}, IDF1 {quality['IDF1']:.3f}, "
                    f"HOTA {quality['HOTA']:.3f}, {quality['id_switches']} ID switches "
                    f"({quality['objects']} objects)"
                )
                report["cameras"][name]["ground_truth"] = quality
            print(
                f"      site: {report['frames_processed']} frames in {report['seconds']:.1f} s "
                f"({report['fps']:.2f} frames/s), {report['events']} events in {paths['events']}"
            )
            paths["site summary"].write_text(json.dumps(report, indent=2))
            for name, error in watched.errors.items():
                raise DetectError(f"camera {name}: {error}")

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
    run_demo(from_namespace(DemoConfig, args))
    return 0

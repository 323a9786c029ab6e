"""`detect demo`: the serving path end to end on this machine, with the committed demo model.

1. data: a synthetic test split (``images`` images of 256 px, a seed the model never saw) and a
   synthetic site of two cameras (`detect synth --video DIR --cameras 2`: clips of ``frames``
   frames of 320x240 with ground-truth identities, a zone and a counting line each, site.yaml);
2. serve: ``detect serve`` in its own process on 127.0.0.1 (free ports), ready when it says so;
3. images: the first few test images through the ``Detect`` RPC, told as
   ``image,top,left,width,height,label,score`` lines, with annotated copies;
4. site: both cameras through the server at once (`detect watch`: one ``DetectStream`` and one
   tracker per camera): annotated MP4s, JSONL, the site's event log (zone enter/exit with dwell,
   line crossings), summaries, and per camera AP50, MOTA, IDF1 and HOTA against its ground truth,
   and how right its zone and line counts are (`detect.metrics.counting`);
5. eval: `detect eval --server` on the test split (report, plots);
6. the server is stopped with SIGTERM (it drains).

`run_demo` tells what it does as it goes (``say``) and returns the output paths;
`detect.commands.demo` prints both.

Nothing here imports torch: the demo runs on a serving install with the ``eval`` extra.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from detect.errors import ConfigError, DetectError
from detect.settings import FLAGS, Spelling, at_least, check, output_folder, setting

DEMO_MODEL = Path("models/demo.onnx")
TEST_SEED = 1  # the demo model was trained on seed 0 (models/README.md)
IMAGE_SIZE = 256
CLIP_SIZE = (320, 240)
CLIP_SEED = 7
CAMERAS = 2
SHOWN_IMAGES = 4

Say = Callable[[str], None]
"""Where the demo tells what it does: one text (maybe of several lines) at a time."""


def _model_file(path: Path | None) -> str | None:
    return None if path is None or path.exists() else "no such file"  # else `check_model` says


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `detect demo`: where outputs go, which model, how much data."""

    out: Path = setting(Path("runs/demo"), "output folder")
    model: Path | None = setting(
        None, "model to serve (default: models/demo.onnx)", check=_model_file
    )
    images: int = setting(24, "synthetic test images", check=at_least(1))
    frames: int = setting(80, "frames of the synthetic clip", check=at_least(1))

    def resolved_model(self) -> Path:
        """``model``, or models/demo.onnx here, else beside the package; ConfigError when there
        is none."""
        if self.model is not None:
            return self.model
        for candidate in (DEMO_MODEL, Path(__file__).resolve().parents[1] / DEMO_MODEL):
            if candidate.is_file():
                return candidate
        raise ConfigError(
            f"{DEMO_MODEL} not found: run `detect demo` from the repository root, or pass "
            "--model NAME.onnx"
        )

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks of the file system's state; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(DemoConfig, FLAGS)
        fix = output_folder(self.out)
        if fix is not None:
            raise spell.error("out", self.out, fix)


@contextmanager
def _step(say: Say, number: int, title: str) -> Iterator[None]:
    say(f"\n[{number}/6] {title}")
    started = time.perf_counter()
    yield
    say(f"      ({time.perf_counter() - started:.1f} s)")


def _quiet(text: str) -> None:
    """Tell nobody."""


def run_demo(config: DemoConfig, say: Say = _quiet) -> dict[str, Path]:
    """Run the six steps, telling ``say`` each step, its results (the detection lines of step
    3, the cameras' summaries and scores, the eval table) and its time as it goes; the output
    paths by name."""
    from detect.client import DetectorClient
    from detect.data.synth import write_dataset
    from detect.data.synth_video import write_site
    from detect.evaluate import EvalConfig, evaluate
    from detect.local_server import LocalServer
    from detect.metrics.clip import ClipRun
    from detect.metrics.coco import ap_text
    from detect.metrics.counting import counting_table
    from detect.metrics.report import stdout_table
    from detect.metrics.video import score_video
    from detect.runtime.backend import detect_batch
    from detect.runtime.draw import draw_detections
    from detect.runtime.image import decode_image
    from detect.structures import DetectOptions
    from detect.watch import read_site, watch

    check(config)
    model = config.resolved_model()
    out = config.out
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
    with _step(say, 1, f"data: {title}"):
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
        say(f"      {gt}, {site_file} (cam1.mp4, cam2.mp4 with their ground truth)")

    with _step(say, 2, f"serve: detect serve --model {model} on 127.0.0.1"):
        server = LocalServer(model).start()
        say(f"      {server.seen[-1]}")
    try:
        rpc = "images through the Detect RPC: image,top,left,width,height,label,score"
        with _step(say, 3, rpc):
            paths["annotated images"].mkdir(parents=True, exist_ok=True)
            images = sorted((out / "data" / "images").glob("*.jpg"))[:SHOWN_IMAGES]
            with DetectorClient(server.address) as client:
                for path in images:
                    data = path.read_bytes()
                    (result,) = detect_batch(client, [data], DetectOptions())
                    for detection in result.detections:
                        say(f"{path.name},{detection.line()}")
                    drawn = draw_detections(decode_image(data), result.detections)
                    target = paths["annotated images"] / path.name
                    cv2.imwrite(str(target), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))

        with _step(say, 4, f"site: {CAMERAS} cameras through DetectStream at once (detect watch)"):
            site = read_site(site_file, server=server.address)
            watched = watch(site)
            report = watched.as_dict()
            for name, summary in watched.summaries.items():
                say(f"      camera {name}:")
                for text in summary.lines():
                    say(f"        {text}")
                quality = score_video(
                    ClipRun.read(
                        site_file.parent / f"{name}.json",
                        site_file.parent / "out" / f"{name}.jsonl",
                    )
                )
                say(
                    f"        against its ground truth: AP50 {ap_text(quality['AP50'])}, "
                    f"MOTA {quality['MOTA']:.3f}, IDF1 {quality['IDF1']:.3f}, "
                    f"HOTA {quality['HOTA']:.3f}, {quality['id_switches']} ID switches "
                    f"({quality['objects']} objects)"
                )
                report["cameras"][name].setdefault("ground_truth", {}).update(quality)
                if name in watched.counting_scores:  # the site names its truth (write_site)
                    say("        its counts against its ground truth:")
                    for text in counting_table(watched.counting_scores[name]).splitlines():
                        say(f"          {text}")
            say(
                f"      site: {report['frames_processed']} frames in {report['seconds']:.1f} s "
                f"({report['fps']:.2f} frames/s), {report['events']} events in {paths['events']}"
            )
            paths["site summary"].write_text(json.dumps(report, indent=2))
            for name, error in watched.errors.items():
                raise DetectError(f"camera {name}: {error}")

        with _step(say, 5, f"eval: detect eval --server {server.address} --gt {gt}"):
            result = evaluate(EvalConfig(gt=gt, out=out / "eval", server=server.address))
            say(stdout_table(result.metrics))
    finally:
        with _step(say, 6, "stop the server (SIGTERM: drain, then exit)"):
            code = server.stop()
            say(f"      exit code {code}")

    return paths

"""The `detect` console script: one subcommand per verb, wired to the verb's command module.

Each verb's command module (`detect.commands.<verb>`) registers its flags
(``add_arguments(parser)``, from its settings' declarations) and runs from the parsed flags
(``run(args) -> exit code``); this file only names the verbs, their help and examples, and
handles errors. Exit codes: 0 ok, 1 failure (a `DetectError`: the message names the thing and
the fix), 2 usage error (argparse's, and a `UsageError`: a bad flag or file key value). Only the
chosen verb's module is imported, so that `detect --help` is fast and a serving install (no
torch) can run the verbs that do not need it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from detect import __version__
from detect.errors import DetectError, UsageError, install_extra


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults (except None and those the help text states) and keep the examples."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if action.default is None or "(default" in help_text:
            return help_text
        return super()._get_help_string(action)


@dataclass(frozen=True)
class Verb:
    """A subcommand: its name, the module with ``add_arguments`` and ``run``, help, examples."""

    name: str
    module: str
    help: str
    examples: str


VERBS = (
    Verb(
        "synth",
        "detect.commands.synth",
        "Generate a synthetic instance-segmentation dataset (COCO JSON + JPEG images), or a "
        "synthetic surveillance clip with per-frame ground truth and identities.",
        "  detect synth --out datasets/shapes --images 200 --seed 0\n"
        "  detect synth --out datasets/cctv --images 200 --seed 1 --size 256 --degrade\n"
        "  detect synth --video clips/street.mp4 --frames 300 --seed 2 --degrade\n"
        "  detect synth --video clips/night.mp4 --frames 300 --seed 7 --hard --shake 5\n",
    ),
    Verb(
        "import",
        "detect.commands.import_",
        "Convert a VOC, YOLO or instance-mask-PNG dataset to COCO JSON.",
        "  detect import voc VOCdevkit/VOC2012 --out datasets/voc.json\n"
        "  detect import yolo my_yolo_dataset --out datasets/yolo.json\n"
        "  detect import masks PennFudanPed --label person --out datasets/pennfudan.json\n",
    ),
    Verb(
        "split",
        "detect.commands.split",
        "Split a COCO JSON into train/val/test files by image (deterministic, no overlap).",
        "  detect split datasets/shapes/annotations.json\n"
        "  detect split gt.json --ratios 0.8 0.2 --seed 3 --out datasets/splits\n",
    ),
    Verb(
        "train",
        "detect.commands.train",
        "Train Faster/Mask R-CNN on COCO-format data (checkpoints, curves, val AP in runs/NAME).",
        "  detect train --data datasets/shapes/train.json --val datasets/shapes/val.json \\\n"
        "      --arch mask_rcnn --backbone resnet50_fpn --epochs 24 --out runs/shapes\n"
        "  detect train --config runs/shapes/config.yaml --resume runs/shapes/last.pt\n"
        "  torchrun --nproc_per_node 2 -m detect train --data train.json --out runs/ddp\n",
    ),
    Verb(
        "models",
        "detect.commands.models",
        "List torchvision's COCO detectors that `detect export --pretrained` serves and "
        "`detect train --weights NAME:COCO_V1` fine-tunes: published AP, size, cached or not.",
        "  detect models\n"
        "  detect export --pretrained maskrcnn_resnet50_fpn_v2 --out models/coco-mask.onnx\n",
    ),
    Verb(
        "export",
        "detect.commands.export",
        "Export a `detect train` checkpoint, or a torchvision COCO model, to ONNX plus its model "
        "card (NAME.json); with --int8 also its int8 model (NAME.int8.onnx), which serve, video "
        "and watch run on the CPU.",
        "  detect export --checkpoint runs/shapes/best.pt --out models/shapes.onnx\n"
        "  detect export --pretrained fasterrcnn_resnet50_fpn_v2 --out models/coco.onnx\n"
        "  detect export --checkpoint runs/shapes/best.pt --out models/shapes-fp16.onnx --fp16 \\\n"
        "      --verify datasets/shapes/images\n"
        "  detect export --model models/shapes.onnx --int8 datasets/shapes/images \\\n"
        "      --int8-val datasets/shapes/val.json\n",
    ),
    Verb(
        "parity",
        "detect.commands.parity",
        "Compare a checkpoint (PyTorch) with its ONNX export on the same images (exit 1: fail).",
        "  detect parity --checkpoint runs/shapes/best.pt --model models/shapes.onnx "
        "datasets/shapes/images\n",
    ),
    Verb(
        "predict",
        "detect.commands.predict",
        "Detect objects in images with an exported model: predictions.json, annotated images, "
        "and one `image,top,left,width,height,label,score` line per detection on stdout.",
        "  detect predict photos/ --model models/shapes.onnx --out runs/predict\n"
        "  detect predict a.jpg b.png --model models/shapes.onnx --out out --score 0.3 "
        "--classes circle,ring\n"
        "  detect predict photos/ --model models/shapes.onnx --out runs/predict --ray\n",
    ),
    Verb(
        "serve",
        "detect.commands.serve",
        "Serve an exported model over gRPC (detect.v1.Detector) with dynamic batching, "
        "health, reflection and Prometheus metrics. Stops cleanly on SIGTERM/SIGINT.",
        "  detect serve --model models/shapes.onnx --port 50051\n"
        "  detect serve --model /models/shapes.onnx --host 0.0.0.0 --device cuda --max-batch 16\n"
        "  detect serve --model m.onnx --tls-cert server.pem --tls-key server.key "
        "--auth-token-file tokens.txt\n",
    ),
    Verb(
        "client",
        "detect.commands.client",
        "Send images to a `detect serve` server; one `image,top,left,width,height,label,score` "
        "line per detection on stdout.",
        "  detect client street.jpg --server 127.0.0.1:50051\n"
        "  detect client a.jpg b.png --server det.example.com:443 --tls --token-file token.txt\n"
        "  detect client --server 127.0.0.1:50051 --info\n"
        "  detect client --server 127.0.0.1:50051 --health   # exit 0 when SERVING\n",
    ),
    Verb(
        "bench",
        "detect.commands.bench",
        "Measure a running server: p50/p90/p99 latency and images/s per concurrency level, "
        "optionally against torchvision eager on the same weights.",
        "  detect bench --server 127.0.0.1:50051 --concurrency 1,8,32 --duration 20\n"
        "  detect bench --server 127.0.0.1:50051 --images photos/ "
        "--compare-eager runs/shapes/best.pt\n",
    ),
    Verb(
        "eval",
        "detect.commands.eval",
        "Evaluate predictions against COCO ground truth: COCO AP/AR (pycocotools), per-class "
        "P/R/F1 at an operating threshold, confusion matrix, PR curves, proposal recall; or a "
        "video run against its clip: AP plus MOTA, MOTP, IDF1 and HOTA (TrackEval), and with "
        "zones or lines how right its counts are.",
        "  detect eval --gt data/test.json --model models/shapes.onnx --out runs/eval\n"
        "  detect eval --gt data/test.json --predictions runs/eval/predictions.json --out re\n"
        "  detect eval --gt data/test.json --server 127.0.0.1:50051 --out runs/eval-server\n"
        "  detect eval --gt data/test.json --checkpoint runs/shapes/best.pt --out runs/eval-pt\n"
        "  detect eval --video clips/street.json --jsonl runs/street.jsonl   # MOTA, IDF1, HOTA\n"
        "  detect eval --video site/cam1.json --jsonl site/out/cam1.jsonl --site site/site.yaml "
        "--camera cam1\n",
    ),
    Verb(
        "video",
        "detect.commands.video",
        "Detect (and track, and count) objects in a video file, stream or webcam, locally or "
        "through a server; annotated MP4, JSONL per frame, summary; an archive of clips with "
        "--out DIR (a run again resumes it).",
        "  detect video clip.mp4 --model models/shapes.onnx --track --out-video out.mp4\n"
        "  detect video rtsp://cam/1 --server 127.0.0.1:50051 --realtime --jsonl cam1.jsonl\n"
        "  detect video clip.mp4 --model m.onnx --zones zones.json --line 0,200,640,200\n"
        "  detect video clips/ 'more/*.mp4' --model m.onnx --track --out runs/archive\n",
    ),
    Verb(
        "watch",
        "detect.commands.watch",
        "Watch a site: every camera of site.yaml through one server (or model), one tracker, "
        "zones, lines and outputs per camera, one event log (zone enter/exit with dwell time, "
        "line crossings), a live status line per camera, cameras reconnecting on their own.",
        "  detect watch site.yaml\n"
        "  detect watch site.yaml --server 127.0.0.1:50051 --events out/events.jsonl\n"
        "  detect synth --video site/ --cameras 3 && detect watch site/site.yaml --model m.onnx\n",
    ),
    Verb(
        "demo",
        "detect.commands.demo",
        "The serving path end to end in a few minutes: serve the committed demo model, send "
        "images and a synthetic surveillance clip through the gRPC API (tracks, zones, line "
        "counts), evaluate on a synthetic test split, print where the outputs are.",
        "  detect demo\n  detect demo --out /tmp/demo --images 8 --frames 30\n",
    ),
)


def build_parser(verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every verb; the flags of those in ``verbs`` (None: all), whose modules are
    imported here."""
    parser = argparse.ArgumentParser(
        prog="detect",
        description="Object detection and instance segmentation: train, export, serve, evaluate.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"detect {__version__}")
    every_verb = argparse.ArgumentParser(add_help=False)
    every_verb.add_argument(
        VERBOSE,
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the libraries' own log lines (gRPC, FFmpeg, OpenCV) and info lines",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        p = subparsers.add_parser(
            verb.name,
            help=verb.help,
            description=verb.help,
            epilog="examples:\n" + verb.examples,
            formatter_class=_Formatter,
            parents=[every_verb],
        )
        if verbs is None or verb.name in verbs:
            module = importlib.import_module(verb.module)
            module.add_arguments(p)
            p.set_defaults(run=module.run)
    return parser


class _Lines(logging.Formatter):
    """A library's warnings and errors as the command's own lines: ``warning: MESSAGE``."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


VERBOSE = "--verbose"

# The native libraries' own logging, off unless --verbose; read when they load (and by the
# `detect serve` processes a verb starts), so set before any verb's module is imported. A value
# the user set in the environment wins.
_QUIET_ENVIRONMENT = {
    "GRPC_VERBOSITY": "NONE",  # gRPC C-core
    "OPENCV_LOG_LEVEL": "SILENT",  # OpenCV's [ WARN:0@...] lines
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg's, through OpenCV: AV_LOG_QUIET
    # Ray's C++ core (`--ray`): its warnings about its own internals ("constructor arguments in
    # the object store") and connection retries; what fails reaches the verb as an exception
    "RAY_BACKEND_LOG_LEVEL": "fatal",
}


def _log_to_stderr(verbose: bool) -> None:
    """Warnings and errors the library logs (a camera reconnecting, a stream retried) go to
    stderr as ``warning: ...`` lines; with ``verbose``, info lines and the libraries' own log
    too (else those are silenced: `_QUIET_ENVIRONMENT`, and gRPC's Python logger)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lines())
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if not verbose:
        for name, value in _QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        logging.getLogger("grpc").setLevel(logging.CRITICAL + 1)


def _chosen(argv: Sequence[str]) -> list[str]:
    """The verb named on the command line (the first word that is not an option), if any."""
    return [word for word in argv if not word.startswith("-")][:1]


# Optional dependencies -> the extra that brings them (for a clear message when one is missing).
_EXTRA_OF = {
    "torch": "train",
    "torchvision": "train",
    "albumentations": "train",
    "onnx": "train",
    "pycocotools": "eval",
    "trackeval": "eval",
    "matplotlib": "eval",
    "onnxruntime": "serve",
    "shapely": "serve",
    "grpc": "serve",
    "grpc_health": "serve",
    "grpc_reflection": "serve",
    "google": "serve",
    "prometheus_client": "serve",
    "ray": "ray",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = _chosen(argv)
    _log_to_stderr(VERBOSE in argv)
    try:
        args = build_parser(verb).parse_args(argv)
        return args.run(args)
    except DetectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in _EXTRA_OF:
            raise
        extra = _EXTRA_OF[root]
        print(
            f"error: detect {' '.join(verb)} needs {root}, which this installation lacks; "
            f"install the `{extra}` extra: {install_extra(extra)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`detect predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file or folder the checks could not foresee (disk full, /proc)
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1

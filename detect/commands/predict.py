"""`detect predict IMAGES --model NAME.onnx --out DIR`: flags from `PredictConfig`'s
declarations; one ``image,top,left,width,height,label,score`` line per detection on stdout as
each image is done; on stderr the images an earlier run into the same ``--out`` finished (one
line), an ``error:`` line per image that could not be read and the summary; exit 1 if an image
failed."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from detect.commands.flags import add_flags, from_flags
from detect.predict import PredictConfig, PredictedImage, predict
from detect.progress import Progress
from detect.resume import Resumed


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, PredictConfig)


def _print_image(image: PredictedImage) -> None:
    """One image's lines, written around the progress bar."""
    if image.error is not None:
        tqdm.write(f"error: {image.path}: {image.error}", file=sys.stderr)
    for det in image.detections:
        tqdm.write(f"{image.path},{det.line()}", file=sys.stdout)


def _print_resumed(resumed: Resumed) -> None:
    print(resumed.line("predict"), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config = from_flags(PredictConfig, args)
    result = predict(config, _print_image, Progress, _print_resumed)
    print(result.summary(), file=sys.stderr)
    print(f"outputs in {config.out}", file=sys.stderr)
    return 1 if result.failed else 0

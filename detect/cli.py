"""The `detect` console script: one subcommand per verb, each a thin wrapper over a function.

Exit codes: 0 ok, 1 failure (a `DetectError`: the message names the thing and the fix),
2 usage error (argparse). Verb modules are imported lazily so that `detect --help` is fast and a
serving install (no torch) can run the verbs that do not need it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from detect import __version__
from detect.errors import DetectError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults (except None and those the help text states) and keep the examples."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        if action.default is None or "(default" in help_text:
            return help_text
        return super()._get_help_string(action)


def _add_verb(
    subparsers: argparse._SubParsersAction,
    name: str,
    help_text: str,
    examples: str,
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="examples:\n" + examples,
        formatter_class=_Formatter,
    )
    parser.set_defaults(run=run)
    return parser


# --- synth ---


def _run_synth(args: argparse.Namespace) -> int:
    from detect.data.synth import write_dataset

    path = write_dataset(
        args.out, images=args.images, seed=args.seed, size=args.size, degrade=args.degrade
    )
    print(f"wrote {args.images} images and {path}")
    return 0


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "synth",
        "Generate a synthetic instance-segmentation dataset (COCO JSON + JPEG images).",
        "  detect synth --out datasets/shapes --images 200 --seed 0\n"
        "  detect synth --out datasets/cctv --images 200 --seed 1 --size 256 --degrade\n",
        _run_synth,
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--images", type=int, default=100, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same annotations)")
    p.add_argument("--size", type=int, default=320, help="image side in pixels")
    p.add_argument(
        "--degrade", action="store_true", help="surveillance-like blur, noise, JPEG, low light"
    )


# --- import ---


def _run_import(args: argparse.Namespace) -> int:
    from detect.data import importers

    convert = {
        "voc": importers.import_voc,
        "yolo": importers.import_yolo,
        "masks": importers.import_masks,
    }[args.format]
    out = args.out or args.dir / "annotations.json"
    kwargs = {"label": args.label} if args.format == "masks" else {}
    summary = convert(args.dir, out, **kwargs)
    print(summary)
    print(f"wrote {out}")
    return 0


def _add_import(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "import",
        "Convert a VOC, YOLO or instance-mask-PNG dataset to COCO JSON.",
        "  detect import voc VOCdevkit/VOC2012 --out datasets/voc.json\n"
        "  detect import yolo my_yolo_dataset --out datasets/yolo.json\n"
        "  detect import masks PennFudanPed --label person --out datasets/pennfudan.json\n",
        _run_import,
    )
    p.add_argument("format", choices=["voc", "yolo", "masks"], help="source layout")
    p.add_argument("dir", type=Path, help="dataset root folder")
    p.add_argument("--out", type=Path, help="output COCO JSON (default: DIR/annotations.json)")
    p.add_argument("--label", default="object", help="class name for `masks` (one class)")


# --- split ---


def _run_split(args: argparse.Namespace) -> int:
    from detect.data.split import split_coco

    paths = split_coco(args.gt, ratios=args.ratios, seed=args.seed, out_dir=args.out)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _add_split(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "split",
        "Split a COCO JSON into train/val/test files by image (deterministic, no overlap).",
        "  detect split datasets/shapes/annotations.json\n"
        "  detect split gt.json --ratios 0.8 0.2 --seed 3 --out datasets/splits\n",
        _run_split,
    )
    p.add_argument("gt", type=Path, help="COCO JSON to split")
    p.add_argument(
        "--ratios", type=float, nargs="+", default=[0.6, 0.2, 0.2], help="train val [test]"
    )
    p.add_argument("--seed", type=int, default=0, help="shuffle seed")
    p.add_argument("--out", type=Path, help="output folder (default: next to GT)")


# --- train ---


def _run_train(args: argparse.Namespace) -> int:
    from detect.train import train
    from detect.train_config import TrainConfig

    config = TrainConfig.from_args(args)
    result = train(config)
    print(result.summary())
    print(f"outputs in {config.out}")
    return 0


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from detect.train_config import add_train_arguments

    p = _add_verb(
        subparsers,
        "train",
        "Train Faster/Mask R-CNN on COCO-format data (checkpoints, curves, val AP in runs/NAME).",
        "  detect train --data datasets/shapes/train.json --val datasets/shapes/val.json \\\n"
        "      --arch mask_rcnn --backbone resnet50_fpn --epochs 24 --out runs/shapes\n"
        "  detect train --config runs/shapes/config.yaml --resume runs/shapes/last.pt\n"
        "  torchrun --nproc_per_node 2 -m detect train --data train.json --out runs/ddp\n",
        _run_train,
    )
    add_train_arguments(p)


# --- export ---


def _run_export(args: argparse.Namespace) -> int:
    from detect.export import ExportConfig, export

    result = export(
        ExportConfig(
            checkpoint=args.checkpoint,
            out=args.out,
            opset=args.opset,
            fp16=args.fp16,
            verify=args.verify,
        )
    )
    print(f"wrote {result.model} ({result.size_mb:.1f} MB) and {result.card}")
    if not result.passed:
        print("error: parity check FAILED (see the table above)", file=sys.stderr)
        return 1
    return 0


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "export",
        "Export a `detect train` checkpoint to ONNX plus its model card (NAME.json).",
        "  detect export --checkpoint runs/shapes/best.pt --out models/shapes.onnx\n"
        "  detect export --checkpoint runs/shapes/best.pt --out models/shapes-fp16.onnx --fp16 \\\n"
        "      --verify datasets/shapes/images\n",
        _run_export,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="best.pt, last.pt or ckpt_e*.pt")
    p.add_argument("--out", type=Path, required=True, help="output NAME.onnx (card: NAME.json)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--fp16", action="store_true", help="float16 weights and activations")
    p.add_argument(
        "--verify",
        type=Path,
        metavar="IMAGES_DIR",
        help="run the parity check on these images; exit 1 if it fails",
    )


# --- parity ---


def _run_parity(args: argparse.Namespace) -> int:
    from detect.parity import parity

    report = parity(args.checkpoint, args.model, args.images, args.device)
    print(report.table())
    return 0 if report.passed else 1


def _add_parity(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "parity",
        "Compare a checkpoint (PyTorch) with its ONNX export on the same images (exit 1: fail).",
        "  detect parity --checkpoint runs/shapes/best.pt --model models/shapes.onnx "
        "datasets/shapes/images\n",
        _run_parity,
    )
    p.add_argument("images", type=Path, nargs="+", help="image files or folders")
    p.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint exported")
    p.add_argument("--model", type=Path, required=True, help="the exported NAME.onnx")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="ORT device")


# --- predict ---


def _run_predict(args: argparse.Namespace) -> int:
    from detect.predict import PredictConfig, predict

    result = predict(
        PredictConfig(
            inputs=args.images,
            model=args.model,
            out=args.out,
            score=args.score,
            device=args.device,
            max_detections=args.max_detections,
            classes=args.classes,
            polygon_tolerance=args.polygon_tolerance,
            max_pixels=round(args.max_mp * 1_000_000),
        )
    )
    print(result.summary(), file=sys.stderr)
    print(f"outputs in {args.out}", file=sys.stderr)
    return 1 if result.failed else 0


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "predict",
        "Detect objects in images with an exported model: predictions.json, annotated images, "
        "and one `image,top,left,width,height,label,score` line per detection on stdout.",
        "  detect predict photos/ --model models/shapes.onnx --out runs/predict\n"
        "  detect predict a.jpg b.png --model models/shapes.onnx --out out --score 0.3 "
        "--classes circle ring\n",
        _run_predict,
    )
    p.add_argument("images", type=Path, nargs="+", help="image files or folders (recursive)")
    p.add_argument("--model", type=Path, required=True, help="exported NAME.onnx")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--score", type=float, help="score threshold (default: the model card's, 0.5)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="ORT device")
    p.add_argument("--max-detections", type=int, default=100, help="per image, best first")
    p.add_argument("--classes", nargs="+", help="keep only these class names or category ids")
    p.add_argument(
        "--polygon-tolerance", type=float, default=1.0, help="polygon simplification, pixels"
    )
    p.add_argument("--max-mp", type=float, default=50.0, help="refuse images over this many MP")


# --- entry point ---


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detect",
        description="Object detection and instance segmentation: train, export, serve, evaluate.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"detect {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_synth(subparsers)
    _add_import(subparsers)
    _add_split(subparsers)
    _add_train(subparsers)
    _add_export(subparsers)
    _add_parity(subparsers)
    _add_predict(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DetectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`detect predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1

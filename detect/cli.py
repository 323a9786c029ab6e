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
from detect.runtime.model_card import AGNOSTIC_NMS_IOU


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
    if args.video is not None:
        from detect.data.synth_video import write_clip

        width, height = _size(args.video_size)
        path = write_clip(
            args.video,
            frames=args.frames,
            seed=args.seed,
            width=width,
            height=height,
            fps=args.fps,
            objects=args.objects,
            degrade=args.degrade,
        )
        print(f"wrote {args.frames} frames to {args.video} and the ground truth to {path}")
        return 0
    from detect.data.synth import write_dataset

    path = write_dataset(
        args.out, images=args.images, seed=args.seed, size=args.size, degrade=args.degrade
    )
    print(f"wrote {args.images} images and {path}")
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DetectError(f"--video-size {text!r}: use WIDTHxHEIGHT, e.g. 320x240") from None
    return width, height


def _add_synth(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "synth",
        "Generate a synthetic instance-segmentation dataset (COCO JSON + JPEG images), or a "
        "synthetic surveillance clip with per-frame ground truth and identities.",
        "  detect synth --out datasets/shapes --images 200 --seed 0\n"
        "  detect synth --out datasets/cctv --images 200 --seed 1 --size 256 --degrade\n"
        "  detect synth --video clips/street.mp4 --frames 300 --seed 2 --degrade\n",
        _run_synth,
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="output folder of an image dataset")
    target.add_argument("--video", type=Path, help="output .mp4 (ground truth: same name .json)")
    p.add_argument("--images", type=int, default=100, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same annotations)")
    p.add_argument("--size", type=int, default=320, help="image side in pixels")
    p.add_argument(
        "--degrade", action="store_true", help="surveillance-like blur, noise, JPEG, low light"
    )
    p.add_argument("--frames", type=int, default=100, help="--video: number of frames")
    p.add_argument("--fps", type=float, default=10.0, help="--video: frames per second")
    p.add_argument("--objects", type=int, default=6, help="--video: moving objects")
    p.add_argument("--video-size", default="320x240", help="--video: WIDTHxHEIGHT")


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
    from detect.train_config import TrainConfig

    config = TrainConfig.from_args(args)  # torch-free: a bad flag or YAML fails at once

    from detect.train import train

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
            score=args.score,
            agnostic_nms=args.agnostic_nms,
            agnostic_nms_iou=args.agnostic_nms_iou,
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
        "--score",
        type=float,
        default=0.5,
        help="default score threshold written to the card (clients may ask for another)",
    )
    p.add_argument(
        "--agnostic-nms",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="card default: also suppress overlapping boxes of different classes, keeping the "
        "best (clients may ask otherwise)",
    )
    p.add_argument(
        "--agnostic-nms-iou",
        type=float,
        default=AGNOSTIC_NMS_IOU,
        help="IoU above which class-agnostic NMS suppresses a box, written to the card",
    )
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
            agnostic_nms=args.agnostic_nms,
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
    _add_agnostic_nms_flag(p)
    p.add_argument(
        "--polygon-tolerance", type=float, default=1.0, help="polygon simplification, pixels"
    )
    p.add_argument("--max-mp", type=float, default=50.0, help="refuse images over this many MP")


# --- flags shared by the verbs that run or ask for detections ---


def _add_agnostic_nms_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--agnostic-nms",
        action=argparse.BooleanOptionalAction,
        help="suppress overlapping boxes across classes, keeping the highest-scoring one "
        "(default: the model card's)",
    )


# --- flags shared by the verbs that talk to a server ---


def _add_connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls", action="store_true", help="connect with TLS (system CA roots)")
    p.add_argument("--ca", type=Path, help="CA certificate (PEM) to verify the server; implies TLS")
    p.add_argument("--token-file", type=Path, help="bearer token (first line of the file)")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is None:
        return None
    from server.auth import read_tokens

    return read_tokens(args.token_file)[0]


# --- serve ---


def _run_serve(args: argparse.Namespace) -> int:
    from server.app import serve
    from server.config import ServeConfig

    return serve(
        ServeConfig(
            model=args.model,
            host=args.host,
            port=args.port,
            device=args.device,
            max_batch=args.max_batch,
            batch_timeout_ms=args.batch_timeout_ms,
            max_queue=args.max_queue,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            auth_token_file=args.auth_token_file,
            max_message_mb=args.max_message_mb,
            max_pixels=args.max_pixels,
            metrics_port=args.metrics_port,
            grace_s=args.grace,
            warmup_runs=args.warmup_runs,
        )
    )


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "serve",
        "Serve an exported model over gRPC (detect.v1.Detector) with dynamic batching, "
        "health, reflection and Prometheus metrics. Stops cleanly on SIGTERM/SIGINT.",
        "  detect serve --model models/shapes.onnx --port 50051\n"
        "  detect serve --model /models/shapes.onnx --host 0.0.0.0 --device cuda --max-batch 16\n"
        "  detect serve --model m.onnx --tls-cert server.pem --tls-key server.key "
        "--auth-token-file tokens.txt\n",
        _run_serve,
    )
    p.add_argument("--model", type=Path, required=True, help="exported NAME.onnx (card beside it)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (0: any free port)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="ORT device")
    p.add_argument("--max-batch", type=int, default=8, help="most images per model call")
    p.add_argument(
        "--batch-timeout-ms", type=float, default=5.0, help="longest wait for a batch to fill"
    )
    p.add_argument(
        "--max-queue", type=int, default=256, help="waiting requests before RESOURCE_EXHAUSTED"
    )
    p.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM); needs --tls-key")
    p.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    p.add_argument("--tls-client-ca", type=Path, help="require client certificates from this CA")
    p.add_argument(
        "--auth-token-file", type=Path, help="require 'authorization: Bearer T', T a line of this"
    )
    p.add_argument("--max-message-mb", type=float, default=16.0, help="largest request, MiB")
    p.add_argument(
        "--max-pixels", type=int, default=50_000_000, help="refuse larger images (width * height)"
    )
    p.add_argument(
        "--metrics-port", type=int, default=9100, help="Prometheus /metrics port (0: any free)"
    )
    p.add_argument("--grace", type=float, default=10.0, help="seconds to drain calls on SIGTERM")
    p.add_argument(
        "--warmup-runs", type=int, default=1, help="model runs before health reports SERVING"
    )


# --- client ---


def _run_client(args: argparse.Namespace) -> int:
    from detect.client import DetectorClient, ServerError

    if not args.images and not args.info and not args.health:
        raise DetectError("give image files to send, or --info or --health")
    token = _token(args)
    failed = 0
    with DetectorClient(
        args.server,
        tls=args.tls,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        token=token,
        timeout=args.timeout,
    ) as client:
        if args.health:
            status = client.health()
            print(status)
            if status != "SERVING":
                return 1
        if args.info:
            print(client.model_info(), end="")
        for path in args.images:
            try:
                data = path.read_bytes()
            except OSError as exc:
                print(f"error: {path}: cannot read it ({exc.strerror})", file=sys.stderr)
                failed += 1
                continue
            try:
                result = client.detect(
                    data,
                    score_threshold=args.score,
                    max_detections=args.max_detections,
                    classes=args.classes,
                    agnostic_nms=args.agnostic_nms,
                    polygons=False,
                )
            except ServerError as exc:
                if exc.code.name in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"):
                    print(f"error: {path}: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                raise
            for detection in result.detections:
                print(f"{path},{detection.line()}")
    return 1 if failed else 0


def _add_client(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "client",
        "Send images to a `detect serve` server; one `image,top,left,width,height,label,score` "
        "line per detection on stdout.",
        "  detect client street.jpg --server 127.0.0.1:50051\n"
        "  detect client a.jpg b.png --server det.example.com:443 --tls --token-file token.txt\n"
        "  detect client --server 127.0.0.1:50051 --info\n"
        "  detect client --server 127.0.0.1:50051 --health   # exit 0 when SERVING\n",
        _run_client,
    )
    p.add_argument("images", type=Path, nargs="*", help="image files")
    p.add_argument("--server", required=True, help="HOST:PORT of the server")
    p.add_argument("--info", action="store_true", help="print the served model's information")
    p.add_argument(
        "--health", action="store_true", help="print the health status; exit 1 unless SERVING"
    )
    p.add_argument("--score", type=float, help="score threshold (default: the server's model's)")
    p.add_argument("--max-detections", type=int, help="per image, best first (default: all)")
    p.add_argument("--classes", nargs="+", help="keep only these class names or category ids")
    _add_agnostic_nms_flag(p)
    _add_connection_flags(p)
    p.add_argument("--cert", type=Path, help="client certificate (PEM) for mutual TLS")
    p.add_argument("--key", type=Path, help="client private key (PEM) for mutual TLS")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")


# --- bench ---


def _levels(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use comma-separated integers, e.g. 1,8,32"
        ) from None


def _run_bench(args: argparse.Namespace) -> int:
    from detect.bench import BenchConfig, bench

    token = _token(args)
    levels = bench(
        BenchConfig(
            server=args.server,
            concurrency=args.concurrency,
            duration_s=args.duration,
            images=args.images or [],
            synthetic=args.synthetic,
            size=args.size,
            score=args.score,
            polygons=not args.no_polygons,
            compare_eager=args.compare_eager,
            tls=args.tls,
            ca=args.ca,
            token=token,
        )
    )
    return 1 if any(level.requests == 0 for level in levels) else 0


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "bench",
        "Measure a running server: p50/p90/p99 latency and images/s per concurrency level, "
        "optionally against torchvision eager on the same weights.",
        "  detect bench --server 127.0.0.1:50051 --concurrency 1,8,32 --duration 20\n"
        "  detect bench --server 127.0.0.1:50051 --images photos/ "
        "--compare-eager runs/shapes/best.pt\n",
        _run_bench,
    )
    p.add_argument("--server", required=True, help="HOST:PORT of a running `detect serve`")
    p.add_argument(
        "--concurrency", type=_levels, default=[1, 8, 32], help="levels (default: 1,8,32)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    p.add_argument("--images", type=Path, nargs="+", help="images to send (default: synthetic)")
    p.add_argument("--synthetic", type=int, default=16, help="synthetic images when no --images")
    p.add_argument("--size", type=int, default=480, help="side of the synthetic images, pixels")
    p.add_argument("--score", type=float, help="score threshold (default: the model card's)")
    p.add_argument("--no-polygons", action="store_true", help="ask for boxes only")
    p.add_argument(
        "--compare-eager", type=Path, help="checkpoint to run in torchvision eager (train extra)"
    )
    _add_connection_flags(p)


# --- eval ---


def _run_eval(args: argparse.Namespace) -> int:
    from detect.evaluate import EvalConfig, evaluate, stdout_table

    token = _token(args)
    result = evaluate(
        EvalConfig(
            gt=args.gt,
            out=args.out,
            predictions=args.predictions,
            model=args.model,
            checkpoint=args.checkpoint,
            server=args.server,
            images=args.images,
            iou_type=args.iou_type,
            score=args.score,
            agnostic_nms=args.agnostic_nms,
            device=args.device,
            tls=args.tls,
            ca=args.ca,
            token=token,
        )
    )
    print(stdout_table(result.metrics))
    print(f"report in {args.out} (metrics.json, report.md, pr_curves.png, confusion_matrix.png)")
    if result.failed:
        print(f"{len(result.failed)} images could not be predicted; see above", file=sys.stderr)
        return 1
    return 0


def _add_eval(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "eval",
        "Evaluate predictions against COCO ground truth: COCO AP/AR (pycocotools), per-class "
        "P/R/F1 at an operating threshold, confusion matrix, PR curves, proposal recall.",
        "  detect eval --gt data/test.json --model models/shapes.onnx --out runs/eval\n"
        "  detect eval --gt data/test.json --predictions runs/eval/predictions.json --out re\n"
        "  detect eval --gt data/test.json --server 127.0.0.1:50051 --out runs/eval-server\n"
        "  detect eval --gt data/test.json --checkpoint runs/shapes/best.pt --out runs/eval-pt\n",
        _run_eval,
    )
    p.add_argument("--gt", type=Path, required=True, help="COCO ground-truth JSON")
    p.add_argument("--images", type=Path, help="image folder (default: the GT file's folder)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--predictions", type=Path, help="COCO results JSON")
    source.add_argument("--model", type=Path, help="exported NAME.onnx (local ONNX Runtime)")
    source.add_argument("--checkpoint", type=Path, help="training checkpoint (PyTorch)")
    source.add_argument("--server", help="HOST:PORT of a running `detect serve`")
    p.add_argument(
        "--iou-type",
        choices=["bbox", "segm", "both"],
        help="default: both when the predictions have masks, else bbox",
    )
    p.add_argument(
        "--score", type=float, help="operating threshold for P/R/F1 (default: the card's, 0.5)"
    )
    p.add_argument(
        "--agnostic-nms",
        action=argparse.BooleanOptionalAction,
        help="--model/--server: suppress overlapping boxes across classes, keeping the "
        "highest-scoring one (default: the model card's)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="for --model")
    _add_connection_flags(p)


# --- video ---


def _run_video(args: argparse.Namespace) -> int:
    from detect.video import VideoConfig, run_video

    summary = run_video(
        VideoConfig(
            source=args.source,
            model=args.model,
            server=args.server,
            every=args.every,
            target_fps=args.target_fps,
            realtime=args.realtime,
            track=args.track,
            zones=args.zones,
            line=args.line,
            out_video=args.out_video,
            jsonl=args.jsonl,
            score=args.score,
            classes=args.classes,
            agnostic_nms=args.agnostic_nms,
            polygons=not args.no_polygons,
            device=args.device,
            reconnect=args.reconnect,
            retry=args.retry,
            in_flight=args.in_flight,
            max_frames=args.max_frames,
            tls=args.tls,
            ca=args.ca,
            token=_token(args),
        )
    )
    for line in summary.lines():
        print(line)
    outputs = [str(p) for p in (args.out_video, args.jsonl) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))
    return 0


def _add_video(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "video",
        "Detect (and track, and count) objects in a video file, stream or webcam, locally or "
        "through a server; annotated MP4, JSONL per frame, summary.",
        "  detect video clip.mp4 --model models/shapes.onnx --track --out-video out.mp4\n"
        "  detect video rtsp://cam/1 --server 127.0.0.1:50051 --realtime --jsonl cam1.jsonl\n"
        "  detect video clip.mp4 --model m.onnx --zones zones.json --line 0,200,640,200\n",
        _run_video,
    )
    p.add_argument("source", help="video file, rtsp:// or http:// URL, or webcam index")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", type=Path, help="exported NAME.onnx (local ONNX Runtime)")
    where.add_argument("--server", help="HOST:PORT of a running `detect serve`")
    p.add_argument("--every", type=int, default=1, help="process every Nth frame")
    p.add_argument("--target-fps", type=float, help="process this many frames per video second")
    p.add_argument("--realtime", action="store_true", help="drop frames instead of lagging")
    p.add_argument("--track", action="store_true", help="give objects stable track ids")
    p.add_argument("--zones", type=Path, help="zones.json: named polygons to count in")
    p.add_argument("--line", help="x1,y1,x2,y2: count crossings of this line by direction")
    p.add_argument("--out-video", type=Path, help="annotated .mp4")
    p.add_argument("--jsonl", type=Path, help="one JSON line per processed frame")
    p.add_argument("--score", type=float, help="score threshold (default: the model card's)")
    p.add_argument("--classes", nargs="+", help="keep only these class names or category ids")
    _add_agnostic_nms_flag(p)
    p.add_argument("--no-polygons", action="store_true", help="boxes only")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="--model")
    p.add_argument("--reconnect", type=int, default=5, help="reopen attempts for a lost stream")
    p.add_argument(
        "--retry", type=int, default=0, help="--server: reopen after UNAVAILABLE this many times"
    )
    p.add_argument("--in-flight", type=int, default=4, help="--server: frames on their way")
    p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    _add_connection_flags(p)


# --- demo ---


def _run_demo(args: argparse.Namespace) -> int:
    from detect.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=args.out, model=args.model, images=args.images, frames=args.frames))
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    p = _add_verb(
        subparsers,
        "demo",
        "The serving path end to end in a few minutes: serve the committed demo model, send "
        "images and a synthetic surveillance clip through the gRPC API (tracks, zones, line "
        "counts), evaluate on a synthetic test split, print where the outputs are.",
        "  detect demo\n  detect demo --out /tmp/demo --images 8 --frames 30\n",
        _run_demo,
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--model", type=Path, help="model to serve (default: models/demo.onnx)")
    p.add_argument("--images", type=int, default=24, help="synthetic test images")
    p.add_argument("--frames", type=int, default=80, help="frames of the synthetic clip")


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
    _add_serve(subparsers)
    _add_client(subparsers)
    _add_bench(subparsers)
    _add_eval(subparsers)
    _add_video(subparsers)
    _add_demo(subparsers)
    return parser


# Optional dependencies -> the extra that brings them (for a clear message when one is missing).
_EXTRA_OF = {
    "torch": "train",
    "torchvision": "train",
    "albumentations": "train",
    "onnx": "train",
    "pycocotools": "eval",
    "matplotlib": "eval",
    "onnxruntime": "serve",
    "shapely": "serve",
    "grpc": "serve",
    "grpc_health": "serve",
    "grpc_reflection": "serve",
    "google": "serve",
    "prometheus_client": "serve",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DetectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in _EXTRA_OF:
            raise
        extra = _EXTRA_OF[root]
        print(
            f"error: detect {args.verb} needs {root}, which this installation lacks; "
            f"install the `{extra}` extra: pip install 'detect[{extra}]'",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`detect predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1

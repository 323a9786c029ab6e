"""`detect client`: flags from `ClientSettings`' declarations; one
``image,top,left,width,height,label,score`` line per detection on stdout, an image that failed
on stderr; ``--info`` the served model's information as ``key: value`` lines (``--json``: a JSON
object of every GetModelInfo field); exit 1 when an image failed, (``--health``) the server is
not SERVING or (``--reload``) it refused a model version (its reason on stderr)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from detect.client import ClientSettings, connect, send_files
from detect.commands.flags import add_flags, from_flags
from detect.errors import DetectError
from detect.messages import message_dict


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ClientSettings)


def info_text(info: dict[str, Any]) -> str:
    """GetModelInfo's answer (`message_dict` of it) as aligned ``key: value`` lines."""
    spec, batching = info["input"], info["batching"]
    triple = ", ".join
    nms = "on" if info["default_agnostic_nms"] else "off"
    rows = [
        ("model", f"{info['name']} version {info['version']}"),
        ("sha256", info["sha256"]),
        (
            "architecture",
            f"{info['arch']}, backbone {info['backbone']}, RoI {info['roi']}, "
            + ("boxes and masks (polygons)" if info["has_masks"] else "boxes"),
        ),
        ("classes", ", ".join(f"{c['name']} (id {c['class_id']})" for c in info["classes"])),
        (
            "input",
            f"{spec['color']}, shorter side resized to {spec['min_size']} px (longer side at "
            f"most {spec['max_size']} px), mean {triple(map(str, spec['mean']))}, "
            f"std {triple(map(str, spec['std']))}",
        ),
        ("engine", f"{info['provider']}, {info['precision']}"),
        (
            "thresholds",
            f"score {info['default_score_threshold']:g}, mask {info['mask_threshold']:g}; "
            f"agnostic NMS {nms} by default (IoU {info['agnostic_nms_iou']:g})",
        ),
        (
            "batching",
            f"up to {batching['max_batch']} images, waiting up to "
            f"{batching['batch_timeout_ms']:g} ms to fill, at most {batching['max_queue']} queued",
        ),
        (
            "limits",
            f"images up to {info['max_pixels']:,} pixels, requests up to "
            f"{info['max_message_bytes']:,} bytes",
        ),
        ("server", f"detect {info['server_version']}"),
    ]
    width = max(len(key) for key, _ in rows) + 1
    return "\n".join(f"{key + ':':<{width}} {value}" for key, value in rows)


def run(args: argparse.Namespace) -> int:
    settings = from_flags(ClientSettings, args)
    failed = 0
    with connect(settings) as client:
        if settings.health:
            status = client.health()
            print(status)
            if status != "SERVING":
                return 1
        if settings.reload:
            reloaded = client.reload_models()
            for line in reloaded.changes or ["nothing changed"]:
                if line.startswith("refused "):  # the server's reason follows (see the proto)
                    print(f"error: {client.address}: {line}", file=sys.stderr)
                    failed += 1
                else:
                    print(line)
        if settings.list_models:
            listed = client.list_models()
            for info in listed.models:
                default = "  (default)" if info.name == listed.default_model else ""
                print(f"{info.name} {info.version} {info.arch} {info.backbone}{default}")
        if settings.info:
            info = message_dict(client.model_info())
            print(json.dumps(info, indent=2) if settings.json else info_text(info))
        for path, result in send_files(client, settings.images, settings.detection.options()):
            if isinstance(result, DetectError):
                print(f"error: {path}: {result}", file=sys.stderr)
                failed += 1
                continue
            for detection in result.detections:
                print(f"{path},{detection.line()}")
    return 1 if failed else 0

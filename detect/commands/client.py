"""`detect client`: flags from `ClientSettings`' declarations; one
``image,top,left,width,height,label,score`` line per detection on stdout, an image that failed
on stderr; exit 1 when an image failed, (``--health``) the server is not SERVING or
(``--reload``) it refused a model version (its reason on stderr)."""

from __future__ import annotations

import argparse
import sys

from detect.client import ClientSettings, connect, send_files
from detect.commands.flags import add_flags, from_flags
from detect.errors import DetectError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ClientSettings)


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
            print(client.model_info(), end="")
        for path, result in send_files(client, settings.images, settings.detection.options()):
            if isinstance(result, DetectError):
                print(f"error: {path}: {result}", file=sys.stderr)
                failed += 1
                continue
            for detection in result.detections:
                print(f"{path},{detection.line()}")
    return 1 if failed else 0

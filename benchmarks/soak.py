"""Soak `detect serve`: many requests of mixed valid and broken images, its RSS as it goes.

    python benchmarks/soak.py IMAGES... [--model models/demo.onnx] [--requests 20000]
        [--every 2000] [--concurrency 4] [--invalid 0.1] [--backend auto]

Starts ``detect serve`` on a free loopback port (`detect.local_server.LocalServer`) and sends
``--requests`` `Detect` calls from ``--concurrency`` client threads: each image of IMAGES
resized to seven sizes from 256x256 to 4032x3024 (a phone's 12-megapixel photo) and encoded as
JPEG and PNG, and a fraction ``--invalid`` of broken ones (truncated JPEG, random bytes, a PNG
header alone). Every ``--every`` requests it prints the server's resident memory (VmRSS) with
the counts of answers and refusals; at the end, the growth after the first ``--every`` requests
in total and as MB per 1,000 requests (least squares over the checkpoints after the first). The
server must hold: a growth that keeps going means memory is kept per request.
"""

from __future__ import annotations

import argparse
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from detect.client import DetectorClient, RefusedImageError, ServerError
from detect.local_server import LocalServer
from detect.runtime.sources import list_images

SIZES = [  # width, height: thumbnails, camera frames, a 12-megapixel photo
    (256, 256),
    (320, 240),
    (640, 480),
    (800, 600),
    (1280, 720),
    (1920, 1080),
    (4032, 3024),
]


def payloads(images: list[Path], seed: int) -> tuple[list[bytes], list[bytes]]:
    """Valid encoded images (every image at every size, JPEG and PNG) and broken ones."""
    valid = []
    for path in images:
        bgr = cv2.imread(str(path))
        for size in SIZES:
            resized = cv2.resize(bgr, size)
            valid += [cv2.imencode(ext, resized)[1].tobytes() for ext in (".jpg", ".png")]
    rng = random.Random(seed)
    broken = [
        valid[0][: len(valid[0]) // 2],  # truncated JPEG
        rng.randbytes(5000),  # random bytes
        valid[1][:33],  # a PNG signature and header, no data
    ]
    return valid, broken


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--model", type=Path, default=Path("models/demo.onnx"))
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--every", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--invalid", type=float, default=0.1, help="fraction of broken images")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    valid, broken = payloads(list_images(args.images), args.seed)
    rng = random.Random(args.seed)
    plan = [
        rng.choice(broken) if rng.random() < args.invalid else rng.choice(valid)
        for _ in range(args.requests)
    ]
    counts = {"ok": 0, "refused": 0, "other": 0}
    lock = threading.Lock()

    def send(client: DetectorClient, blob: bytes) -> None:
        try:
            client.detect(blob)
            kind = "ok"
        except RefusedImageError:
            kind = "refused"
        except ServerError:
            kind = "other"
        with lock:
            counts[kind] += 1

    done, points = 0, []
    with LocalServer(args.model, "--backend", args.backend).start() as server:
        pid = server.process.pid
        print(f"server pid {pid}, RSS after warm-up {rss_mb(pid):.1f} MB", flush=True)
        with (
            DetectorClient(server.address, timeout=120) as client,
            ThreadPoolExecutor(args.concurrency) as pool,
        ):
            while done < args.requests:
                chunk = plan[done : done + args.every]
                list(pool.map(lambda blob: send(client, blob), chunk))
                done += len(chunk)
                points.append((done, rss_mb(pid)))
                print(
                    f"requests {done:>7}  RSS {points[-1][1]:8.1f} MB  ok {counts['ok']}  "
                    f"refused {counts['refused']}  other errors {counts['other']}",
                    flush=True,
                )
    after = points[1:] if len(points) > 2 else points
    x = np.array([n for n, _ in after], dtype=float)
    y = np.array([mb for _, mb in after])
    slope = np.polyfit(x / 1000, y, 1)[0] if len(after) > 1 else 0.0
    growth = 100 * (points[-1][1] - points[0][1]) / points[0][1]
    print(
        f"growth after the first {points[0][0]} requests: {growth:+.2f} % "
        f"({points[0][1]:.1f} -> {points[-1][1]:.1f} MB), slope {slope:+.3f} MB per 1000 requests"
    )


if __name__ == "__main__":
    main()

"""glibc malloc settings that keep a long-running server's memory where its live data is.

The server decodes images of any size on several threads (gRPC's, the decode workers, the
inference thread). With glibc's defaults, each thread may get its own malloc arena (up to eight
per core), and the threshold above which a block is mmapped (and so returned to the system when
freed) rises to the size of the largest block freed so far, up to 32 MB: after one large photo,
every decoded frame, encoded request and resized copy below that size comes from an arena heap,
and the free space between live blocks stays resident. RSS then wanders by tens of MB with the
mix of sizes (measured: 479, 498, 536, 479 MB after 500 .. 2,000 requests of the soak) instead
of following the live data.

`hold_memory` fixes both at start, before the worker threads exist: at most two arenas, and
every block of 1 MiB or more is mmapped (a fixed threshold also turns the adjustment off), so a
large image's buffers go back to the system when its request ends. It changes nothing on other C
libraries (musl, macOS). ``MALLOC_ARENA_MAX`` and
``MALLOC_MMAP_THRESHOLD_`` set in the environment win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("detect.serve")

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENA_MAX = 2
MMAP_THRESHOLD = 1 << 20


def hold_memory() -> None:
    """Set glibc's arena count and mmap threshold (see the module)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    for param, env, value in (
        (M_ARENA_MAX, "MALLOC_ARENA_MAX", ARENA_MAX),
        (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),
    ):
        if env not in os.environ:
            mallopt(param, value)

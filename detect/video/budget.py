"""`Budget`: the model runs a site's cameras may have under way at once, given first to frames
with motion.

When the cameras together want more than the model gives (a busy hour, a forced frame of every
quiet camera at once), frames wait for a slot: those with motion (``urgent``) before the others
(forced frames, a change of light) that came up to `DEFER_S` before them, otherwise in the order
they came, so a forced frame yields to the busy cameras but is never starved by them. A frame of a
``realtime`` camera waits at most one frame interval: past that a newer frame is on its way, so
it is not run (its tracks are held, its motion seen again next frame, `MotionGate.refused`) and
the camera's coverage drops instead of its lag growing.

A site's ``budget`` key sets the slots: by default 1 for a local model (it runs one frame at a
time) and 2 per server (one running, one on its way); 0 turns the budget off (every camera sends
as its own ``in_flight`` allows). Cameras on Ray (``--ray``) have none: each is its own process.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

DEFER_S = 1.0
"""Seconds a frame without motion lets frames with motion go ahead of it."""


class Budget:
    """At most ``slots`` frames under way at once (see the module docstring)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a budget has at least one slot")
        self.slots = slots
        self._busy = 0
        self._waiting: list[tuple[float, int, threading.Event]] = []  # (turn, arrival, woken)
        self._arrival = itertools.count()
        self._lock = threading.Lock()

    def acquire(
        self,
        urgent: bool,
        timeout: float | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Wait for a slot (by arrival, urgent frames `DEFER_S` ahead), at most ``timeout``
        seconds (None: as long as it takes) or until ``cancelled()`` (checked every 0.25 s);
        whether one was had (then `release` it). The frame keeps its place in line while it
        waits."""
        with self._lock:
            if self._busy < self.slots and not self._waiting:
                self._busy += 1
                return True
            turn = time.monotonic() + (0.0 if urgent else DEFER_S)
            ticket = (turn, next(self._arrival), threading.Event())
            heapq.heappush(self._waiting, ticket)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if ticket[2].wait(max(0.0, left)):
                return True
            if cancelled() or (deadline is not None and time.monotonic() >= deadline):
                break
        with self._lock:
            if ticket[2].is_set():  # given a slot as the wait ended
                return True
            self._waiting.remove(ticket)
            heapq.heapify(self._waiting)
            return False

    def release(self) -> None:
        """Give the slot back: to the first waiting frame, if any."""
        with self._lock:
            if self._waiting:
                heapq.heappop(self._waiting)[2].set()  # the slot passes on, still busy
            else:
                self._busy -= 1

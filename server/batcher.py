"""Dynamic batching: concurrent requests gathered into batches for the model.

A request's image waits in one queue. The batching task takes the oldest waiting image, then
waits until ``max_batch`` images are waiting or ``timeout_ms`` has passed since that image
arrived, and runs what it has (at most ``max_batch``) in one call of ``run`` on a single
inference thread, so the event loop is never blocked and model calls never overlap. While a
batch runs, new requests queue up, so under load batches fill without waiting.

Requests whose caller has gone (cancelled) are skipped; those whose deadline has passed are
failed with `DeadlineExpiredError` without running. A full queue refuses new requests with
`QueueFullError`.

Load shedding: the batcher keeps a moving average of the model's seconds per image (over the
batches run so far). A request with a deadline is refused at once with `OverloadedError` when
its expected answer time (what the batch running now has left, plus every waiting image and its
own at that rate) is past its deadline: under overload a real-time client hears "busy, retry
in N s" at once instead of waiting for its deadline to pass in the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from detect.structures import RawDetections


class QueueFullError(Exception):
    """The queue already holds ``max_queue`` waiting requests."""


class DeadlineExpiredError(Exception):
    """The request's deadline passed before its batch ran."""


class OverloadedError(Exception):
    """The request would be answered after its deadline; ``wait_s`` is the expected wait of a
    request arriving now."""

    def __init__(self, wait_s: float, left_s: float) -> None:
        super().__init__(f"expected wait {wait_s:.2f} s is longer than the {left_s:.2f} s left")
        self.wait_s = wait_s


@dataclass(frozen=True)
class BatchResult:
    """One request's share of a batch run: its raw detections and where the time went."""

    raw: RawDetections
    queue_ms: float
    inference_ms: float
    batch_size: int


@dataclass
class _Job:
    image: np.ndarray
    deadline: float | None  # time.monotonic() seconds
    arrived: float  # time.monotonic() seconds
    future: asyncio.Future[BatchResult]


class Batcher:
    """Gathers `submit` calls into calls of ``run(images) -> raw detections, same order``.

    ``on_batch(size, seconds)`` and ``on_queue(depth)`` report to metrics. Create and use it on
    one event loop; `start` before the first `submit`, `stop` after the last.
    """

    def __init__(
        self,
        run: Callable[[list[np.ndarray]], list[RawDetections]],
        max_batch: int,
        timeout_ms: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
        on_queue: Callable[[int], None] = lambda depth: None,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.timeout_s = timeout_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._waiting: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self.image_s: float | None = None  # moving average of model seconds per image
        self._running = 0  # images in the batch running now
        self._running_since = 0.0

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch running)."""
        return len(self._waiting)

    def expected_wait(self) -> float:
        """Seconds until a request arriving now would have its answer from the model: the rest
        of the running batch, the waiting images, and its own (0 before the first batch)."""
        if self.image_s is None:
            return 0.0
        running_left = self._running * self.image_s - (time.monotonic() - self._running_since)
        return max(0.0, running_left) + (len(self._waiting) + 1) * self.image_s

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Stop after the batch running now; fail anything still waiting."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in self._waiting:
            if not job.future.done():
                job.future.set_exception(RuntimeError("server stopped before this request ran"))
        self._waiting.clear()
        self._executor.shutdown(wait=True)

    async def submit(self, image: np.ndarray, deadline: float | None = None) -> BatchResult:
        """Queue one ``(H, W, 3) uint8`` RGB image; its result once its batch has run.

        ``deadline`` is a `time.monotonic` time. Raises `QueueFullError`, `OverloadedError` (at
        once, when the expected wait runs past the deadline) or `DeadlineExpiredError`.
        """
        if len(self._waiting) >= self.max_queue:
            raise QueueFullError(f"{len(self._waiting)} requests are already waiting")
        if deadline is not None:
            wait_s = self.expected_wait()
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise DeadlineExpiredError("the deadline had passed when the request arrived")
            if wait_s > left_s:
                raise OverloadedError(wait_s, left_s)
        job = _Job(image, deadline, time.monotonic(), asyncio.get_running_loop().create_future())
        job.future.add_done_callback(lambda _: self._forget(job))
        self._waiting.append(job)
        self._on_queue(len(self._waiting))
        self._wake.set()
        return await job.future

    def _forget(self, job: _Job) -> None:
        """Drop a cancelled job from the queue at once, so it frees its slot."""
        if job.future.cancelled():
            try:
                self._waiting.remove(job)
            except ValueError:
                return  # already taken into a batch
            self._on_queue(len(self._waiting))

    async def _loop(self) -> None:
        while True:
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            first = self._waiting[0].arrived
            while len(self._waiting) < self.max_batch:
                remaining = first + self.timeout_s - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            # in a call of its own, so that no local keeps the batch's images (a 12-MP photo
            # decodes to 36 MB) alive while the loop waits for the next request
            await self._run_batch(self._take())

    async def _run_batch(self, batch: list[_Job]) -> None:
        """Run one batch on the executor and settle its jobs' futures. Whatever fails (the
        model, its answers, a callback) fails the requests of this batch not yet answered, and
        the batcher goes on: an exception escaping here would end `_loop`, and every later
        request would wait for its deadline."""
        if not batch:
            return
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._running, self._running_since = len(batch), started
        try:
            raws = await loop.run_in_executor(
                self._executor, self._run, [job.image for job in batch]
            )
            seconds = time.monotonic() - started
            per_image = seconds / len(batch)
            previous = per_image if self.image_s is None else self.image_s
            self.image_s = 0.8 * previous + 0.2 * per_image
            self._on_batch(len(batch), seconds)
            for job, raw in zip(batch, raws, strict=True):
                if not job.future.done():
                    job.future.set_result(
                        BatchResult(raw, 1000 * (started - job.arrived), 1000 * seconds, len(batch))
                    )
        except Exception as exc:  # handed to every request of the batch not yet answered
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        finally:
            self._running = 0

    def _take(self) -> list[_Job]:
        """Up to ``max_batch`` live jobs from the front of the queue."""
        now = time.monotonic()
        batch: list[_Job] = []
        while self._waiting and len(batch) < self.max_batch:
            job = self._waiting.popleft()
            if job.future.done():
                continue
            if job.deadline is not None and job.deadline <= now:
                job.future.set_exception(DeadlineExpiredError("the deadline passed while queued"))
                continue
            batch.append(job)
        self._on_queue(len(self._waiting))
        return batch

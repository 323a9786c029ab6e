"""Frames through a `detect serve` server: one ``DetectStream`` call, resent after UNAVAILABLE.

Raw BGR pixels are sent (no re-encoding), so the server sees the pixels a local backend would.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from detect.client import DetectorClient, Frame, MessageTooLargeError, ServerError
from detect.structures import Detections, DetectOptions
from detect.video.run import StreamLostError, take_slot, timed_read
from detect.video.source import FrameSource, attempt_label, attempts_left, backoff
from detect.video.stages import StageTimes

if TYPE_CHECKING:
    from detect.video.budget import Budget
    from detect.video.motion import MotionGate

log = logging.getLogger(__name__)


Result = tuple[int, float, np.ndarray, Detections | None]
"""``(frame index, timestamp ms, frame (H, W, 3) uint8 BGR, detections)``; detections None: the
server dropped the frame (its deadline could not be met)."""


def stream(
    client: DetectorClient,
    frames: FrameSource,
    options: DetectOptions,
    in_flight: int = 4,
    retry: int | None = 0,
    frame_deadline_ms: int = 0,
    on_move: Callable[[], None] = lambda: None,
    items: Iterator[tuple[int, float, np.ndarray]] | None = None,
) -> Iterator[Result]:
    """Results of one ``DetectStream`` call with up to ``in_flight`` frames on their way,
    reopened after UNAVAILABLE up to ``retry`` times in a row (None: for ever); frames the
    server cannot start within ``frame_deadline_ms`` (0: no limit) come back dropped. A server
    that goes away after answering frames, past the retries, is a `StreamLostError`; an error of
    the source (no frame can be read, ...) is raised as it is, not as the stream's.

    With several servers (``client.balanced``), a stream whose server went away (killed, or
    draining) after answering frames is opened again at once, on a server round_robin picks
    among the healthy ones, without counting as a retry; ``on_move`` is told. A stream that
    fails before answering anything goes by ``retry``, as with one server.

    The request generator runs on gRPC's thread; it pulls frames from one shared iterator
    (``items``, else ``frames``'), so a reopened stream goes on where the failed one stopped,
    after sending again, in order, the frames that were in flight when the server went away.
    """
    source = iter(frames) if items is None else items
    pull = threading.Lock()  # one generator at a time: the old call's may still be running
    pending: dict[str, tuple[int, float, np.ndarray]] = {}  # sent, not answered
    backlog: list[tuple[int, float, np.ndarray]] = []  # in flight when a call failed
    current = [0]  # the live call's number; older generators stop at their next pull
    failed: list[BaseException] = []  # the source's error, raised here, not as the stream's
    attempt = 0
    answered = 0
    answered_before = 0  # by the calls before the live one

    def requests(mine: int, slots: threading.Semaphore) -> Iterator[Frame]:
        while True:
            while not slots.acquire(timeout=0.5):
                if frames.stopped.is_set() or current[0] != mine:
                    return
            with pull:
                if current[0] != mine:
                    return
                try:
                    item = backlog.pop(0) if backlog else next(source, None)
                except Exception as exc:  # gRPC would end the call with UNKNOWN instead
                    failed.append(exc)
                    return
                if item is None:
                    return
                index, timestamp, frame = item
                pending[str(index)] = item
            yield Frame(frame, str(index), round(timestamp), "BGR")

    while True:
        slots = threading.Semaphore(in_flight)
        results = client.detect_stream(
            requests(current[0], slots), options=options, frame_deadline_ms=frame_deadline_ms
        )
        try:
            for result in results:
                attempt, answered = 0, answered + 1
                index, timestamp, frame = pending.pop(result.frame_id)
                slots.release()
                detections = None if result.dropped else Detections.from_list(result.detections)
                yield index, timestamp, frame, detections
            if failed:
                raise failed[0]
            return
        except ServerError as exc:
            if failed:
                raise failed[0] from None
            with pull:
                current[0] += 1
                backlog[:0] = sorted(pending.values(), key=lambda item: item[0])
                pending.clear()
            if isinstance(exc, MessageTooLargeError):
                where = f"a frame of {frames.config.source}"
                raise MessageTooLargeError(exc.size, exc.limit, where) from None
            if exc.code != grpc.StatusCode.UNAVAILABLE:
                raise
            if client.balanced and answered > answered_before:
                answered_before = answered
                on_move()
                log.warning(
                    "%s: %s; the stream goes on on another server (%d frames sent again)",
                    frames.config.name or frames.config.source,
                    exc,
                    len(backlog),
                )
                continue
            if not attempts_left(attempt, retry):
                if answered:
                    tries = f" (and {attempt} retries)" if attempt else ""
                    raise StreamLostError(
                        f"the server at {client.address} went away mid-stream{tries}"
                    ) from None
                raise
            pause = backoff(attempt)
            attempt += 1
            label = attempt_label(attempt, retry)
            log.warning("%s; retrying in %g s (%s)", exc, pause, label)
            with frames.reconnection():
                if frames.stopped.wait(pause):
                    return


Gated = tuple[int, float, np.ndarray, Detections | None, str]
"""A `Result` and the motion gate's reason (`detect.video.motion`): ``still`` frames were not
sent (their detections None: the last inferred frame's stand)."""


def gated_stream(
    client: DetectorClient,
    frames: FrameSource,
    gate: MotionGate | None,
    options: DetectOptions,
    in_flight: int = 4,
    retry: int | None = 0,
    frame_deadline_ms: int = 0,
    on_move: Callable[[], None] = lambda: None,
    budget: Budget | None = None,
    wait: float | None = None,
    stages: StageTimes | None = None,
) -> Iterator[Gated]:
    """`stream`'s results, and between them, in the source's order, the frames that ``gate``
    kept from the server (``still``) and those refused a slot of the site's ``budget`` within
    ``wait`` seconds (``budget``; `detect.video.run.take_slot`).

    A reader thread takes each frame from the source and asks the gate; the frames with motion
    go to `stream` (running on a thread of its own), the still ones wait in line only behind
    frames sent before them, so a quiet camera's frames come out as they are read, not at its
    next motion. At most ``in_flight`` frames wait in line (the source is not read
    further ahead). An error of either thread is raised here, after the frames before it.
    ``stages`` gets the time of reading, the gate, the budget's queue and the server's round
    trip (``model``: from the frame's turn to be sent to its answer).
    """
    stages = stages or StageTimes()
    line: deque[list[Any]] = deque()  # [index, timestamp, frame, why, detections, ready, sent at]
    sent: dict[int, list[Any]] = {}
    to_send: queue.Queue[tuple[int, float, np.ndarray] | None] = queue.Queue()
    ready = threading.Condition()
    errors: list[BaseException] = []
    running = [2]  # threads not finished
    closing = threading.Event()
    room = in_flight

    def halted() -> bool:
        return closing.is_set() or frames.stopped.is_set()

    def read() -> None:
        try:
            for index, timestamp, frame in timed_read(frames, stages):
                why = ""
                if gate is not None:
                    with stages.timed("motion"):
                        why = gate.decide(frame, timestamp)
                if why != "still" and budget is not None:
                    with stages.timed("queue"):
                        slot = take_slot(budget, why, wait, halted)
                    if not slot:
                        if gate is not None:
                            gate.refused()
                        why = "budget"
                    elif errors or closing.is_set():  # the stream has ended: nobody answers
                        budget.release()
                        return
                held = why in ("still", "budget")
                entry = [index, timestamp, frame, why, None, held, time.perf_counter()]
                with ready:
                    while len(line) >= room and not closing.is_set():
                        ready.wait(0.5)
                    if closing.is_set():
                        return
                    line.append(entry)
                    if not held:
                        sent[index] = entry
                    ready.notify_all()
                if not held:
                    to_send.put((index, timestamp, frame))
        except BaseException as exc:  # the source's error, raised by the caller's thread
            errors.append(exc)
        finally:
            to_send.put(None)
            with ready:
                running[0] -= 1
                ready.notify_all()

    def answer() -> None:
        try:
            results = stream(
                client,
                frames,
                options,
                in_flight,
                retry,
                frame_deadline_ms,
                on_move,
                iter(to_send.get, None),
            )
            for index, _, _, detections in results:
                if budget is not None:
                    budget.release()
                with ready:
                    entry = sent.pop(index)
                    entry[4], entry[5] = detections, True
                    ready.notify_all()
                stages.add("model", time.perf_counter() - entry[6])
        except BaseException as exc:
            errors.append(exc)
        finally:
            with ready:
                unanswered = len(sent)
            for _ in range(unanswered if budget is not None else 0):
                budget.release()  # type: ignore[union-attr]
            with ready:
                running[0] -= 1
                ready.notify_all()

    threads = [threading.Thread(target=t, daemon=True) for t in (read, answer)]
    for thread in threads:
        thread.start()
    try:
        while True:
            with ready:
                while not (line and line[0][5]) and not errors and (line or running[0]):
                    ready.wait()
                if not (line and line[0][5]):
                    if errors:
                        raise errors[0]
                    return
                index, timestamp, frame, why, detections, *_ = line.popleft()
                ready.notify_all()
            yield index, timestamp, frame, detections, why
    finally:  # both threads end before the caller goes on (and before the process exits)
        closing.set()
        to_send.put(None)
        with ready:
            ready.notify_all()
        for thread in threads:
            thread.join(timeout=10)

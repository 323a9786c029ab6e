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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import numpy as np

from detect.client import DetectorClient, Frame, MessageTooLargeError, ServerError
from detect.structures import Detections, DetectOptions
from detect.video.motion import HELD
from detect.video.run import StreamLostError, admit, timed_read
from detect.video.source import FrameSource, attempt_label, attempts_left, backoff
from detect.video.stages import StageTimes

if TYPE_CHECKING:
    from detect.video.budget import Budget
    from detect.video.motion import MotionGate

log = logging.getLogger(__name__)


END = object()
"""The end of ``stream``'s ``items``."""

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
    *,
    items: Iterator[tuple[int, float, np.ndarray] | None],
    halted: Callable[[], bool],
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

    The request generator runs on gRPC's thread; it pulls frames from one shared iterator,
    ``items`` (``frames``' after `gated_stream`'s gate), so a reopened stream goes on where the
    failed one stopped, after sending again, in order, the frames that were in flight when the
    server went away. ``items`` may give None while it has no frame yet (a quiet camera), so
    that a failed call's generator is not left waiting on it. ``halted()`` ends the stream
    between frames and its retry pauses.
    """
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
                if halted() or current[0] != mine:
                    return
            with pull:
                if current[0] != mine:
                    return
                try:
                    item = backlog.pop(0) if backlog else next(items, END)
                except Exception as exc:  # gRPC would end the call with UNKNOWN instead
                    failed.append(exc)
                    return
                if item is END:
                    return
                if item is not None:
                    index, timestamp, frame = item
                    pending[str(index)] = item
            if item is None:  # nothing to send yet: look again, the lock let go
                slots.release()
                if halted():
                    return
                continue
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
                until = time.monotonic() + pause
                while time.monotonic() < until:
                    if halted():
                        return
                    time.sleep(min(0.1, max(0.0, until - time.monotonic())))


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
    ``wait`` seconds (``budget``; `detect.video.run.admit`).

    A reader thread takes each frame from the source, asks the gate, waits for room in line
    (at most ``in_flight`` frames: the source is not read further ahead) and then for a budget
    slot; the frames to run go to `stream` (on a thread of its own), the others wait in line
    only behind frames sent before them, so a quiet camera's frames come out as they are read,
    not at its next motion. Each slot is given back once: when its frame is answered, or when
    the stream ends without answering it. When both threads have ended, the frames still
    waiting for an answer are left out (a stop, or the server lost: that error is raised after
    the frames answered before it). ``stages`` gets the time of reading, the gate, the budget's
    queue and the server's round trip (``model``: from sending to the answer).
    """
    stages = stages or StageTimes()
    line: deque[_Entry] = deque()
    sent: dict[int, _Entry] = {}
    to_send: queue.Queue[tuple[int, float, np.ndarray] | object] = queue.Queue()
    ready = threading.Condition()
    errors: list[BaseException] = []
    answered_all = threading.Event()  # the answer thread has ended: nothing more is answered
    closing = threading.Event()

    def halted() -> bool:
        return closing.is_set() or frames.stopped.is_set() or answered_all.is_set()

    def give_back(entry: _Entry) -> None:
        with ready:
            holds, entry.slot = entry.slot, False
        if holds and budget is not None:
            budget.release()

    def read() -> None:
        try:
            for index, timestamp, frame in timed_read(frames, stages):
                why = ""
                if gate is not None:
                    with stages.timed("motion"):
                        why = gate.decide(frame, timestamp)
                with ready:
                    while len(line) >= in_flight and not halted():
                        ready.wait(0.25)
                    if halted():
                        return
                slot = False
                if why not in HELD and budget is not None:
                    queued = time.perf_counter()
                    why = admit(budget, why, wait, halted, gate)
                    stages.add("queue", time.perf_counter() - queued)
                    slot = why != "budget"
                entry = _Entry(index, timestamp, frame, why, held=why in HELD, slot=slot)
                with ready:
                    line.append(entry)
                    if not entry.held:
                        sent[index] = entry
                    ready.notify_all()
                if not entry.held:
                    entry.sent_at = time.perf_counter()
                    to_send.put((index, timestamp, frame))
        except BaseException as exc:  # the source's error, raised by the caller's thread
            errors.append(exc)
        finally:
            to_send.put(END)

    def items() -> Iterator[tuple[int, float, np.ndarray] | None]:
        while True:
            try:
                item = to_send.get(timeout=0.25)
            except queue.Empty:
                yield None  # nothing yet: `stream`'s generator lets its lock go
                continue
            if item is END:
                return
            yield item  # type: ignore[misc]

    def answer() -> None:
        try:
            how = (options, in_flight, retry, frame_deadline_ms, on_move)
            answers = stream(client, frames, *how, items=items(), halted=halted)
            for index, _, _, detections in answers:
                with ready:
                    entry = sent.pop(index)
                    entry.detections, entry.held = detections, True
                    ready.notify_all()
                stages.add("model", time.perf_counter() - entry.sent_at)
                give_back(entry)
        except BaseException as exc:
            errors.append(exc)
        finally:
            with ready:
                answered_all.set()
                ready.notify_all()

    threads = [threading.Thread(target=t, daemon=True) for t in (read, answer)]
    for thread in threads:
        thread.start()
    try:
        while True:
            with ready:
                # the answer thread ends last (the reader's end ends its stream): after it, no
                # frame still in line will be answered
                while not (line and line[0].held) and not answered_all.is_set():
                    ready.wait(0.25)
                if not (line and line[0].held):
                    if errors:
                        raise errors[0]
                    return
                entry = line.popleft()
                ready.notify_all()
            yield entry.index, entry.timestamp, entry.frame, entry.detections, entry.why
    finally:  # both threads end before the caller goes on (and before the process exits)
        closing.set()
        to_send.put(END)
        with ready:
            ready.notify_all()
        for thread in threads:
            thread.join(timeout=10)
        for entry in [*line, *sent.values()]:
            give_back(entry)


@dataclass(eq=False)
class _Entry:
    """A frame in `gated_stream`'s line: ``held`` once it may come out (kept from the server, or
    answered: ``detections``), ``slot`` while it holds a budget slot."""

    index: int
    timestamp: float
    frame: np.ndarray
    why: str
    held: bool
    slot: bool
    detections: Detections | None = None
    sent_at: float = 0.0

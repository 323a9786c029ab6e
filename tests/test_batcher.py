"""`server.batcher.Batcher` on a real event loop with a real (slow, recording) model function."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from detect.structures import RawDetections
from server.batcher import Batcher, DeadlineExpiredError, OverloadedError, QueueFullError


class Model:
    """Records the batches it is given; each call takes ``seconds`` or waits for ``gate``."""

    def __init__(self, seconds: float = 0.0, gate: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.gate = gate
        self.batches: list[list[int]] = []

    def __call__(self, images: list[np.ndarray]) -> list[RawDetections]:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.seconds)
        self.batches.append([int(image[0, 0, 0]) for image in images])
        return [
            RawDetections(
                np.zeros((1, 4), np.float32),
                np.array([image[0, 0, 0] / 255], np.float32),
                np.ones(1, np.int64),
                image.shape[:2],
            )
            for image in images
        ]


def _image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, np.uint8)


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_gathered_into_batches_of_at_most_max_batch() -> None:
    model = Model(seconds=0.05)

    async def scenario():
        batcher = Batcher(model, max_batch=8, timeout_ms=5, max_queue=100)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(_image(i)) for i in range(20)))
        await batcher.stop()
        return results

    results = run(scenario())
    assert [round(float(r.raw.scores[0]) * 255) for r in results] == list(range(20))
    assert sorted(v for batch in model.batches for v in batch) == list(range(20))
    assert max(map(len, model.batches)) == 8 and len(model.batches) <= 4
    size_of = {v: len(batch) for batch in model.batches for v in batch}
    assert [r.batch_size for r in results] == [size_of[i] for i in range(20)]


def test_a_lone_request_waits_at_most_the_timeout_and_late_ones_join_it() -> None:
    model = Model()

    async def scenario():
        batcher = Batcher(model, max_batch=8, timeout_ms=200, max_queue=100)
        batcher.start()
        started = time.monotonic()
        first = asyncio.ensure_future(batcher.submit(_image(1)))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(_image(2)))
        await asyncio.gather(first, second)
        waited = time.monotonic() - started
        await batcher.stop()
        return waited, first.result()

    waited, first = run(scenario())
    assert model.batches == [[1, 2]]
    assert 0.15 <= waited < 1.0 and first.queue_ms >= 150


def test_full_queue_refuses_and_a_cancelled_request_frees_its_slot_without_running() -> None:
    gate = threading.Event()
    model = Model(gate=gate)

    async def scenario():
        batcher = Batcher(model, max_batch=1, timeout_ms=0, max_queue=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(_image(1)))
        await asyncio.sleep(0.05)  # taken into a batch, blocked on the gate
        waiting = [asyncio.ensure_future(batcher.submit(_image(v))) for v in (2, 3)]
        await asyncio.sleep(0.05)
        assert batcher.depth == 2
        with pytest.raises(QueueFullError):
            await batcher.submit(_image(4))
        waiting[0].cancel()
        await asyncio.sleep(0.05)
        assert batcher.depth == 1
        extra = asyncio.ensure_future(batcher.submit(_image(5)))  # room again
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(running, waiting[1], extra)
        await batcher.stop()

    run(scenario())
    assert model.batches == [[1], [3], [5]]


def test_expired_deadline_fails_without_running_and_a_failing_batch_fails_only_its_requests():
    calls = []

    def flaky(images: list[np.ndarray]) -> list[RawDetections]:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return Model()(images)

    async def scenario():
        batcher = Batcher(flaky, max_batch=4, timeout_ms=0, max_queue=10)
        batcher.start()
        with pytest.raises(DeadlineExpiredError):
            await batcher.submit(_image(1), deadline=time.monotonic() - 1)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(_image(2))
        result = await batcher.submit(_image(3))
        await batcher.stop()
        return result

    result = run(scenario())
    assert calls == [1, 1] and result.batch_size == 1


def test_a_deadline_the_queue_cannot_meet_is_refused_at_once_with_the_expected_wait() -> None:
    model = Model(seconds=0.1)  # 0.1 s per batch of one

    async def scenario():
        batcher = Batcher(model, max_batch=1, timeout_ms=0, max_queue=100)
        batcher.start()
        await batcher.submit(_image(0))  # the first batch measures the model: 0.1 s per image
        queued = [asyncio.ensure_future(batcher.submit(_image(i))) for i in range(1, 11)]
        await asyncio.sleep(0.01)
        wait_s = batcher.expected_wait()  # ten images ahead: about a second
        started = time.monotonic()
        with pytest.raises(OverloadedError) as refused:
            await batcher.submit(_image(99), deadline=time.monotonic() + 0.3)
        refused_after = time.monotonic() - started
        generous = await batcher.submit(_image(50), deadline=time.monotonic() + 30)
        results = await asyncio.gather(*queued)
        await batcher.stop()
        return wait_s, refused.value, refused_after, generous, results

    wait_s, refused, refused_after, generous, results = run(scenario())
    assert 0.8 < wait_s < 1.5
    assert refused_after < 0.05  # at once, not after the deadline
    assert 0.8 < refused.wait_s < 1.5
    assert round(float(generous.raw.scores[0]) * 255) == 50
    assert len(results) == 10
    assert 99 not in [v for batch in model.batches for v in batch]  # it never ran


def test_a_batch_whose_answers_fail_fails_its_requests_and_the_batcher_goes_on() -> None:
    """A model that answers one image short fails the request left without an answer at once;
    the next request is answered (the batcher's task used to end, and it waited for ever)."""
    model = Model()
    short = {"first": True}

    def answers_short(images: list[np.ndarray]) -> list[RawDetections]:
        raws = model(images)
        if short.pop("first", False):
            return raws[:-1]
        return raws

    async def scenario():
        batcher = Batcher(answers_short, max_batch=2, timeout_ms=50, max_queue=10)
        batcher.start()
        both = asyncio.gather(
            batcher.submit(_image(1)), batcher.submit(_image(2)), return_exceptions=True
        )
        failed = await asyncio.wait_for(both, 5)
        answered = await asyncio.wait_for(batcher.submit(_image(3)), 5)
        await batcher.stop()
        return failed, answered

    failed, answered = run(scenario())
    assert isinstance(failed[1], ValueError), failed
    assert round(float(answered.raw.scores[0]) * 255) == 3

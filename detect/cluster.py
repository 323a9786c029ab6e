"""Offline work on Ray (``--ray [ADDRESS]``): one Ray Data pipeline that runs a per-item step
(an image file, or a whole video clip) on an actor pool, each actor holding one backend.

`RayPool` connects (a Ray started on this machine, or a running cluster) and `RayPool.each`
runs ``ray.data.from_items`` of ``(key, item)`` -> ``map_batches`` on an
``ActorPoolStrategy(size=workers)`` of `_Worker` actors. Each actor opens the backend once
(`detect.runtime.backend.open_backend`, the same ONNX Runtime or OpenVINO engine on the CPU or
CUDA as a run without Ray) and calls on it the very step a run without Ray calls
(`detect.predict.annotate_each` for predict, `detected_each` for eval,
`detect.video.archive.clips_each` for a video archive), so answers are the same. The outcomes
stream back to the driver, which yields them in key order (duplicates dropped), for it to write
today's files. A bad image or clip is an outcome like any other (its error, as without Ray).

Faults: an actor that dies (its process killed, its machine gone) is restarted by Ray and its
unfinished batches run again (Ray Data's actor pools default to ``max_restarts`` and
``max_task_retries`` -1); a batch done is reported once. Workers read the image files, clips and
model by their absolute paths (and a clip's worker writes its outputs), so on a cluster those
paths must be the same on every machine (shared storage), and `detect` must be installed there
(the ``ray`` extra).

Ray itself is imported only here, when asked for; an installation without it gets the CLI's
one line naming the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import re
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from detect.config import LOCAL_RAY, Cluster
from detect.errors import DetectError
from detect.progress import Progress, StartProgress
from detect.runtime.backend import Backend, Detected, detect_each, open_backend
from detect.structures import DetectOptions

EachItem = Callable[[Backend, list[tuple[int, Any]], Any], Iterable[tuple[int, Any]]]
"""A per-item step: ``(backend, [(key, item)], options)`` -> ``(key, outcome)`` per item (an
image's path, a clip's job), items and outcomes picklable (they travel between the driver and
the actors)."""

BATCH = 16
"""Images per ``map_batches`` call: enough that Ray's cost per call is small beside the model's
(at 4, each image took about 5 % longer with 2 workers on 2 cores), few enough
that every worker gets some of a small run."""

CPUS_PER_WORKER = 0.5
"""Ray's CPU share of an actor (the engine itself uses every core it finds). On 2 cores a pool of
2 actors at 1 CPU each left none for Ray Data's own tasks and hung; at 0.5 it ran."""

ALIVE_EVERY_S = 1.0
"""How often the progress's count of workers alive is asked of Ray, at most."""

_WORKER_STATES = {"ALIVE": "alive", "RESTARTING": "restarting", "DEAD": "finished"}
"""Ray's actor states as the progress says them (the others: starting)."""

PROBE_S = 5.0
"""How long an address may take to accept a TCP connection before it counts as not answering."""


def worker_threads(cpus: float, workers: int) -> int:
    """Intra-op threads of each worker's engine when not given (``--threads 0``): its share of
    the cluster's ``cpus``, at least 1, so that the workers together use each core once
    instead of each engine taking every core of its machine."""
    return max(1, int(cpus // workers))


class ClusterError(DetectError):
    """A Ray cluster that cannot be reached or used."""


def detected_each(
    backend: Backend, items: list[tuple[int, Path]], options: DetectOptions
) -> Iterator[tuple[int, Detected | DetectError]]:
    """`detect_each` with each image's pixels left out of its `Detected` (they would travel back
    for nothing): its detections (xyxy pixels, best first) and size ``(height, width)``."""
    for key, detected in detect_each(backend, items, options):
        if isinstance(detected, DetectError):
            yield key, detected
        else:
            yield key, Detected(detected.detections, detected.image_size)


class _Worker:
    """A Ray actor: one backend, opened once; each batch of ``key``/``item`` rows (the item
    pickled) through ``each``, the outcomes pickled (one ``outcome`` bytes column beside
    ``key``)."""

    def __init__(self, backend: dict[str, Any], each: EachItem, options: Any) -> None:
        self.backend = open_backend(**backend)
        self.each = each
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = zip(batch["key"], batch["item"], strict=True)
        items = [(int(key), pickle.loads(item)) for key, item in rows]
        done = list(self.each(self.backend, items, self.options))
        return {
            "key": np.array([key for key, _ in done], dtype=np.int64),
            "outcome": np.array([pickle.dumps(outcome) for _, outcome in done], dtype=object),
        }


def connect(cluster: Cluster) -> str:
    """Connect this process to Ray as ``cluster.ray`` says (`LOCAL_RAY`: a Ray started on this
    machine, stopped by ``ray.shutdown()``; else ``auto`` or an address to join); the address. A
    `ClusterError` naming ``--ray`` and the fix when no cluster answers."""
    import ray

    address = cluster.ray
    assert address is not None
    if address not in (LOCAL_RAY, "auto"):
        _probe(address)
    try:
        with _quiet_native_stderr():
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
    except ConnectionError as exc:  # `auto` with no cluster here, or a refused handshake
        if address == "auto":
            fix = "start one with `ray start --head` or give its address"
            where = "runs on this machine"
        else:
            fix = (
                "check the address (a cluster with token authentication also needs its "
                "token in RAY_AUTH_TOKEN)"
            )
            where = f"answers there ({exc})"
        raise ClusterError(f"{_flag(address)}: no Ray cluster {where}; {fix}") from None
    _messages_to_stderr()
    return address


class RayPool:
    """A connection to Ray for one run (`close` disconnects, and stops a Ray it started).
    ``backend``: `open_backend`'s keywords for the actors; ``device``: theirs, which decides the
    default workers and GPUs (`Cluster`)."""

    def __init__(self, cluster: Cluster, backend: dict[str, Any]) -> None:
        import ray

        self.cluster = cluster
        self._shown: Progress | None = None
        self._noted = -math.inf
        self.backend = backend | {"model": Path(backend["model"]).absolute()}
        cuda = backend.get("device") == "cuda"
        address = connect(cluster)
        free = ray.available_resources()
        if cluster.workers is not None:
            self.workers = cluster.workers
        elif cuda:
            self.workers = max(1, int(free.get("GPU", 0)))
        else:
            self.workers = max(1, int(free.get("CPU", 1)))
        gpus = cluster.gpus_per_worker
        self.gpus = gpus if gpus is not None else (1.0 if cuda else 0.0)
        resources = ray.cluster_resources()
        _check_room(resources, self.workers, self.gpus, address)
        if not backend.get("threads"):
            threads = worker_threads(resources.get("CPU", 1), self.workers)
            self.backend |= {"threads": threads}

    def progress(self, start: StartProgress) -> StartProgress:
        """``start``, its progress noting how many of the pool's workers are alive (``workers
        2/2 alive``), and of the others how many are starting, restarting (killed, Ray starts
        it again) or finished (let go by Ray Data when no work is left for it); kept up to date
        by `each`."""

        def noted(what: str, total: int | None, unit: str) -> Progress:
            self._shown = start(what, total, unit)
            self._shown.note(f"workers 0/{self.workers} alive, starting")
            return self._shown

        return noted

    def _note_alive(self) -> None:
        """The progress's note: this run's workers alive now, at most once a second. Ray's
        actor table has no public reader without its dashboard: ``ray._private.state`` (ray
        2.60)."""
        import ray
        from ray._private import state

        now = time.monotonic()
        if self._shown is None or now - self._noted < ALIVE_EVERY_S:
            return
        self._noted = now
        job = ray.get_runtime_context().get_job_id()
        states = Counter(
            _WORKER_STATES.get(actor["State"], "starting")
            for actor in state.actors().values()
            if actor["JobID"] == job and actor["ActorClassName"].endswith(f"({_Worker.__name__}))")
        )
        others = [f"{states[s]} {s}" for s in ("starting", "restarting", "finished") if states[s]]
        self._shown.note(", ".join([f"workers {states['alive']}/{self.workers} alive", *others]))

    def each(
        self, items: list[tuple[int, Any]], each: EachItem, options: Any, batch: int = BATCH
    ) -> Iterator[tuple[int, Any]]:
        """``each`` over ``items`` on the actor pool, ``batch`` items per call: ``(key,
        outcome)`` in the order of ``items`` (keys unique), each once, as soon as it and those
        before it are done. Paths in the items must be absolute (the actors' working folder is
        not this process's on a cluster)."""
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors: one line here
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own (detect.progress)
        context.print_on_execution_start = False
        rows = [{"key": key, "item": pickle.dumps(item)} for key, item in items]
        workers = max(1, min(self.workers, len(rows)))
        blocks = max(1, min(len(rows), max(workers, math.ceil(len(rows) / batch))))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        outcomes = dataset.map_batches(
            _Worker,
            batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"backend": self.backend, "each": each, "options": options},
            num_cpus=CPUS_PER_WORKER,
            num_gpus=self.gpus,
        )
        order = [key for key, _ in items]
        waiting: dict[int, Any] = {}
        done: set[int] = set()
        position = 0
        blocks_done = outcomes.iter_batches(batch_size=None, batch_format="numpy")
        for block in _failing_in_one_line(blocks_done):
            for key, outcome in zip(block["key"], block["outcome"], strict=True):
                key = int(key)
                if key in done or key in waiting:  # a batch run twice
                    continue
                waiting[key] = pickle.loads(outcome)
            self._note_alive()
            while position < len(order) and order[position] in waiting:
                key = order[position]
                done.add(key)
                yield key, waiting.pop(key)
                position += 1

    def close(self) -> None:
        import ray

        ray.shutdown()


def _failing_in_one_line(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, Any]]:
    """``batches``; when the run fails, the `DetectError` behind it (an actor that could not
    open the model says why, as without Ray), or a `ClusterError` with Ray's first line."""
    import ray.exceptions

    try:
        yield from batches
    except ray.exceptions.RayError as exc:
        seen: list[BaseException] = []
        found: BaseException | None = exc
        while found is not None and found not in seen:
            if isinstance(found, DetectError):
                raise DetectError(str(found).strip().splitlines()[-1]) from None
            # an actor that died in __init__ keeps its error only as text
            said = re.findall(r"^detect\.errors\.\w+: (.+)$", str(found), re.MULTILINE)
            if said:
                raise DetectError(said[-1]) from None
            seen.append(found)
            found = getattr(found, "cause", None) or found.__cause__ or found.__context__
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterError(f"the run on Ray failed: {line}") from None


def _check_room(total: dict[str, float], workers: int, gpus: float, address: str) -> None:
    """A `ClusterError` when the cluster has too few CPUs or GPUs for every worker at once (Ray
    would wait for them for ever)."""
    for resource, each, flag in (("CPU", CPUS_PER_WORKER, ""), ("GPU", gpus, "--gpus-per-worker")):
        needed, has = workers * each, total.get(resource, 0.0)
        if needed > has:
            fix = f"give fewer --workers{f' or less {flag}' if flag else ''}"
            if resource == "GPU" and has == 0:
                fix = "join a cluster with GPUs, or give --gpus-per-worker 0"
            raise ClusterError(
                f"{_flag(address)}: {workers} workers need {needed:g} {resource}s and the cluster "
                f"has {has:g}; {fix}"
            )


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Unless the command is verbose (logging at INFO), nothing written to file descriptor 2
    inside: Ray's C++ core writes its own lines there as it connects ("Set ray log level from
    environment variable", connection retries), whatever its log level; what fails reaches
    the verb as an exception. (Its later lines are silenced by ``RAY_BACKEND_LOG_LEVEL``,
    `detect.cli`.)"""
    if logging.getLogger().isEnabledFor(logging.INFO):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _messages_to_stderr() -> None:
    """Ray's driver prints what its nodes report (``(raylet) A worker died ...``) on stdout,
    which is the verbs' data (detection lines): send those messages to stderr. Ray offers no
    setting for it, so its printing function (``ray._private.worker.print_to_stdstream``, ray
    2.60) is wrapped."""
    from ray._private import worker

    printer = worker.print_to_stdstream
    if getattr(printer, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def _probe(address: str) -> None:
    """A `ClusterError` at once when nothing accepts a TCP connection at ``address``
    (``HOST:PORT`` or ``ray://HOST:PORT``): Ray itself would retry for a minute or more."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise ClusterError(
            f"--ray {address}: nothing answers there ({reason}); start the cluster "
            "(`ray start --head` on its head node) or give its address"
        ) from None


def _flag(address: str) -> str:
    """``--ray`` as the user gave it."""
    return "--ray" if address == LOCAL_RAY else f"--ray {address}"

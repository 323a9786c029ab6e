"""Offline work on Ray (``--ray [ADDRESS]``): one Ray Data pipeline that runs a per-image step
over image files on an actor pool, each actor holding one backend.

`RayPool` connects (a Ray started on this machine, or a running cluster) and `RayPool.each`
runs ``ray.data.from_items`` of ``(key, path)`` -> ``map_batches`` on an
``ActorPoolStrategy(size=workers)`` of `_Worker` actors. Each actor opens the backend once
(`detect.runtime.backend.open_backend`, the same ONNX Runtime or OpenVINO engine on the CPU or
CUDA as a run without Ray) and calls on it the very step a run without Ray calls
(`detect.predict.annotate_each` for predict, `detected_each` for eval), so answers are the same.
The outcomes stream back to the driver, which yields them in key order (duplicates dropped), for
it to write today's files. A bad image is an outcome like any other (its error, as without Ray).

Faults: an actor that dies (its process killed, its machine gone) is restarted by Ray and its
unfinished batches run again (Ray Data's actor pools default to ``max_restarts`` and
``max_task_retries`` -1); a batch done is reported once. Workers read the image files by path,
so on a cluster the paths must be the same on every machine (shared storage), and `detect` must
be installed there (the ``ray`` extra).

Ray itself is imported only here, when asked for; an installation without it gets the CLI's
one line naming the ``ray`` extra.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from detect.config import LOCAL_RAY, Cluster
from detect.errors import DetectError
from detect.progress import Progress, StartProgress
from detect.runtime.backend import Backend, Detected, detect_each, open_backend
from detect.structures import DetectOptions

EachImage = Callable[[Backend, list[tuple[int, Path]], DetectOptions], Iterable[tuple[int, Any]]]
"""A per-image step: ``(backend, [(key, path)], options)`` -> ``(key, outcome)`` per image, the
outcome picklable (it travels from the actor to the driver)."""

BATCH = 16
"""Images per ``map_batches`` call: few enough that every worker gets some of a small run."""

CPUS_PER_WORKER = 0.5
"""Ray's CPU share of an actor (the engine itself uses every core it finds). On 2 cores a pool of
2 actors at 1 CPU each left none for Ray Data's own tasks and hung; at 0.5 it ran."""

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
    """A Ray actor: one backend, opened once; each batch of ``key``/``path`` rows through
    ``each``, the outcomes pickled (one ``outcome`` bytes column beside ``key``)."""

    def __init__(self, backend: dict[str, Any], each: EachImage, options: DetectOptions) -> None:
        self.backend = open_backend(**backend)
        self.each = each
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [(int(k), Path(p)) for k, p in zip(batch["key"], batch["path"], strict=True)]
        done = list(self.each(self.backend, items, self.options))
        return {
            "key": np.array([key for key, _ in done], dtype=np.int64),
            "outcome": np.array([pickle.dumps(outcome) for _, outcome in done], dtype=object),
        }


class RayPool:
    """A connection to Ray for one run (a context manager: leaving it disconnects, and stops a
    Ray it started). ``backend``: `open_backend`'s keywords for the actors; ``device``: theirs,
    which decides the default workers and GPUs (`Cluster`)."""

    def __init__(self, cluster: Cluster, backend: dict[str, Any]) -> None:
        import ray

        assert cluster.ray is not None
        self.cluster, self.backend = cluster, backend
        cuda = backend.get("device") == "cuda"
        address = cluster.ray
        if address not in (LOCAL_RAY, "auto"):
            _probe(address)
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except ConnectionError as exc:  # `auto` with no cluster here, or a refused handshake
            where = "runs on this machine" if address == "auto" else f"answers there ({exc})"
            raise ClusterError(
                f"{_flag(address)}: no Ray cluster {where}; start one with `ray start --head` or "
                "give its address"
            ) from None
        _messages_to_stderr()
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
            self.backend = backend | {"threads": threads}

    def progress(self, start: StartProgress) -> StartProgress:
        """``start``, its progress noting the pool's size (``workers 2``)."""

        def noted(what: str, total: int | None, unit: str) -> Progress:
            shown = start(what, total, unit)
            shown.note(f"workers {self.workers}")
            return shown

        return noted

    def each(
        self, items: list[tuple[int, Path]], each: EachImage, options: DetectOptions
    ) -> Iterator[tuple[int, Any]]:
        """``each`` over ``items`` on the actor pool: ``(key, outcome)`` in the order of
        ``items`` (keys unique), each once, as soon as it and those before it are done."""
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors: one line here
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own (detect.progress)
        context.print_on_execution_start = False
        rows = [{"key": key, "path": str(path)} for key, path in items]
        workers = max(1, min(self.workers, len(rows)))
        blocks = max(1, min(len(rows), max(workers, math.ceil(len(rows) / BATCH))))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        outcomes = dataset.map_batches(
            _Worker,
            batch_size=BATCH,
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"backend": self.backend, "each": each, "options": options},
            num_cpus=CPUS_PER_WORKER,
            num_gpus=self.gpus,
        )
        order = [key for key, _ in items]
        waiting: dict[int, Any] = {}
        done: set[int] = set()
        position = 0
        for batch in _failing_in_one_line(outcomes.iter_batches(batch_size=None, batch_format="numpy")):
            for key, outcome in zip(batch["key"], batch["outcome"], strict=True):
                key = int(key)
                if key in done or key in waiting:  # a batch run twice
                    continue
                waiting[key] = pickle.loads(outcome)
            while position < len(order) and order[position] in waiting:
                key = order[position]
                done.add(key)
                yield key, waiting.pop(key)
                position += 1

    def close(self) -> None:
        import ray

        ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


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

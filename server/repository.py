"""The model repository: every served model version, loaded, swapped and unloaded while serving.

Two sources, one behaviour:

- ``detect serve --models DIR``: ``DIR/NAME/VERSION/model.onnx`` with its card ``model.json``
  beside it (and its batch graphs ``model.bB.onnx``, if exported with them), Triton's layout.
  VERSION folders are whole numbers; the latest ``--versions`` of each model are served (1:
  only the newest). Other folders and files are ignored (logged once).
- ``detect serve --model FILE``: a repository of one model, named by the file's stem, whose one
  version is named by the first 12 hex digits of its sha256 (from its card).

Of each version's ``model.onnx`` (or FILE) the file that ``--precision`` picks is served: on the
CPU by default its int8 model ``model.int8.onnx`` (FILE's ``NAME.int8.onnx``) when that is beside
it (`detect.runtime.precision`); that file is part of the version, not a model of its own.

A reload (`ModelRepository.reload`: every ``--poll`` seconds, and on the ReloadModels RPC)
compares what is on disk with what is served, by the files' size and modification time:

- a new version, or a served one whose files changed, is loaded and warmed up beside the one
  serving; requests move to it once it is ready (each request picks its model version when it
  arrives, so a stream's frames move over between two frames and none is lost);
- a version no longer wanted (an older one past ``--versions``, a removed folder, the old copy of
  a changed file) stops taking requests at once and is unloaded when its last call has finished;
- a version that fails to load (a bad file, a card that does not match) is refused with a log
  line, the version serving before keeps serving, and the same files are not tried again until
  they change.

While polling, a version is acted on only once its files look the same on two polls in a row,
so a file still being copied is not loaded half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from detect.errors import DetectError, UsageError
from detect.runtime.detector import Detector, check_model
from detect.runtime.model_card import ModelCard, card_fields, card_path
from detect.runtime.precision import file_to_run
from detect.structures import ModelInfo
from server.batcher import Batcher
from server.config import ServeConfig
from server.metrics import ServerMetrics

log = logging.getLogger("detect.serve")

MODEL_FILE = "model.onnx"

Stamp = tuple[tuple[int, int], ...]
"""(size, mtime_ns) of a version's ONNX file and its card: what a reload compares."""


class ModelNotFoundError(DetectError):
    """The request names a model or version that is not served."""


Choose = Callable[[Path], Path]
"""The file to serve of a version's ``model.onnx`` (or ``--model FILE``): `serve_file`."""


@dataclass(frozen=True)
class OnDisk:
    """A model version found on disk: ``path`` the file to serve (`serve_file`'s choice);
    ``version`` None when its card cannot say (file mode); ``problem`` why there is no file to
    serve (``--precision int8`` without an int8 model), refused when it is loaded."""

    name: str
    version: str | None
    path: Path
    stamp: Stamp
    problem: DetectError | None = None


@dataclass(eq=False)
class ServedModel:
    """One loaded model version: its `Detector`, its `Batcher` and the calls using it."""

    name: str
    version: str
    path: Path
    stamp: Stamp
    detector: Detector
    batcher: Batcher
    calls: int = 0
    retired: bool = False
    unloaded: bool = False

    @property
    def info(self) -> ModelInfo:
        """The detector's `ModelInfo` under this name and version."""
        return dataclasses.replace(self.detector.info, name=self.name, version=self.version)


@dataclass(frozen=True)
class CheckedModel:
    """A model file whose sha256 matched its card, and its stamp from before the check."""

    path: Path
    stamp: Stamp | None
    card: ModelCard


def check_file(path: Path) -> CheckedModel:
    """`check_model` for ``--model FILE`` before the server listens (raises `DetectError`)."""
    try:
        stamp = _stamp(path)  # taken first: a file changed during the hash will not match
    except OSError:
        stamp = None  # check_model says what is missing
    return CheckedModel(path, stamp, check_model(path))


def serve_file(config: ServeConfig) -> Choose:
    """The file to serve of a model file: the one ``config.engine``'s precision picks
    (`detect.runtime.precision.file_to_run`, which says so when it is not the file itself)."""
    return lambda path: file_to_run(path, config.engine)


def check_repository(config: ServeConfig) -> list[CheckedModel]:
    """What the first load will serve, checked before the server listens (raises `DetectError`,
    so that nothing says "listening" first): ``--model FILE``, or the newest ``--versions`` of
    each model of ``--models DIR`` (their cards and sha256), and the default model among them."""
    choose = serve_file(config)
    if config.models is None:
        assert config.model is not None
        wanted = [file_version(config.model, choose)]
    else:
        found = versions_on_disk(config.models, lambda path: None, choose)  # the load logs them
        check_names(config, found)
        wanted = [d for versions in found.values() for d in versions[: config.versions]]
    for on_disk in wanted:
        if on_disk.problem is not None:
            raise on_disk.problem
    return [check_file(on_disk.path) for on_disk in wanted]


def check_names(config: ServeConfig, names: Collection[str]) -> None:
    """`UsageError` when a repository holds no model, or not the ``--default-model``."""
    if not names:
        raise UsageError(
            f"--models {config.models}: no model found; put each model at "
            f"NAME/VERSION/{MODEL_FILE} with its card model.json (for example person/1/)"
        )
    default = config.default_model
    if default and default not in names:
        served = ", ".join(sorted(names))
        raise UsageError(f"--default-model {default}: no such model; served: {served}")


def versions_on_disk(
    models: Path, ignore: Callable[[Path], None], choose: Choose
) -> dict[str, list[OnDisk]]:
    """The model versions of the repository ``models``: by model name, newest version first,
    each with the file ``choose`` picks of its ``model.onnx``; ``ignore`` gets each folder that
    is not a version (a whole number holding the model)."""
    found = {}
    for model_dir in sorted(p for p in models.iterdir() if p.is_dir()):
        versions = []
        for version_dir in model_dir.iterdir():
            path = version_dir / MODEL_FILE
            if not (version_dir.name.isdecimal() and path.is_file()):
                ignore(version_dir)
                continue
            with contextlib.suppress(OSError):  # removed or half-copied: next time
                versions.append(_on_disk(model_dir.name, version_dir.name, path, choose))
        if versions:
            found[model_dir.name] = sorted(
                versions, key=lambda d: _version_key(d.version or ""), reverse=True
            )
    return found


def file_version(path: Path, choose: Choose) -> OnDisk:
    """``--model FILE``: one version, named by FILE's stem, of the file ``choose`` picks, its
    version named by the sha256 that file's card records (None when it cannot say)."""
    try:
        chosen = choose(path)
    except DetectError as exc:
        return OnDisk(path.stem, None, path, (), exc)
    try:
        stamp = _stamp(chosen)
    except OSError:
        return OnDisk(path.stem, None, chosen, ())  # check_model says what is wrong
    sha256 = card_fields(chosen).get("sha256")
    if sha256 is None:
        return OnDisk(path.stem, None, chosen, ())
    return OnDisk(path.stem, str(sha256)[:12], chosen, stamp)


def _on_disk(name: str, version: str | None, path: Path, choose: Choose) -> OnDisk:
    """The version ``name`` ``version`` of the model file ``path``: the file ``choose`` picks,
    or ``path`` with the `DetectError` that says why none (raises OSError for a missing file)."""
    try:
        chosen = choose(path)
    except DetectError as exc:
        return OnDisk(name, version, path, _stamp(path), exc)
    return OnDisk(name, version, chosen, _stamp(chosen))


def _stamp(path: Path) -> Stamp:
    """Size and modification time of the ONNX file and its card (raises OSError if missing)."""
    stats = [p.stat() for p in (path, card_path(path))]
    return tuple((s.st_size, s.st_mtime_ns) for s in stats)


def _version_key(version: str) -> tuple[int, str]:
    """Newest last: whole numbers by value (file-mode versions, hex digests, sort as one)."""
    return (int(version), "") if version.isdecimal() else (-1, version)


class ModelRepository:
    """The served model versions of ``config.models`` (a repository folder) or ``config.model``
    (one file), with their batchers, and the reloads that change them.

    Use it on the server's event loop: `load` once before serving, `get` and `hold` per
    request, `reload` (or `watch`) while serving, `close` at the end.
    """

    def __init__(
        self,
        config: ServeConfig,
        metrics: ServerMetrics,
        loader: ThreadPoolExecutor,
        batcher: Callable[[Detector, str, str], Batcher],
        checked: Sequence[CheckedModel] = (),
    ) -> None:
        """``checked``: the versions as `check_repository` found them before the server
        listened, so that their first load does not hash the files again (unless they changed
        since)."""
        self.config = config
        self._choose = serve_file(config)
        self._checked = {model.path: model for model in checked}
        self.metrics = metrics
        self.loader = loader
        self.make_batcher = batcher
        self.served: dict[str, list[ServedModel]] = {}  # name -> versions, newest first
        self.default = ""
        self._refused: dict[tuple[str, Path], Stamp] = {}
        self._seen: dict[Path, Stamp] = {}  # last poll's stamps, for files still changing
        self._ignored: set[Path] = set()
        self._lock = asyncio.Lock()
        self._unloading: set[asyncio.Task[None]] = set()
        self._loaded: set[ServedModel] = set()  # loaded and not unloaded, retired or not

    # --- what is on disk ---

    def scan(self) -> dict[str, list[OnDisk]]:
        """The model versions on disk: by model name, newest version first."""
        if self.config.models is None:
            assert self.config.model is not None
            on_disk = file_version(self.config.model, self._choose)
            return {on_disk.name: [on_disk]}
        return versions_on_disk(self.config.models, self._ignore, self._choose)

    def _ignore(self, path: Path) -> None:
        if path not in self._ignored:
            self._ignored.add(path)
            log.warning(
                "ignoring %s: a model version is a whole-number folder holding %s and its card",
                path,
                MODEL_FILE,
            )

    # --- serving ---

    def get(self, name: str = "", version: str = "") -> ServedModel:
        """The served version asked for (empty: the default model, its newest version).

        Raises `ModelNotFoundError` naming what is served."""
        name = name or self.default
        versions = self.served.get(name)
        if not versions:
            served = ", ".join(sorted(self.served)) or "none"
            raise ModelNotFoundError(f"model {name!r} is not served; served models: {served}")
        if not version:
            return versions[0]
        for served_model in versions:
            if served_model.version == version:
                return served_model
        have = ", ".join(v.version for v in versions)
        raise ModelNotFoundError(
            f"model {name!r} has no version {version!r} serving; serving versions: {have}"
        )

    @contextlib.contextmanager
    def hold(self, served_model: ServedModel) -> Iterator[ServedModel]:
        """A version `get` returned, held for one call: if it is retired meanwhile, it is
        unloaded only after the call (take it with no ``await`` between `get` and `hold`)."""
        served_model.calls += 1
        try:
            yield served_model
        finally:
            served_model.calls -= 1
            if served_model.retired and served_model.calls == 0:
                self._schedule_unload(served_model)

    def all(self) -> list[ServedModel]:
        """Every served version: by model name, newest version first."""
        return [v for name in sorted(self.served) for v in self.served[name]]

    # --- loading ---

    async def load(self) -> None:
        """The first load: every version wanted must load, else `DetectError` naming it."""
        await self.reload(strict=True)
        check_names(self.config, self.served)  # files may have gone since check_repository
        self.default = self.config.default_model or sorted(self.served)[0]

    async def _load(self, on_disk: OnDisk) -> ServedModel:
        """Load and warm up one version on the loader thread (raises `DetectError`)."""
        if on_disk.problem is not None:
            raise on_disk.problem
        config = self.config
        loop = asyncio.get_running_loop()

        checked = self._checked.pop(on_disk.path, None)
        if checked is not None and (checked.path, checked.stamp) != (on_disk.path, on_disk.stamp):
            checked = None

        def load() -> Detector:
            card = checked.card if checked is not None else check_model(on_disk.path)
            return Detector(
                on_disk.path,
                config.device,
                config.max_pixels,
                warmup_runs=config.warmup_runs,
                card=card,
                backend=config.backend,
                threads=config.engine.threads,
            )

        detector = await loop.run_in_executor(self.loader, load)
        assert on_disk.version is not None  # else the card was unreadable: check_model raised
        batcher = self.make_batcher(detector, on_disk.name, on_disk.version)
        served_model = ServedModel(
            on_disk.name, on_disk.version, on_disk.path, on_disk.stamp, detector, batcher
        )
        batcher.start()
        self._loaded.add(served_model)
        self.metrics.model.labels(
            on_disk.name, on_disk.version, detector.provider, detector.card.precision
        ).set(1)
        return served_model

    def _add(self, served_model: ServedModel) -> None:
        versions = self.served.setdefault(served_model.name, [])
        versions.append(served_model)
        versions.sort(key=lambda v: _version_key(v.version), reverse=True)

    async def reload(self, settled: bool = False, strict: bool = False) -> list[str]:
        """Bring the served versions in line with the disk; one line per change.

        Each model serves its newest ``--versions`` versions that load: a refused new version
        leaves the one before it serving. ``settled``: act only on files that look as they did
        at the last call (the poller's rule, so that files still being copied wait).
        ``strict``: raise the first refusal (the first load)."""
        async with self._lock:
            found = self.scan()
            changes: list[str] = []
            keep: set[ServedModel] = set()
            for versions in found.values():
                wanted = self.config.versions
                for on_disk in versions:
                    if wanted == 0:
                        break
                    if await self._serve(on_disk, settled, strict, keep, changes):
                        wanted -= 1
            self._seen = {d.path: d.stamp for versions in found.values() for d in versions}
            for served_model in self.all():
                if served_model not in keep:
                    self._retire(served_model)
                    changes.append(f"unloaded {served_model.name} {served_model.version}")
            return changes

    async def _serve(
        self,
        on_disk: OnDisk,
        settled: bool,
        strict: bool,
        keep: set[ServedModel],
        changes: list[str],
    ) -> bool:
        """Serve ``on_disk``: keep it, load it, or keep its path's old copy; whether anything
        serves from its path now (kept instances go into ``keep``)."""
        current = self._current(on_disk)
        if current is not None:
            keep.add(current)
            return True
        key = (on_disk.name, on_disk.path)
        waiting = settled and self._seen.get(on_disk.path) != on_disk.stamp
        if waiting or self._refused.get(key) == on_disk.stamp:
            return self._keep_old(on_disk, keep)
        try:
            served_model = await self._load(on_disk)  # an unreadable card: its reason
        except DetectError as exc:
            if strict:
                raise
            self._refused[key] = on_disk.stamp
            line = f"refused {on_disk.name} {on_disk.version or '?'}: {exc}"
            log.error("%s; still serving what was serving", line)
            changes.append(line)
            return self._keep_old(on_disk, keep)
        self._refused.pop(key, None)
        changes.append(f"loaded {served_model.name} {served_model.version}")
        for old in self._replaced_by(served_model):
            keep.discard(old)
            self._retire(old)
            changes.append(f"unloaded {old.name} {old.version}")
        self._add(served_model)
        keep.add(served_model)
        log.info("loaded %s version %s from %s", on_disk.name, on_disk.version, on_disk.path)
        return True

    def _current(self, on_disk: OnDisk) -> ServedModel | None:
        """The served instance of exactly these files, if any."""
        for served_model in self.served.get(on_disk.name, []):
            if served_model.path == on_disk.path and served_model.stamp == on_disk.stamp:
                return served_model
        return None

    def _keep_old(self, on_disk: OnDisk, keep: set[ServedModel]) -> bool:
        """Keep serving what serves from ``on_disk``'s path (its new files are not loaded; in
        file mode, the one version); whether there is one."""
        kept = False
        for served_model in self.served.get(on_disk.name, []):
            if served_model.path == on_disk.path:
                keep.add(served_model)
                kept = True
        return kept

    def _replaced_by(self, new: ServedModel) -> list[ServedModel]:
        """What ``new`` replaces: the old copy of its files (same path; in file mode, the one
        version)."""
        return [
            served_model
            for served_model in self.served.get(new.name, [])
            if served_model.path == new.path or self.config.models is None
        ]

    def _retire(self, served_model: ServedModel) -> None:
        """No new calls from now; unloaded when its calls have finished."""
        versions = self.served.get(served_model.name, [])
        if served_model in versions:
            versions.remove(served_model)
            if not versions:
                del self.served[served_model.name]
        if served_model.retired:
            return
        served_model.retired = True
        log.info(
            "retiring %s version %s (%d calls in flight)",
            served_model.name,
            served_model.version,
            served_model.calls,
        )
        if served_model.calls == 0:
            self._schedule_unload(served_model)

    def _schedule_unload(self, served_model: ServedModel) -> None:
        if served_model.unloaded:
            return
        task = asyncio.get_running_loop().create_task(self._unload(served_model))
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _unload(self, served_model: ServedModel) -> None:
        if served_model.unloaded:
            return
        served_model.unloaded = True
        self._loaded.discard(served_model)
        await served_model.batcher.stop()
        detector = served_model.detector
        series = (served_model.version, detector.provider, detector.card.precision)
        still = any(
            (v.version, v.detector.provider, v.detector.card.precision) == series
            for v in self.served.get(served_model.name, [])
        )
        if not still:  # a changed file reloaded under the same version keeps its series
            self.metrics.forget(
                served_model.name, served_model.version, detector.provider, detector.card.precision
            )
        detector.close()
        log.info("unloaded %s version %s", served_model.name, served_model.version)

    async def watch(self, say: Callable[[str], None]) -> None:
        """Reload every ``--poll`` seconds until cancelled, giving ``say`` a line per change (a
        failed scan is logged)."""
        while True:
            await asyncio.sleep(self.config.poll_s)
            try:
                for line in await self.reload(settled=True):
                    say(line)
            except OSError as exc:  # the folder went away or is unreadable: keep serving
                log.error("cannot read the model repository: %s", exc)
            except Exception:  # a bug must not end the watching, nor the serving
                log.exception("reloading the model repository failed")

    async def close(self) -> None:
        """Unload everything (after `grpc.aio.Server.stop`: no calls are left)."""
        for served_model in self.all():
            self._retire(served_model)
        for served_model in list(self._loaded):
            await self._unload(served_model)
        await asyncio.gather(*self._unloading, return_exceptions=True)

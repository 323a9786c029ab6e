"""Video archives: ``detect video a.mp4 clips/ 'more/*.mp4' --out DIR`` runs every clip, one
after another, into DIR:

- ``DIR/<clip>.jsonl`` (and ``DIR/<clip>.mp4`` with ``annotate``), ``<clip>`` the file's name
  without its suffix; two clips of one name are refused (`clip_names`);
- ``DIR/manifest.json``: the settings that decide the outputs (`output_settings`: the model by its
  sha256, sampling, tracking, zones, lines, detection options) and, per finished clip, its input
  (path, size, sha256 of its bytes), outputs and summary; rewritten whole (atomically) as each
  clip finishes;
- ``DIR/summary.json``: per clip its summary (as `detect watch`'s per camera) or its error, and
  the totals over the finished clips; rewritten as each clip ends.

Each clip is one `process_clip` call: its own source, tracker and zone and line state, from its
first frame; nothing is shared with the other clips but an open local model. With ``--ray``
(`ArchiveConfig.cluster`) the clips spread over the workers of a Ray actor pool
(`detect.cluster`, one clip per call: `clips_each`), each clip tracked and counted in order by
one worker, which writes its outputs; this process writes the manifest and summary, in clip
order, as they come back. A clip that cannot be read is named (a warning), counted and skipped;
the others go on. A run started again with the same DIR skips the clips the manifest lists as
finished with the same input bytes; a clip whose run was cut short (killed, or stopped by
SIGTERM/SIGINT, which end the run after the frame in hand: `ArchiveInterruptedError`) is not in the
manifest and is done again from its start, its outputs replaced. A DIR made with other settings
is refused (a usage error): give another DIR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely

from detect.config import Cluster
from detect.errors import DataError, DetectError, UsageError
from detect.progress import StartProgress, silent
from detect.resume import check_settings
from detect.runtime.sources import list_files, sha256_file
from detect.settings import FLAGS, Spelling, declared, nested, output_folder, setting
from detect.video.config import VideoConfig
from detect.video.run import LocalModel, VideoRun, stop_on_signals
from detect.video.source import VIDEO_SUFFIXES, is_live

if TYPE_CHECKING:
    from detect.runtime.backend import Backend

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SUMMARY = "summary.json"


@dataclass
class ArchiveConfig:
    """`detect video`'s settings: its sources, and ``out`` (with ``annotate``) for an archive
    of clips; ``clip``: the settings of every clip's run (its ``source`` aside)."""

    sources: tuple[str, ...] = setting(
        (),
        "a video file, rtsp:// or http:// URL, or webcam index; with --out: video files, "
        "folders of them and quoted glob patterns ('clips/*.mp4')",
        positional=True,
        required=True,
        metavar="SOURCE",
    )
    out: Path | None = setting(
        None,
        "archive folder: per clip NAME.jsonl (NAME.mp4 with --annotate), summary.json and "
        "manifest.json; a run again with it skips the finished clips",
        check=output_folder,
        metavar="DIR",
    )
    annotate: bool = setting(False, "with --out: an annotated NAME.mp4 per clip")
    clip: VideoConfig = nested(VideoConfig, skip=("source",))
    cluster: Cluster = nested(Cluster)

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks of several settings; `UsageError` in ``spell``'s spelling."""
        spell = spell or Spelling(ArchiveConfig, FLAGS)
        out, annotate = spell("out"), spell("annotate")
        if self.cluster.ray is not None:
            if self.out is None:
                raise spell.problem(
                    f"{spell('ray')} spreads the clips of an archive over its workers: give "
                    f"{out} DIR"
                )
            if self.clip.model is None:
                raise spell.problem(
                    f"{spell('ray')} runs an exported {spell('model')} on Ray; with "
                    f"{spell('server')} leave it out"
                )
        if self.out is None:
            if len(self.sources) > 1:
                raise spell.problem(f"several sources: give {out} DIR for their outputs")
            if _lists_clips(self.sources[0]):
                raise spell.problem(f"{self.sources[0]}: to run its clips give {out} DIR")
            if self.annotate:
                raise spell.problem(
                    f"{annotate} goes with {out} DIR; for one clip give {spell('out_video')} FILE"
                )
            return
        if self.clip.out_video is not None:
            raise spell.problem(
                f"{spell('out_video')} names one file; with {out} give {annotate} "
                "for an annotated DIR/<clip>.mp4 per clip"
            )
        if self.clip.jsonl is not None:
            raise spell.problem(
                f"{spell('jsonl')} names one file; with {out} each clip's is DIR/<clip>.jsonl"
            )
        for source in self.sources:
            if is_live(source):
                raise spell.problem(
                    f"{source}: {out} takes video files, folders and patterns, not a stream or "
                    f"a webcam; for one give {spell('jsonl')} FILE"
                )

    def single(self) -> VideoConfig:
        """The run of the one source when there is no ``out``."""
        return replace(self.clip, source=self.sources[0])


def _lists_clips(source: str) -> bool:
    """Whether ``source`` is a folder or a glob pattern (naming no file)."""
    path = Path(source)
    return path.is_dir() or (not path.exists() and glob.has_magic(source))


@dataclass(frozen=True)
class ClipJob:
    """One clip of an archive: its name (its outputs' stem), its input file, and its run's
    settings (``source``, ``jsonl`` and, when asked, ``out_video`` set)."""

    name: str
    path: Path
    config: VideoConfig

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.config.jsonl, self.config.out_video) if p is not None]


@dataclass
class ClipResult:
    """What became of one clip: its summary (`VideoSummary.as_dict`) and the summary's lines, or
    its ``error``; ``interrupted``: the SIGTERM/SIGINT that stopped it before its end (not
    finished); ``resumed``: finished by an earlier run (``summary`` from the manifest, no
    ``lines``)."""

    name: str
    path: Path
    summary: dict[str, Any] | None = None
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    interrupted: str | None = None
    resumed: bool = False


class ArchiveInterruptedError(DetectError):
    """SIGTERM/SIGINT stopped an archive's run; a run again with the same ``--out`` resumes."""


def process_clip(
    job: ClipJob,
    local: LocalModel | None = None,
    progress: StartProgress = silent,
    what: str = "video",
) -> ClipResult:
    """Run one clip from its first frame with its own source, tracker, zones and lines, writing
    its outputs (replacing earlier ones); ``local``: an open model (else the clip opens
    ``job.config.model``); the frames done to ``progress`` as ``what``. A clip that cannot be
    read: the result's ``error``."""
    try:
        video = VideoRun(job.config, local)
        with progress(what, video.frames.planned(), "frames") as bar:
            summary = video.run(bar.update)
    except DetectError as exc:
        return ClipResult(job.name, job.path, error=str(exc))
    return ClipResult(
        job.name, job.path, summary.as_dict(), summary.lines(), interrupted=video.interrupted
    )


def clip_names(clips: list[Path], out: Path) -> dict[str, Path]:
    """Each clip by its name (its file's name without the suffix), in order; a `UsageError`
    when two clips have one name (their outputs would be the same files)."""
    named: dict[str, Path] = {}
    for clip in clips:
        first = named.setdefault(clip.stem, clip)
        if first is not clip:
            raise UsageError(
                f"clips {first} and {clip} would both write {out / clip.stem}.jsonl: rename one, "
                "or run them into different --out folders"
            )
    return named


_PLACES = {
    "source",
    "out_video",
    "jsonl",
    "truth",
    "model",
    "server",
    "reconnect",
    "retry",
    "in_flight",
}
"""Settings that say where a clip, its outputs, its ground truth and the model are, and how the
model is reached, not what the outputs hold (with those of ``engine`` and ``connection``)."""


def output_settings(config: VideoConfig, annotate: bool) -> dict[str, Any]:
    """What decides a clip's outputs, as JSON values by setting name: the model's sha256
    (``model_sha256``, None with a server), ``annotate``, and every setting of ``config`` but
    `_PLACES` and the engine's and connection's."""
    settings: dict[str, Any] = {
        "model_sha256": sha256_file(config.model) if config.model is not None else None,
        "annotate": annotate,
    }
    for d in declared(VideoConfig):
        if d.name in _PLACES or d.path[:1] in (("engine",), ("connection",)):
            continue
        holder: Any = config
        for name in d.path:
            holder = getattr(holder, name)
        settings[d.name] = _plain(getattr(holder, d.name))
    return json.loads(json.dumps(settings))  # as read back from the manifest


def _plain(value: Any) -> Any:
    """A setting's value as JSON values (a polygon as its WKT)."""
    if isinstance(value, shapely.Geometry):
        return value.wkt
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` at once (a file beside it, renamed over it)."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write it ({exc.strerror}); give a writable --out"
        ) from None


class Manifest:
    """``DIR/manifest.json``: the archive's output settings and its finished clips (see the
    module docstring). Opening it with other settings than those it holds is a `UsageError`."""

    def __init__(self, out: Path, settings: dict[str, Any]) -> None:
        self.path = out / MANIFEST
        self.settings = settings
        self.clips: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                held = json.loads(self.path.read_text(encoding="utf-8"))
                self.clips = dict(held["clips"])
                made_with = held["settings"]
            except (OSError, ValueError, KeyError, TypeError):
                raise DataError(
                    f"{self.path}: not an archive manifest (unreadable); give another --out"
                ) from None
            check_settings(out, made_with, settings, Spelling(ArchiveConfig, FLAGS))

    def finished(self, name: str, digest: str) -> dict[str, Any] | None:
        """The entry of clip ``name`` when it finished with an input of sha256 ``digest`` and
        its outputs are still there; else None."""
        entry = self.clips.get(name)
        if entry is None or entry["sha256"] != digest:
            return None
        if not all((self.path.parent / p).is_file() for p in entry["outputs"]):
            return None
        return entry

    def add(self, job: ClipJob, digest: str, summary: dict[str, Any]) -> None:
        """Record a finished clip (the manifest is rewritten)."""
        self.clips[job.name] = {
            "input": str(job.path),
            "size": job.path.stat().st_size,
            "sha256": digest,
            "outputs": [p.name for p in job.outputs],
            "summary": summary,
        }
        _write_json(self.path, {"settings": self.settings, "clips": self.clips})


def archive_summary(results: list[ClipResult]) -> dict[str, Any]:
    """``summary.json``: per clip its input and summary (finished) or error, and the totals over
    the finished clips (frames, detections and tracks by class, zone and line counts nested as
    `detect.zones.Counting.counts`)."""
    done = [r.summary for r in results if r.summary is not None]
    counts: dict[str, dict[str, Counter]] = {}
    for summary in done:
        for name, kinds in summary.get("counts", {}).items():
            for kind, labels in kinds.items():
                counts.setdefault(name, {}).setdefault(kind, Counter()).update(labels)
    tracks: Counter = sum((Counter(s["tracks"]) for s in done), Counter())
    totals = {
        "clips": len(results),
        "finished": len(done),
        "failed": sum(r.error is not None for r in results),
        "frames_read": sum(s["frames_read"] for s in done),
        "frames_processed": sum(s["frames_processed"] for s in done),
        "detections": dict(sum((Counter(s["detections"]) for s in done), Counter())),
        "tracks": dict(tracks),
        "unique_tracks": sum(tracks.values()),
    }
    if counts:
        totals["counts"] = {
            name: {kind: dict(sorted(labels.items())) for kind, labels in sorted(kinds.items())}
            for name, kinds in sorted(counts.items())
        }
    return {
        "clips": {
            r.name: {"input": str(r.path), **(r.summary or {}), "error": r.error} for r in results
        },
        "totals": totals,
    }


@dataclass(frozen=True)
class _Planned:
    """A clip of the run: its job, the sha256 of its input (None: unreadable), and its result
    when known without running it (finished by an earlier run, or unreadable)."""

    job: ClipJob
    digest: str | None
    early: ClipResult | None


def _plan(config: ArchiveConfig, manifest: Manifest, name: str, path: Path) -> _Planned:
    job = ClipJob(name, path, _clip_config(config, name, path))
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return _Planned(
            job, None, ClipResult(name, path, error=f"cannot read {path} ({exc.strerror})")
        )
    entry = manifest.finished(name, digest)
    early = ClipResult(name, path, entry["summary"], resumed=True) if entry is not None else None
    return _Planned(job, digest, early)


def run_archive(config: ArchiveConfig, progress: StartProgress = silent) -> Iterator[ClipResult]:
    """Run the clips of ``config.sources`` into ``config.out`` (see the module docstring), one
    after another or on Ray; each clip's result as it ends, in clip order (a clip that fails is
    logged as a warning and goes on); each clip's frames to ``progress`` (on Ray: the clips
    done). ``summary.json`` is rewritten after each clip. `ArchiveInterruptedError` when
    SIGTERM/SIGINT stop the run."""
    assert config.out is not None
    out = config.out
    clips = clip_names(list_files([Path(s) for s in config.sources], VIDEO_SUFFIXES), out)
    if not clips:
        raise DataError(
            f"no video files in {', '.join(config.sources)} (by suffix: "
            f"{' '.join(VIDEO_SUFFIXES)}); give video files, folders of them or patterns"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot make it ({exc.strerror})") from None
    manifest = Manifest(out, output_settings(config.clip, config.annotate))
    planned = [_plan(config, manifest, name, path) for name, path in clips.items()]
    pending = [(k, plan.job) for k, plan in enumerate(planned) if plan.early is None]
    results: list[ClipResult] = []
    asked: list[str] = []  # SIGTERM/SIGINT between clips: the run stops before the next one
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_on_signals(asked.append))
        ran = _run_clips(config, pending, len(planned), progress, stack)
        for k, plan in enumerate(planned):
            if asked:
                raise ArchiveInterruptedError(_stopped(asked[0], k, len(planned), out))
            result = plan.early
            if result is None:
                key, result = next(ran)
                assert key == k
            name = plan.job.name
            if result.interrupted is not None:
                _write_json(out / SUMMARY, archive_summary(results))
                raise ArchiveInterruptedError(
                    _stopped(result.interrupted, k, len(planned), out, name)
                )
            if result.error is not None:
                log.warning("clip %s: %s; skipped", name, result.error)
            elif not result.resumed:
                assert result.summary is not None and plan.digest is not None
                manifest.add(plan.job, plan.digest, result.summary)
            results.append(result)
            _write_json(out / SUMMARY, archive_summary(results))
            yield result


def _run_clips(
    config: ArchiveConfig,
    pending: list[tuple[int, ClipJob]],
    total: int,
    progress: StartProgress,
    stack: contextlib.ExitStack,
) -> Iterator[tuple[int, ClipResult]]:
    """The ``pending`` clips' results, ``(position, result)`` in order: one after another here
    (the model opened into ``stack`` at the first), or on the Ray actor pool of
    ``config.cluster`` (its results' paths as given, the workers' absolute)."""
    if not pending:
        return
    if config.cluster.ray is None:
        local = None
        if config.clip.model is not None:
            local = stack.enter_context(LocalModel.open(config.clip))
        for k, job in pending:
            yield k, process_clip(job, local, progress, f"video {k + 1}/{total} {job.name}")
        return
    from detect.cluster import RayPool
    from detect.runtime.precision import file_to_run

    assert config.clip.model is not None
    engine = config.clip.engine
    opened = {  # the file chosen here, once, for every worker
        "model": file_to_run(config.clip.model, engine),
        "device": engine.device,
        "engine": engine.backend,
        "threads": engine.threads,
    }
    pool = stack.enter_context(contextlib.closing(RayPool(config.cluster, opened)))
    bar = stack.enter_context(pool.progress(progress)("video", len(pending), "clips"))
    given = dict(pending)
    jobs = [(k, _absolute(job)) for k, job in pending]
    for k, result in pool.each(jobs, clips_each, None, batch=1):
        bar.update()
        path = given[k].path  # as given, in the result and its error, as without Ray
        error = result.error and result.error.replace(str(path.absolute()), str(path))
        yield k, replace(result, path=path, error=error)


def clips_each(
    backend: Backend, items: Iterable[tuple[int, ClipJob]], options: None = None
) -> Iterator[tuple[int, ClipResult]]:
    """Each ``(position, job)`` through `process_clip` on ``backend`` (a Ray worker's), one
    after another; ``options``: unused (a clip's are in its job)."""
    local = LocalModel(backend)
    for k, job in items:
        yield k, process_clip(job, local)


def _absolute(job: ClipJob) -> ClipJob:
    """``job`` with its input, outputs and model as absolute paths (`VideoConfig.absolute`)."""
    return ClipJob(job.name, job.path.absolute(), job.config.absolute())


def _clip_config(config: ArchiveConfig, name: str, path: Path) -> VideoConfig:
    assert config.out is not None
    video = config.out / f"{name}.mp4" if config.annotate else None
    return replace(
        config.clip, source=str(path), jsonl=config.out / f"{name}.jsonl", out_video=video
    )


def _stopped(reason: str, done: int, total: int, out: Path, during: str | None = None) -> str:
    where = f" during clip {during}" if during else ""
    return (
        f"{reason}{where}: stopped after {done} of {total} clips; run the same command again "
        f"to resume (the clips finished in {out / MANIFEST} are skipped)"
    )

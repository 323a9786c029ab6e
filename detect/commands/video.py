"""`detect video SOURCE`: flags from `ArchiveConfig`'s declarations (`VideoConfig`'s and the
archive's), the summary on stdout; a server lost mid-stream: the summary of the frames done, then
one error line (exit 1). With ``--out DIR``, an archive of clips (`detect.video.archive`): each
clip's summary as it ends, then the archive's line; exit 1 when a clip failed."""

from __future__ import annotations

import argparse
import sys

from detect.commands.flags import add_flags, from_flags
from detect.progress import Progress
from detect.settings import FLAGS, Spelling
from detect.video.archive import MANIFEST, SUMMARY, ArchiveConfig, run_archive
from detect.video.config import FOREVER, VideoConfig
from detect.video.run import StreamLostError, run_video
from detect.video.summary import VideoSummary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, ArchiveConfig, required_groups=("where",))


def _report(config: VideoConfig, summary: VideoSummary) -> None:
    for text in summary.lines():
        print(text)
    outputs = [str(p) for p in (config.out_video, config.jsonl) if p is not None]
    if outputs:
        print("outputs: " + ", ".join(outputs))


def _archive(config: ArchiveConfig) -> int:
    assert config.out is not None
    failed, resumed, processed, frames = [], 0, 0, 0
    for result in run_archive(config, Progress):
        if result.error is not None:  # its warning is out already
            failed.append(result.name)
            continue
        assert result.summary is not None
        frames += result.summary["frames_processed"]
        if result.resumed:
            resumed += 1
            print(f"clip {result.name} ({result.path}): finished by an earlier run; skipped")
            continue
        processed += 1
        print(f"clip {result.name} ({result.path}):")
        for text in result.lines:
            print(f"  {text}")
    total = processed + resumed + len(failed)
    print(
        f"archive: {total} clips: {processed} processed, {resumed} finished earlier, "
        f"{len(failed)} failed; {frames} frames processed"
    )
    per_clip = "<clip>.jsonl and <clip>.mp4" if config.annotate else "<clip>.jsonl"
    print(f"outputs: {config.out} ({per_clip} per clip, {SUMMARY}, {MANIFEST})")
    if failed:
        print(
            f"error: {len(failed)} of {total} clips failed ({', '.join(failed)}; see the warnings "
            "above); a run again with the same --out tries them again",
            file=sys.stderr,
        )
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    archive = from_flags(ArchiveConfig, args)
    if archive.out is not None:
        return _archive(archive)
    config = archive.single()
    try:
        summary = run_video(config, Progress)
    except StreamLostError as exc:
        assert exc.summary is not None  # set by the run
        _report(config, exc.summary)
        retry = Spelling(VideoConfig, FLAGS)("retry")
        print(
            f"error: {exc} after {exc.summary.frames_processed} frames (summed up above); "
            f"give {retry} N (or {retry} {FOREVER}) to wait for it to come back",
            file=sys.stderr,
        )
        return 1
    _report(config, summary)
    return 0

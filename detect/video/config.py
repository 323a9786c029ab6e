"""`VideoConfig`: the settings of one camera's run, each declared once (`detect.settings`); from
them come `detect video`'s flags and a site file's camera keys (`detect watch`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from detect.config import SERVER_HELP, Connection, DetectSettings, Engine, host_port
from detect.errors import ConfigError
from detect.settings import (
    FLAGS,
    Spelling,
    at_least,
    between,
    more_than,
    nested,
    output_file,
    setting,
    with_absolute_paths,
)
from detect.structures import DetectOptions
from detect.track import TRACKERS, TrackerConfig
from detect.video.clips import ClipSettings
from detect.video.health import HealthSettings
from detect.video.motion import MotionSettings, motion_setting
from detect.video.source import is_live
from detect.zones import CountingSettings

FOREVER = "forever"


def _source(value: Any, root: Path, what: str) -> str:
    """A file (relative to ``root``), an ``rtsp://`` or ``http(s)://`` URL, or a webcam index."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what}: give a file, an rtsp:// or http:// URL, or a webcam index")
    return value if is_live(value) or value.isdecimal() else str(root / value)


def _attempts(value: Any, root: Path, what: str) -> int | None:
    """``forever`` (None) or a count of 0 or more."""
    if value == FOREVER:
        return None
    if isinstance(value, str) and value.isdecimal():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} {value}: give a number of attempts (0 or more) or '{FOREVER}'")
    return value


def _existing(path: Path | None) -> str | None:
    return None if path is None or path.is_file() else "no such file"


def _mp4(path: Path | None) -> str | None:
    if path is not None and not path.is_dir() and path.suffix.lower() != ".mp4":
        return "name an .mp4 file"
    return output_file(path)


@dataclass
class VideoConfig:
    """One camera's run (`detect.video.run.VideoRun`); see `detect.video` for what each does.
    ``model``, ``server``, ``engine`` and ``connection`` are flags of `detect video` and keys of
    the site, not of its cameras."""

    source: str = setting(
        "",
        "video file, rtsp:// or http:// URL, or webcam index",
        parse=_source,
        positional=True,
    )
    model: Path | None = setting(
        None, "exported NAME.onnx (local ONNX Runtime)", key="", group="where"
    )
    server: str | None = setting(
        None,
        SERVER_HELP,
        key="",
        group="where",
        check=host_port,
    )
    every: int = setting(1, "process every Nth frame", check=at_least(1))
    target_fps: float | None = setting(
        None, "process this many frames per video second", check=more_than(0)
    )
    realtime: bool = setting(False, "drop frames instead of lagging")
    track: bool = setting(False, "give objects stable track ids")
    tracker: str = setting(
        "appearance",
        "how tracks follow objects: by box overlap and each object's colours, or by box "
        "overlap alone (iou: a little faster; see detect.track)",
        choices=TRACKERS,
    )
    track_confirm: float = setting(
        TrackerConfig.confirm,
        "a track gets its id once one of its detections scores this (a piece of background the "
        "model sees at a steady, middling score stays untracked; see detect.track)",
        check=between(0, 1),
    )
    motion: MotionSettings | bool = setting(
        MotionSettings(),
        "motion gating: a frame goes to the model only when its picture changed since the last "
        "one that did, or force_s seconds after it (a site's camera: false, or a mapping of "
        "threshold, min_area, force_s, lighting, mask; see detect.video.motion)",
        parse=motion_setting,
        shown_default="on",
    )
    counting: CountingSettings = nested(CountingSettings)
    camera_health: HealthSettings = nested(HealthSettings)
    event_clips: ClipSettings = nested(ClipSettings)
    snapshots: bool = setting(
        False,
        "on a site (default true there): each zone and line event gets a JPEG of its frame with "
        "the object drawn, and a crop of the object, beside the event log (detect.video.proof)",
        flag="",
    )
    out_video: Path | None = setting(None, "annotated .mp4", check=_mp4)
    jsonl: Path | None = setting(None, "one JSON line per processed frame", check=output_file)
    truth: Path | None = setting(
        None,
        "the clip's ground truth (`detect synth --video`'s .json): the site summary scores the "
        "camera's counts against it (needs jsonl)",
        flag="",
        check=_existing,
    )
    detection: DetectSettings = nested(DetectSettings)
    engine: Engine = nested(Engine, keys=False)
    reconnect: int | None = setting(
        5,
        f"reopen attempts for a lost stream (or {FOREVER})",
        parse=_attempts,
        metavar="N",
    )
    retry: int | None = setting(
        0,
        f"--server: reopen after UNAVAILABLE this many times (or {FOREVER})",
        parse=_attempts,
        metavar="N",
    )
    in_flight: int = setting(4, "--server: frames on their way", check=at_least(1))
    frame_deadline_ms: int = setting(
        0,
        "--server: a frame the server cannot run within this is dropped (0: none)",
        check=lambda v: None if v >= 0 else "give milliseconds (0: no deadline)",
    )
    max_frames: int | None = setting(
        None, "stop after this many processed frames", check=at_least(1)
    )
    connection: Connection = nested(Connection, keys=False)
    name: str = setting(
        "",
        "the camera's name",
        flag="",
        check=lambda v: None if v else "give it a name",
    )
    options: DetectOptions = field(init=False)

    def __post_init__(self) -> None:
        self.options = self.detection.options()

    def absolute(self) -> VideoConfig:
        """These settings with every path absolute, a file ``source`` too (`with_absolute_paths`):
        for a run in another process (a Ray actor), whose working folder is not this one's."""
        config = with_absolute_paths(self)
        if is_live(config.source):
            return config
        return replace(config, source=str(Path(config.source).absolute()))

    def validate(self, spell: Spelling | None = None) -> None:
        """The checks that involve several settings; `ConfigError` in ``spell``'s spelling."""
        spell = spell or Spelling(VideoConfig, FLAGS)
        if (self.model is None) == (self.server is None):
            raise spell.problem(
                f"give exactly one of {spell('model')} (local) or {spell('server')} (gRPC)"
            )
        if self.target_fps is not None and self.every != 1:
            raise spell.problem(f"{spell('target_fps')} cannot go with {spell('every')}")
        if self.frame_deadline_ms and self.server is None:
            raise spell.problem(
                f"{spell('frame_deadline_ms')} goes with {spell('server')}: "
                "a local model drops nothing"
            )
        self.counting.validate(spell)
        if self.truth is not None and self.jsonl is None:
            raise spell.problem(
                f"{spell('truth')} needs {spell('jsonl')}: the run's boxes tell which object "
                "each track is"
            )
        if self.truth is not None and not self.counting.counter():
            raise spell.problem(
                f"{spell('truth')} scores zone and line counts: give the camera "
                f"{spell('zones')} or {spell('lines')}, or leave {spell('truth')} out"
            )

"""`VideoSummary`: what one camera's run did, counted as it goes (a status line may read it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from detect.video.source import SourceCounts
from detect.video.stages import StageTimes
from detect.zones import count_rows


@dataclass
class VideoSummary:
    """What a run did: frame counts, speed, classes, tracks, zone and line totals, dwell.

    ``source``: what the source side counted (frames read and dropped by the real-time reader,
    reconnects, why it ended; written by `FrameSource`); every other field is written by the
    run (`detect.video.run.VideoRun`) alone."""

    source: SourceCounts = field(default_factory=SourceCounts)
    frames_processed: int = 0
    frames_inferred: int = 0  # processed frames that went to the model (the motion gate's)
    last_ms: float = 0.0  # video time of the last processed frame
    inferred_ms: float = 0.0  # ... and of the last that went to the model
    frames_dropped_by_server: int = 0  # --frame-deadline-ms
    server_moves: int = 0  # streams opened again on another server (several servers)
    seconds: float = 0.0
    detections: Counter = field(default_factory=Counter)  # label -> detections
    tracks: dict[str, set[int]] = field(default_factory=dict)  # label -> track ids
    counting: dict[str, Any] = field(default_factory=dict)  # `Counting.summary()`, at the end
    stages: StageTimes = field(default_factory=StageTimes)  # where the frames' time went

    frames_read = property(lambda self: self.source.frames_read)
    frames_dropped = property(lambda self: self.source.frames_dropped, doc="by the source")
    reconnects = property(lambda self: self.source.reconnects)
    stopped = property(lambda self: self.source.stopped)

    @property
    def coverage(self) -> float:
        """The share of processed frames that went to the model (1.0 before any)."""
        return self.frames_inferred / self.frames_processed if self.frames_processed else 1.0

    @property
    def inferred_age_s(self) -> float:
        """Seconds of video since the last frame that went to the model."""
        return (self.last_ms - self.inferred_ms) / 1000

    @property
    def fps(self) -> float:
        return self.frames_processed / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "frames_inferred": self.frames_inferred,
            "coverage": round(self.coverage, 4),
            "ms_per_frame": self.stages.per_frame_ms(self.frames_processed),
            "frames_dropped": self.frames_dropped + self.frames_dropped_by_server,
            "frames_dropped_by_server": self.frames_dropped_by_server,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "detections": dict(self.detections),
            "tracks": {label: len(ids) for label, ids in self.tracks.items()},
            "unique_tracks": sum(len(ids) for ids in self.tracks.values()),
            **self.counting,
            "reconnects": self.reconnects,
            "server_moves": self.server_moves,
            "stopped": self.stopped,
        }

    def lines(self) -> list[str]:
        d = self.as_dict()
        out = [
            f"frames: {d['frames_read']} read, {d['frames_processed']} processed, "
            f"{d['frames_dropped']} dropped; {d['fps']:.2f} processed frames/s; "
            f"stopped: {d['stopped']}",
            f"model: ran on {d['frames_inferred']} of them ({self.coverage:.0%})",
            "time per frame: "
            + (", ".join(f"{k} {v:.1f} ms" for k, v in d["ms_per_frame"].items()) or "none"),
            "detections: " + (", ".join(f"{k} {v}" for k, v in d["detections"].items()) or "none"),
        ]
        if self.tracks:
            per_class = ", ".join(f"{k} {v}" for k, v in d["tracks"].items())
            out.append(f"tracks: {d['unique_tracks']} ({per_class})")
        if self.counting:
            rows = count_rows(self.counting["counts"])
            out.append("counts: " + (", ".join(" ".join(map(str, r)) for r in rows) or "none"))
            for zone, dwell in self.counting["dwell"].items():
                out.append(
                    f"dwell in {zone}: {dwell['visits']} visit{'s' * (dwell['visits'] != 1)}, "
                    f"mean {dwell['mean_s']:.2f} s, "
                    f"max {dwell['max_s']:.2f} s"
                )
        return out

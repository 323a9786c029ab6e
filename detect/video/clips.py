"""Short videos of events (`EventClips`): ``clip_before_s`` seconds of video before an event and
``clip_after_s`` after it, as an H.264 MP4 a browser plays (`detect.video.writer`).

The camera keeps its last ``clip_before_s`` seconds of processed frames in a ring, JPEG-encoded
(a 1080p frame is about 200 KB there instead of 6 MB), so the memory is bounded by the sampling
rate and the image size. An event starts a clip: the ring's frames are written, then each
processed frame until ``clip_after_s`` seconds of video have passed, then the file is closed.
The event names the file (``clip``) at once; the file is complete ``clip_after_s`` later, or at
the end of the run. Frames are the camera's own, as sampled (nothing drawn). A live camera's
clip names also carry the wall clock (ms since 1970): its frames are numbered from 0 again after
a restart, and a clip of an earlier run must stay.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detect.settings import at_least, output_folder, setting
from detect.video.writer import VideoWriter

QUALITY = 90


@dataclass(frozen=True)
class ClipSettings:
    """A camera's event clips (camera keys; both 0: none)."""

    clip_before_s: float = setting(
        0.0, "seconds of video before each event in its clip", flag="", check=at_least(0)
    )
    clip_after_s: float = setting(
        0.0, "seconds of video after each event in its clip", flag="", check=at_least(0)
    )
    clips: Path | None = setting(
        None, "the folder of the event clips (on a site, default: its snapshots folder)",
        flag="", check=output_folder,
    )  # fmt: skip

    @property
    def wanted(self) -> bool:
        return self.clips is not None and (self.clip_before_s > 0 or self.clip_after_s > 0)


@dataclass
class _Open:
    writer: VideoWriter
    until_ms: float


@dataclass
class EventClips:
    """One camera's ring of recent frames and its clips being written."""

    settings: ClipSettings
    camera: str
    fps: float  # of the clips: the camera's processed frames per second of video
    live: bool = False  # a live camera's clip names carry the wall clock
    _ring: deque[tuple[float, bytes]] = field(default_factory=deque)
    _open: list[_Open] = field(default_factory=list)

    def add(self, frame: np.ndarray, timestamp_ms: float) -> None:
        """A processed frame (``(H, W, 3) uint8`` BGR): into the open clips and the ring."""
        for clip in self._open:
            clip.writer.write(frame)
        done = [c for c in self._open if timestamp_ms >= c.until_ms]
        for clip in done:
            clip.writer.close()
            self._open.remove(clip)
        if self.settings.clip_before_s > 0:
            _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
            self._ring.append((timestamp_ms, data.tobytes()))
            while timestamp_ms - self._ring[0][0] > 1000 * self.settings.clip_before_s:
                self._ring.popleft()

    def start(self, event: dict[str, Any], frame: np.ndarray, timestamp_ms: float) -> Path:
        """Open the clip of ``event`` (confirmed in ``frame``, not yet added) with the ring's
        frames in it; its path."""
        assert self.settings.clips is not None
        kind = str(event.get("event", ""))
        place = event.get("zone", event.get("line", event.get("health", "")))
        name = f"{event.get('frame')}-{event.get('track_id', '-')}-{place}-{kind}"
        if self.live:
            name += f"-{int(time.time() * 1000)}"
        path = self.settings.clips / self.camera / f"{name}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        height, width = frame.shape[:2]
        writer = VideoWriter(path, self.fps, width, height)
        for _, data in self._ring:
            picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if picture is not None and picture.shape == frame.shape:
                writer.write(picture)
        self._open.append(_Open(writer, timestamp_ms + 1000 * self.settings.clip_after_s))
        return path

    def close(self) -> None:
        """Finish every clip still open (the run ended)."""
        for clip in self._open:
            clip.writer.close()
        self._open.clear()

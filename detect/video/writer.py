"""Annotated video a browser plays inline: H.264 (libx264, yuv420p) in an MP4, written with
PyAV, whose wheels carry libx264 (OpenCV's ``mp4v``, MPEG-4 Part 2, plays in no browser)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"  # what browsers decode; it halves the colour planes, so even sizes


class VideoWriter:
    """An H.264 MP4 of ``width`` x ``height`` frames at ``fps`` being written at ``path``
    (`OSError` when it cannot be created). `write` takes ``(H, W, 3) uint8`` BGR frames, a frame
    of another size resized to the video's. An odd width or height is made even by repeating the
    last column or row. `close` finishes the file (its index in front, so that a browser plays it
    while it downloads); before that it is not playable."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self._size = (width, height)
        self._written = 0
        self._container = av.open(str(path), "w", format="mp4", options={"movflags": "faststart"})
        try:
            self._stream = self._container.add_stream(
                CODEC, rate=Fraction(fps).limit_denominator(1001)
            )
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = PIXEL_FORMAT
            self._container.start_encoding()  # creates the file now: errors come from here
        except BaseException:
            self._container.close()
            raise

    def write(self, bgr: np.ndarray) -> None:
        """Encode one frame ``(H, W, 3) uint8`` BGR."""
        width, height = self._size
        if bgr.shape[:2] != (height, width):
            bgr = cv2.resize(bgr, self._size, interpolation=cv2.INTER_AREA)
        bgr = np.pad(bgr, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts, frame.time_base = self._written, 1 / self._stream.average_rate
        self._written += 1
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()

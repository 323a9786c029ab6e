"""`detect video SOURCE`: frames of a file, stream or webcam through a detector, with tracks,
zone and line counts, an annotated MP4 (H.264, plays in a browser), one JSONL line per processed
frame, and a summary.

Sources: a file, an ``rtsp://`` / ``http(s)://`` URL, or a webcam index, read with OpenCV.
Inference: local (`Detector`, ``model``) or remote (``server``: one ``DetectStream`` call with up
to ``in_flight`` frames on their way; raw BGR pixels are sent, so both paths see the same
pixels). Sampling: every ``every``-th frame, or ``target_fps`` frames per second of video time.
``realtime``: a reader thread keeps only the newest frame and processing takes whatever is newest
(a file is read at its own frame rate), so a slow detector drops frames instead of lagging.

A stream that fails is reopened up to ``reconnect`` times with growing pauses (0.5 s, 1 s, 2 s,
... up to 8 s), then the run ends with its summary. An unavailable server (down at the start or
gone mid-run) is a clear error, or, with ``retry``, the stream is reopened after the same growing
pauses up to ``retry`` times in a row. SIGTERM/SIGINT end the run after the frame
in hand: the MP4 is finalised (playable) and every JSONL line is complete (each is flushed when
written).

Several clips with an output folder: `archive` (one after another, resumable).

Modules: `config` (the settings), `source` (frames), `remote` (the server's stream), `run` (one
camera's run), `annotate` (the MP4 frame and JSONL records), `writer` (the H.264 MP4),
`summary`, `archive` (the clips of an archive, its manifest and summary).
"""

from detect.video.config import VideoConfig
from detect.video.run import run_video
from detect.video.summary import VideoSummary

__all__ = ["VideoConfig", "VideoSummary", "run_video"]

"""`detect watch site.yaml`: every camera of a site through one detector, each with its own
tracker, zones, lines and outputs, plus one event log for the whole site.

Each camera is a `detect.video.VideoRun` on its own thread: through ``server`` (one
``DetectStream`` per camera; the server batches frames of different cameras together) or a local
``model`` (one backend shared by the cameras, one frame at a time). Trackers are per camera and
number their tracks apart (camera k of n: k, k + n, k + 2n, ...), so a track id names one
object on the whole site. A camera that drops (a live source) reconnects on its own, for ever by
default, while the others go on; a live source that cannot be opened at the start is retried the
same way, and so is the server once the cameras run (a server that cannot be reached at the start
is an error: more likely a wrong address than a restart). A camera that fails for good (out of
attempts, or an error) stops alone, with a warning, and makes the exit code 1. SIGTERM/SIGINT
finish every camera after the frame in hand (each gets `FINISH_S`); a second signal exits at once.
With ``--ray`` each camera is a Ray actor instead, restarted by Ray if its process dies
(`detect.watch.actors`).

Modules: `site` (the site file and its settings), `camera` (a camera's thread), `events` (the
site's event log), `status` (the status lines), `run` (`watch`), `actors` (the cameras as Ray
actors), `resume` (where a restarted camera takes up its run).
"""

from detect.watch.run import FINISH_S, WatchResult, watch
from detect.watch.site import Site, SiteSettings, read_site

__all__ = ["FINISH_S", "Site", "SiteSettings", "WatchResult", "read_site", "watch"]

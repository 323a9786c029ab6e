"""`UiServer`: the site page's application (`detect.watch.ui.app`) served by uvicorn on a thread
of its own, beside the cameras."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from detect.config import read_tokens
from detect.errors import ConfigError
from detect.watch.ui.app import ui_app
from detect.watch.ui.view import SiteView

if TYPE_CHECKING:
    from detect.watch.events import EventLog
    from detect.watch.site import Site

START_S = 10.0  # how long uvicorn may take to listen
GRACE_S = 2.0  # at the end, how long open pages get to take the last messages


class UiServer:
    """uvicorn serving ``view`` on ``host``:``port`` (0: a free port; `port` says which)."""

    def __init__(
        self, view: SiteView, host: str, port: int, tokens: list[str] | None = None
    ) -> None:
        import uvicorn

        self.view = view
        config = uvicorn.Config(
            ui_app(view, tokens),
            host=host,
            port=port,
            log_level="warning",
            log_config=None,  # its lines go through the CLI's own (`warning: ...`)
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=GRACE_S,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="ui", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(
                    f"ui {host}:{port}: cannot listen there (in use, or not this machine's "
                    "address?); give another --ui HOST:PORT"
                )
            time.sleep(0.02)
        self.host = host
        self.port = int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        """Tell the pages the run ended, give them `GRACE_S` to take it, and stop."""
        self.view.finish()
        time.sleep(0.2)
        self._server.should_exit = True
        self._thread.join(GRACE_S + 3)


def start_ui(
    site: Site, log: EventLog, model: dict[str, Any], stream: TextIO = sys.stderr
) -> UiServer:
    """The site's page on ``site.settings.ui``, told every event ``log`` writes; its address
    said on ``stream``. ``model``: what the page says of the model (name, version, engine)."""
    from detect.watch.site import ui_host_port

    settings = site.settings
    assert settings.ui is not None
    tokens = read_tokens(settings.ui_token_file) if settings.ui_token_file else None
    media: dict[str, Path] = {}
    if site.snapshots is not None:
        media["snapshots"] = site.snapshots.resolve()
    for camera in site.cameras:
        clips = camera.event_clips.clips
        if clips is not None and clips.resolve() not in media.values():
            media[f"clips-{camera.name}"] = clips.resolve()
    servers = [s.strip() for s in settings.server.split(",")] if settings.server else []
    info = {
        "site": site.name,
        "model": model,
        "servers": servers,
        "ray": settings.cluster.ray is not None,
        "pictures": settings.cluster.ray is None,  # a Ray camera's frames stay in its actor
    }
    view = SiteView(info, [c.name for c in site.cameras], media)
    log.watchers.append(view.event)
    host, port = ui_host_port(settings.ui)
    server = UiServer(view, host, port, tokens)
    print(f"site page on {server.url}", file=stream, flush=True)
    return server

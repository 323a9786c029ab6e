"""The site file of `detect watch`: its keys (`SiteSettings`, each declared once, the same
declarations as ``detect watch``'s flags that override them) and its cameras (`VideoConfig`'s
declarations: a camera key is a `detect video` flag).

```yaml
server: 127.0.0.1:50051          # or model: models/demo.onnx
events: out/events.jsonl         # the site's event log (optional)
summary: out/summary.json        # the summaries, as JSON (optional)
defaults: {target_fps: 5, min_frames: 2}   # any camera key, for every camera
cameras:
  - name: gate
    source: rtsp://10.0.0.7/stream1
    zones: [{name: door, polygon: [[0, 0], [160, 0], [160, 240], [0, 240]]}]  # or a zones.json
    lines: [{name: entry, points: [[160, 240], [160, 0]]}]   # forward: left to right
    jsonl: out/gate.jsonl
    out_video: out/gate.mp4
```

Paths in the file are relative to its folder. A camera's own ``every`` or ``target_fps`` replaces
both of the defaults'. On a site, cameras track (``track: true``) and reconnect and retry for
ever unless they say otherwise (`CAMERA_DEFAULTS`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detect.config import (
    SERVER_HELP,
    Cluster,
    Connection,
    Engine,
    host_port,
    load_yaml,
    token_file,
)
from detect.errors import ConfigError, UsageError, install_extra
from detect.settings import (
    FLAGS,
    KEYS,
    Spelling,
    at_least,
    checked_keys,
    declared,
    from_mapping,
    more_than,
    nested,
    output_file,
    output_folder,
    setting,
)
from detect.video.config import FOREVER, VideoConfig
from detect.video.source import is_live
from detect.watch.sinks import SinkSettings, sink_settings

CAMERA_DEFAULTS: dict[str, Any] = {
    "track": True,
    "reconnect": FOREVER,
    "retry": FOREVER,
    "snapshots": True,
    "health": True,
}
"""Where a site's cameras differ from `detect video`'s defaults."""


def _mapping(value: Any, root: Path, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: a mapping of camera keys")
    return value


def _cameras(value: Any, root: Path, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{what}: list at least one camera")
    return value


def ui_address(value: str | None) -> str | None:
    """The check of ``ui``: ``HOST:PORT`` or ``PORT`` (`ui_host_port`)."""
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not port.isdecimal() or int(port) > 65535 or (":" in value and not host):
        return "give HOST:PORT or PORT, e.g. 127.0.0.1:8080 or 8080"
    return None


def ui_host_port(value: str) -> tuple[str, int]:
    """``ui``'s host (127.0.0.1 when only a port is given; brackets of an IPv6 one removed) and
    port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class SiteSettings:
    """A site file's keys and `detect watch`'s flags (a flag given overrides the key)."""

    site: Path | None = setting(
        None,
        "site file: cameras (name, source, zones, lines, outputs); docs/watch.md",
        positional=True,
        key="",
    )
    server: str | None = setting(
        None,
        SERVER_HELP + " (overrides the file)",
        group="where",
        check=host_port,
    )
    model: Path | None = setting(
        None, "exported NAME.onnx, run here (overrides the file)", group="where"
    )
    engine: Engine = nested(Engine)
    connection: Connection = nested(Connection)
    cluster: Cluster = nested(Cluster, keys=False, skip=("workers", "gpus_per_worker"))
    events: Path | None = setting(
        None, "the site's event log (overrides the file)", check=output_file
    )
    summary: Path | None = setting(None, "the summaries, as JSON", flag="", check=output_file)
    snapshots: Path | None = setting(
        None,
        "the folder of the events' pictures (default: snapshots/ beside the event log)",
        flag="",
        check=output_folder,
    )
    snapshots_max_age_h: float = setting(
        168.0,
        "pictures older than this are deleted (at the start and hourly)",
        flag="",
        check=more_than(0),
    )
    name: str = setting(
        "",
        "the site's name, in its events and MQTT topics (default: the site file's name)",
        flag="",
    )
    sinks: tuple[SinkSettings, ...] = setting(
        (),
        "where the events go besides the event log: mqtt and webhook sinks (docs/watch.md)",
        flag="",
        parse=sink_settings,
    )
    outbox: Path | None = setting(
        None,
        "the durable outbox the sinks send from (default: outbox.sqlite beside the site file)",
        flag="",
        check=output_file,
    )
    outbox_max_events: int = setting(
        100_000, "the outbox keeps at most this many undelivered events", flag="", check=at_least(1)
    )
    outbox_max_age_h: float = setting(
        168.0, "the outbox drops undelivered events older than this", flag="", check=more_than(0)
    )
    metrics_port: int | None = setting(
        None,
        "Prometheus /metrics of the cameras' health and frames/s, the events and the sinks, on "
        "this port (0: any free port)",
        check=at_least(0),
    )
    budget: int | None = setting(
        None,
        "model runs under way at once over the cameras, frames with motion served first "
        "(default: 1 for a local model, 2 per server listed; 0: no budget; not with --ray; "
        "detect.video.budget)",
        flag="",
        check=at_least(0),
    )
    drain_s: float = setting(
        10.0, "at the end, seconds the sinks get to send what is left", check=at_least(0)
    )
    ui: str | None = setting(
        None,
        "serve the site's web page here: HOST:PORT, or PORT (on 127.0.0.1; 0: any free port); "
        "docs/watch.md",
        metavar="[HOST:]PORT",
        check=ui_address,
    )
    ui_token_file: Path | None = setting(
        None,
        "the page wants one of this file's bearer tokens (a --auth-token-file of the servers)",
        flag="",
        check=token_file,
    )
    max_frames: int | None = setting(
        None, "stop each camera after this many processed frames", key="", check=at_least(1)
    )
    status_every: float = setting(
        10.0,
        "seconds between status lines when stderr is not a terminal",
        key="",
        check=more_than(0),
    )
    defaults: dict[str, Any] = setting(
        factory=dict, help="camera keys for every camera", flag="", parse=_mapping
    )
    cameras: list[Any] = setting(
        factory=list, help="the cameras, each a mapping of camera keys", flag="", parse=_cameras
    )

    def validate(self, spell: Spelling | None = None) -> None:
        spell = spell or Spelling(SiteSettings, FLAGS)
        if self.budget and self.cluster.ray is not None:
            raise spell.problem(
                f"{spell('budget')} shares one process's model runs among its cameras; on Ray "
                f"each camera is a process of its own: leave {spell('budget')} out"
            )
        if (self.server is None) == (self.model is None):
            raise spell.problem(
                f"give exactly one of {spell('server')} (HOST:PORT) or {spell('model')} (an .onnx)"
            )
        if self.model is not None and not self.model.exists():
            raise spell.error("model", self.model, "no such file")
        if self.ui is not None and not all(map(importlib.util.find_spec, ("starlette", "uvicorn"))):
            raise ConfigError(
                f"{spell('ui')} serves the site's page with Starlette and uvicorn: install the "
                f"`ui` extra: {install_extra('ui')}"
            )


@dataclass
class Site:
    """A parsed site: its settings and one `VideoConfig` per camera."""

    settings: SiteSettings
    cameras: list[VideoConfig]

    @property
    def events(self) -> Path | None:
        return self.settings.events

    @property
    def summary(self) -> Path | None:
        return self.settings.summary

    @property
    def name(self) -> str:
        """The site's name: its ``name``, or its file's name without the extension."""
        settings = self.settings
        return settings.name or (settings.site.stem if settings.site is not None else "site")

    @property
    def snapshots(self) -> Path | None:
        return snapshots_folder(self.settings)

    @property
    def outbox(self) -> Path:
        """The outbox file: ``outbox``, or ``outbox.sqlite`` beside the site file."""
        if self.settings.outbox is not None:
            return self.settings.outbox
        folder = self.settings.site.parent if self.settings.site is not None else Path()
        return folder / "outbox.sqlite"


def snapshots_folder(site: SiteSettings) -> Path | None:
    """The events' pictures (and clips): ``snapshots``, or ``snapshots/`` beside the event log
    (None: neither, so no pictures)."""
    if site.snapshots is not None:
        return site.snapshots
    return site.events.parent / "snapshots" if site.events is not None else None


def _defaults(site: SiteSettings, root: Path) -> tuple[dict[str, Any], list[str]]:
    """The site's ``defaults`` that are camera keys with good values, and a problem line for each
    of the others (named ``defaults``, not after the cameras that would inherit them)."""
    spell = Spelling(VideoConfig, KEYS, "defaults")
    typed, problems = checked_keys(VideoConfig, site.defaults, spell, root)
    names = {d.key: d.name for d in declared(VideoConfig)}
    return {k: v for k, v in site.defaults.items() if names.get(k) in typed}, problems


def _where(item: dict[str, Any], k: int) -> str:
    """``camera 'gate'``, or ``camera 3`` (the third) when it has no name."""
    name = item.get("name")
    return f"camera {name!r}" if isinstance(name, str) and name else f"camera {k + 1}"


def _camera(
    item: Any, site: SiteSettings, defaults: dict[str, Any], root: Path, k: int
) -> VideoConfig:
    """One camera's `VideoConfig` from its entry over the site's good ``defaults``."""
    if not isinstance(item, dict):
        raise UsageError(f"camera {k + 1}: expected a mapping with at least name and source")
    if item.keys() & {"every", "target_fps"}:  # a camera's own sampling replaces the default's
        defaults = {k: v for k, v in defaults.items() if k not in ("every", "target_fps")}
    values = {**CAMERA_DEFAULTS, **defaults, **item}
    folder = snapshots_folder(site)
    if folder is not None:  # the clips go beside the pictures unless the camera says otherwise
        values.setdefault("clips", str(folder.resolve()))
    name = values.get("name")
    where = _where(values, k)
    if not isinstance(name, str) or not name:
        raise UsageError(f"{where}: give it a 'name'")
    if "source" not in values:
        raise UsageError(
            f"{where}: give its 'source' (a file, an rtsp:// or http:// URL, a webcam)"
        )
    fixed: dict[str, Any] = {
        "server": site.server,
        "model": site.model,
        "engine": site.engine,
        "connection": site.connection,
    }
    if site.max_frames is not None:
        fixed["max_frames"] = site.max_frames
    config = from_mapping(VideoConfig, values, where, root, **fixed)
    local = not is_live(config.source) and not config.source.isdecimal()
    if local and not Path(config.source).is_file():
        raise UsageError(f"{where}: source {config.source}: no such file")
    return config


def read_site(path: Path, flags: Mapping[str, Any] | None = None, **given: Any) -> Site:
    """The site file at ``path``, with the values of the flags given (``flags``, by setting name:
    `detect watch`'s) or the ``given`` keyword values (typed, by setting name) over its keys.
    `UsageError` names the camera (or ``defaults``) and key at fault: every bad key of the file
    at once, a line each."""
    data = load_yaml(path)
    if given.keys() & {"server", "model"}:  # the caller's detector replaces the file's
        data = {k: v for k, v in data.items() if k not in ("server", "model")}
    root = Path(path).parent
    try:
        site = from_mapping(SiteSettings, data, str(path), root, flags, site=Path(path), **given)
    except UsageError as exc:  # the camera keys too, so that the file's problems come together
        problems = list(exc.problems)
        cameras = data.get("cameras")
        parts = [("defaults", data.get("defaults"))]
        if isinstance(cameras, list):
            parts += [(_where(c, k), c) for k, c in enumerate(cameras) if isinstance(c, dict)]
        for where, keys in parts:
            if isinstance(keys, dict):
                spell = Spelling(VideoConfig, KEYS, where)
                problems += checked_keys(VideoConfig, keys, spell, root)[1]
        raise UsageError(*problems, where=str(path)) from None
    defaults, problems = _defaults(site, root)
    cameras = []
    for k, item in enumerate(site.cameras):
        try:
            cameras.append(_camera(item, site, defaults, root, k))
        except UsageError as exc:
            problems.extend(exc.problems)
    if problems:
        raise UsageError(*problems, where=str(path))
    names = [c.name for c in cameras]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"{path}: camera name {repeated[0]!r} is used twice")
    owners: dict[Path, str] = {}
    named = [(f"camera {c.name!r}", c.jsonl) for c in cameras]
    named += [(f"camera {c.name!r}", c.out_video) for c in cameras]
    named += [("the event log", site.events), ("the summary", site.summary)]
    for owner, output in named:
        if output is None:
            continue
        where = Path(output).resolve()
        if where in owners:
            raise UsageError(
                f"{path}: {owners[where]} and {owner} both write {output}; give each its own file"
            )
        owners[where] = owner
    return Site(site, cameras)

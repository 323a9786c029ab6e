"""Where a site's events go besides its event log: the ``sinks:`` of a site file (`SinkSettings`,
each key declared once) and what every sink does (`Sink`).

```yaml
sinks:
  - {type: mqtt, url: mqtt://127.0.0.1:1883}
  - type: webhook
    url: https://alarms.example/hooks/detect
    secret_file: hook.secret
    cameras: [gate]          # only these cameras' events (default: all)
    events: [enter, cross]   # only these kinds (default: all)
    classes: [person]        # only these classes (default: all)
```

A sink's `Sink.send` either delivers the event, or raises `SinkDownError` (the sink is down for
now: the same event is tried again later, so a sink's events stay in order), or raises
`RefusedError` (this event will never be taken: it is kept in the outbox's ``failures`` and the
sink goes on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from detect.errors import ConfigError, UsageError
from detect.settings import Spelling, at_least, from_mapping, more_than, setting

SINK_TYPES = ("mqtt", "webhook")

EVENT_KINDS = ("enter", "exit", "cross", "problem", "recovered")
"""The kinds of events: of zones and lines (`detect.zones`) and of camera health
(`detect.video.health`); an event's ``event`` key."""


class SinkDownError(Exception):
    """The sink cannot take events now (down, unreachable, busy): try the same one later."""


class RefusedError(Exception):
    """The sink will never take this event (a webhook's 4xx other than 408 and 429)."""


class Sink(Protocol):
    """A connected sink (`detect.watch.mqtt.MqttSink`, `detect.watch.webhook.WebhookSink`)."""

    name: str
    settings: SinkSettings

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _existing(path: Path | None) -> str | None:
    return None if path is None or path.is_file() else "no such file"


@dataclass(frozen=True)
class SinkSettings:
    """One entry of a site's ``sinks:``."""

    type: str = setting("", "mqtt or webhook", choices=SINK_TYPES, flag="")
    url: str = setting(
        "",
        "mqtt://HOST:PORT (mqtts:// for TLS) or the webhook's http(s):// URL",
        flag="",
    )
    name: str = setting("", "the sink's name in the outbox and in messages (default: its url)")
    cameras: tuple[str, ...] = setting((), "only these cameras' events")
    events: tuple[str, ...] = setting(
        (), "only these event kinds (enter, exit, cross; problem, recovered: camera health)"
    )
    classes: tuple[str, ...] = setting((), "only these classes' events")
    username: str = setting("", "mqtt: user name")
    password_file: Path | None = setting(None, "mqtt: the password, in a file", check=_existing)
    ca: Path | None = setting(
        None, "mqtts://: the PEM certificate that verifies the broker", check=_existing
    )
    topic_prefix: str = setting("detect", "mqtt: topics start with this")
    secret_file: Path | None = setting(
        None, "webhook: the shared secret of the X-Detect-Signature HMAC", check=_existing
    )
    inline_snapshots: bool = setting(
        False, "webhook: the event's pictures in its body too, base64 (snapshot_jpeg, crop_jpeg)"
    )
    timeout_s: float = setting(10.0, "seconds to wait for the sink to answer", check=more_than(0))
    max_backoff_s: float = setting(
        30.0, "the longest wait between two tries of an event", check=at_least(0.1)
    )

    def validate(self, spell: Spelling) -> None:
        if not self.type:
            raise spell.problem("give its type: mqtt or webhook")
        parts = urlsplit(self.url)
        if any(c.isspace() for c in self.url):
            raise spell.error("url", self.url, "a url has no spaces (write them %20)")
        schemes = ("mqtt", "mqtts") if self.type == "mqtt" else ("http", "https")
        if parts.scheme not in schemes or not parts.hostname:
            raise spell.error(
                "url", self.url or "(none)", f"give {' or '.join(s + '://HOST' for s in schemes)}"
            )
        try:
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise spell.error("url", self.url, "give a port from 1 to 65535") from None
        if self.type == "webhook" and self.secret_file is None:
            raise spell.problem(
                "a webhook needs secret_file: the shared secret its X-Detect-Signature is made with"
            )
        bad = sorted(set(self.events) - set(EVENT_KINDS))
        if bad:
            raise spell.error("events", bad[0], f"use {', '.join(EVENT_KINDS)}")

    @property
    def label(self) -> str:
        """The sink's name: its ``name``, or ``TYPE URL``."""
        return self.name or f"{self.type} {self.url}"

    def wants(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` passes the sink's filters."""
        return (
            (not self.cameras or event.get("camera") in self.cameras)
            and (not self.events or event.get("event") in self.events)
            and (not self.classes or event.get("label") in self.classes)
        )


def first_line(settings: SinkSettings, key: str) -> str:
    """The first line of the file that ``settings``' ``key`` names (a password, a shared secret),
    stripped; `ConfigError` naming the sink and key when it cannot be read or is empty."""
    path = getattr(settings, key)
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"sink {settings.label}: {key} {path}: {exc}") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"sink {settings.label}: {key} {path} is empty; put it on its first line")
    return lines[0].strip()


def sink_settings(value: Any, root: Path, what: str) -> tuple[SinkSettings, ...]:
    """The site file's ``sinks:`` list (`ConfigError` naming the sink and key at fault)."""
    if not isinstance(value, list):
        raise ConfigError(f"{what}: a list of sinks, each a mapping with type and url")
    sinks = []
    for k, item in enumerate(value):
        where = f"sink {k + 1}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: a mapping with type and url")
        try:
            sinks.append(from_mapping(SinkSettings, item, where, root))
        except UsageError as exc:
            raise ConfigError("; ".join(str(p) for p in exc.problems)) from None
    names = [s.label for s in sinks]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"two sinks are named {name!r}; give each its own name")
    return tuple(sinks)


def open_sink(settings: SinkSettings, site: str) -> Sink:
    """``settings``' sink, connected (`ConfigError`: it cannot be reached or used now)."""
    if settings.type == "mqtt":
        from detect.watch.mqtt import MqttSink

        return MqttSink(settings, site)
    from detect.watch.webhook import WebhookSink

    return WebhookSink(settings)

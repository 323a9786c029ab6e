"""The MQTT sink (`MqttSink`): each event published with QoS 1 to
``<prefix>/<site>/<camera>/events``, once the broker has acknowledged it (PUBACK) the outbox
marks it delivered.

Beside the events: ``<prefix>/<site>/<camera>/state``, retained, the camera's latest state
(``online``, processed frames/s, counts; `MqttSink.state`), and ``<prefix>/<site>/available``,
retained: ``online`` while `detect watch` runs, ``offline`` when it ends, and the broker's last
will ``offline`` when it dies (MQTT gives a connection one will, so the will is the site's, as
Frigate's ``frigate/available``; the cameras' states say ``online: false`` at a clean end).

paho-mqtt's own loop thread keeps the connection and reconnects (1 s, growing to 30 s); while it
is down `send` raises `SinkDownError` and the events wait in the outbox.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

from detect.errors import ConfigError
from detect.watch.sinks import SinkDownError, SinkSettings, first_line

log = logging.getLogger(__name__)


def _segment(name: str) -> str:
    """``name`` as one topic level: MQTT's wildcards ``+`` and ``#``, ``/`` and NUL as ``_``."""
    return "".join("_" if c in "+#/\0" else c for c in name) or "_"


class MqttSink:
    """A connected MQTT client for the site ``site`` (its topics' second level)."""

    def __init__(self, settings: SinkSettings, site: str) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.name = settings.label
        self.site = site
        parts = urlsplit(settings.url)
        tls = parts.scheme == "mqtts"
        host, port = parts.hostname or "", parts.port or (8883 if tls else 1883)
        self._root = f"{_segment(settings.topic_prefix)}/{_segment(site)}"
        self._connected = threading.Event()
        self._states: dict[str, str] = {}  # each camera's latest state, sent again on connect
        self._states_lock = threading.Lock()
        self._in_flight: tuple[Any, Any] | None = None  # (event id, its MQTTMessageInfo)
        client = mqtt.Client(  # a client id of its own: two sinks, or two sites, never collide
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"detect-watch-{_segment(site)}-{uuid.uuid4().hex[:8]}",
            clean_session=True,
        )
        if settings.username:
            password = None
            if settings.password_file is not None:
                password = first_line(settings, "password_file")
            client.username_pw_set(settings.username, password)
        if tls:
            client.tls_set(
                ca_certs=str(settings.ca) if settings.ca else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(f"{self._root}/available", "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        try:
            client.connect(host, port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"sink {self.name}: cannot reach the broker ({exc}); start it, or fix the url"
            ) from None
        client.loop_start()
        self._client = client
        if not self._connected.wait(settings.timeout_s):
            client.disconnect()
            client.loop_stop()
            raise ConfigError(
                f"sink {self.name}: the broker did not accept the connection within "
                f"{settings.timeout_s:g} s; check its user name, password and TLS"
            )

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("sink %s: the broker refused the connection: %s", self.name, reason)
            return
        client.publish(f"{self._root}/available", "online", qos=1, retain=True)
        with self._states_lock:
            for camera, state in self._states.items():
                client.publish(self.topic(camera, "state"), state, qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if self._connected.is_set():
            log.warning(
                "sink %s: lost the broker (%s); events wait in the outbox", self.name, reason
            )
        self._connected.clear()

    def topic(self, camera: str, what: str) -> str:
        return f"{self._root}/{_segment(camera)}/{what}"

    def send(self, event: dict[str, Any]) -> None:
        """Publish ``event`` with QoS 1 and wait for the broker's PUBACK (else `SinkDownError`)."""
        if not self._connected.is_set():
            raise SinkDownError("not connected")
        if self._in_flight is not None and self._in_flight[0] == event.get("id"):
            info = self._in_flight[1]  # paho resends it itself: wait for that, not a copy
        else:
            info = self._client.publish(
                self.topic(str(event.get("camera", "")), "events"), json.dumps(event), qos=1
            )
            self._in_flight = (event.get("id"), info)
        try:
            info.wait_for_publish(self.settings.timeout_s)
        except (RuntimeError, ValueError) as exc:
            self._in_flight = None  # not queued by paho: publish it again next time
            raise SinkDownError(str(exc)) from None
        if not info.is_published():
            raise SinkDownError("no PUBACK")
        self._in_flight = None

    def state(self, camera: str, state: dict[str, Any]) -> None:
        """Publish ``camera``'s state, retained; while the broker is away, the latest state of
        each camera waits and goes out on reconnection."""
        text = json.dumps(state)
        with self._states_lock:
            self._states[camera] = text
        if self._connected.is_set():
            self._client.publish(self.topic(camera, "state"), text, qos=1, retain=True)

    def close(self) -> None:
        """Say ``offline`` (retained; after waiting up to ``timeout_s`` for a broker that is
        away, so that the cameras' last states reach it) and disconnect."""
        if self._connected.wait(self.settings.timeout_s):
            info = self._client.publish(f"{self._root}/available", "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(self.settings.timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

"""The webhook sink (`WebhookSink`): each event as an HTTP POST of its JSON, signed.

Headers: ``Content-Type: application/json``, ``X-Detect-Event-Id`` (the event's ``id``) and
``X-Detect-Signature: sha256=<hex>``, the HMAC-SHA256 of the body's bytes with the shared secret
(the first line of ``secret_file``). A receiver checks it as GitHub's webhooks are checked::

    import hashlib, hmac

    def genuine(body: bytes, header: str, secret: bytes) -> bool:
        mac = hmac.new(secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(header, "sha256=" + mac)

A 2xx answer is a delivery. A 408, 429 or 5xx answer, a timeout or no connection:
`SinkDownError` (the delivery thread tries the same event again, backing off). Any other 4xx:
`RefusedError`, the event is kept in the outbox's ``failures`` with the answer, and the next one
goes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from detect.watch.sinks import RefusedError, SinkDownError, SinkSettings, first_line

RETRIED_STATUSES = frozenset({408, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect comes back as the 3xx it is: urllib would turn a POST into a bodiless GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def signature(body: bytes, secret: bytes) -> str:
    """The ``X-Detect-Signature`` of ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _inlined(event: dict[str, Any]) -> dict[str, str]:
    """``snapshot_jpeg`` and ``crop_jpeg``: the event's pictures (``snapshot``, ``crop``), base64;
    a picture no longer on disk is left out."""
    inlined = {}
    for key in ("snapshot", "crop"):
        if key in event:
            with contextlib.suppress(OSError):
                data = Path(event[key]).read_bytes()
                inlined[f"{key}_jpeg"] = base64.b64encode(data).decode()
    return inlined


class WebhookSink:
    """POSTs to ``settings.url``."""

    def __init__(self, settings: SinkSettings) -> None:
        assert settings.secret_file is not None  # SinkSettings.validate
        self.settings = settings
        self.name = settings.label
        self._secret = first_line(settings, "secret_file").encode()

    def send(self, event: dict[str, Any]) -> None:
        if self.settings.inline_snapshots:
            event = event | _inlined(event)
        body = json.dumps(event).encode()
        request = urllib.request.Request(
            self.settings.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Detect-Event-Id": urllib.parse.quote(str(event.get("id", "")), safe=":@-_."),
                "X-Detect-Signature": signature(body, self._secret),
            },
        )
        try:
            with _OPENER.open(request, timeout=self.settings.timeout_s) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if 300 <= exc.code < 400:
                where = exc.headers.get("Location", "elsewhere")
                raise SinkDownError(f"HTTP {exc.code} to {where}: give that url") from None
            if exc.code in RETRIED_STATUSES or exc.code >= 500:
                raise SinkDownError(f"HTTP {exc.code}") from None
            raise RefusedError(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise SinkDownError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None

    def close(self) -> None:
        pass

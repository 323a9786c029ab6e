"""The site page's web application (`ui_app`, Starlette): read-only, over a `SiteView`.

Routes (every URL of the pages is relative, so the app works behind a reverse proxy under any
path prefix):
* ``/`` the site page, ``/camera/NAME`` a camera's page (static HTML, CSS and JavaScript from
  this package's ``static`` folder, under ``/static/``: no build step, nothing from the internet);
* ``/api/site``: the site now (`SiteView.site`), JSON;
* ``/api/stream``: server-sent events: ``site`` each second, ``camera`` and ``detect`` with each
  event, ``end`` when the run has ended;
* ``/api/cameras/NAME/picture.jpg``: the camera's latest processed frame, drawn (204 before any);
* ``/media/KEY/PATH``: the events' snapshots and clips, under the folders the site writes them to
  (`SiteView.media`: KEY -> folder); nothing outside them.

With ``tokens``, every route but ``/static/`` wants one: ``Authorization: Bearer TOKEN``, or the
cookie that ``/?token=TOKEN`` sets (a browser's way in); else 401.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from detect.watch.ui.view import SiteView

STATIC = Path(__file__).with_name("static")
COOKIE = "detect_ui_token"
KEEPALIVE_S = 15.0  # a comment line on a quiet event stream, so proxies keep it open


class _Token:
    """ASGI middleware: refuses (401) a request without the bearer token, but for the static
    files; ``/?token=TOKEN`` sets it as a cookie and goes on to ``/``."""

    def __init__(self, app: ASGIApp, tokens: list[str]) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]

    def _is(self, given: str) -> bool:
        """Whether ``given`` is one of the tokens (each compared in constant time)."""
        return any([hmac.compare_digest(given.encode(), token) for token in self.tokens])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        offered = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
        answer: Response | None = None
        if offered is not None and self._is(offered):
            # relative, so that a proxy's prefix, host and scheme stay as the browser has them
            query = request.url.remove_query_params("token").query
            where = (request.url.path.rsplit("/", 1)[1] or "./") + (f"?{query}" if query else "")
            answer = RedirectResponse(where, status_code=303)
            answer.set_cookie(COOKIE, offered, httponly=True, samesite="strict")
        elif not (self._is(bearer) or self._is(request.cookies.get(COOKIE, ""))):
            answer = PlainTextResponse(
                "401: this site's page wants its token: open it as /?token=TOKEN, or send "
                "Authorization: Bearer TOKEN",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if answer is not None:
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


def ui_app(view: SiteView, tokens: list[str] | None = None) -> Starlette:
    """The application over ``view`` (its ``media``: the folders of the events' pictures and
    clips by the key their URLs carry); ``tokens``: the bearer tokens it takes, if any."""
    media = view.media

    async def site_page(request: Request) -> Response:
        return FileResponse(STATIC / "site.html")

    async def camera_page(request: Request) -> Response:
        if request.path_params["name"] not in view.cameras:
            return PlainTextResponse("404: no such camera on this site", status_code=404)
        return FileResponse(STATIC / "camera.html")

    async def site(request: Request) -> Response:
        return JSONResponse(view.site())

    async def stream(request: Request) -> Response:
        async def messages() -> AsyncIterator[str]:
            queue = view.subscribe()  # here: a page gone before the first message lets it go
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        kind, data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                    if kind == "end":
                        return
            finally:
                view.unsubscribe(queue)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(messages(), media_type="text/event-stream", headers=headers)

    async def picture(request: Request) -> Response:
        name = request.path_params["name"]
        if not view.want(name):
            return PlainTextResponse("404: no such camera on this site", status_code=404)
        data = await run_in_threadpool(view.picture, name)
        if data is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def media_file(request: Request) -> Response:
        root = media.get(request.path_params["key"])
        if root is None:
            return PlainTextResponse("404: no such file", status_code=404)
        path = (root / request.path_params["path"]).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            return PlainTextResponse("404: no such file", status_code=404)
        return FileResponse(path)

    routes = [
        Route("/", site_page),
        Route("/camera/{name}", camera_page),
        Route("/api/site", site),
        Route("/api/stream", stream),
        Route("/api/cameras/{name}/picture.jpg", picture),
        Route("/media/{key}/{path:path}", media_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(_Token, tokens=tokens)] if tokens else []
    return Starlette(routes=routes, middleware=middleware)

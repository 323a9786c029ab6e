"""The site's web page of `detect watch --ui` (the `ui` extra: Starlette and uvicorn).

`view` (`SiteView`: what the page shows, fed by the watch, never waited on; no web library),
`app` (the Starlette application: pages, JSON, server-sent events, pictures, media files, the
token), `server` (uvicorn on its own thread; `start_ui`), and ``static/`` (the pages' HTML, CSS
and JavaScript: no build step, nothing fetched from the internet).
"""

"""Server-side set-up for ``app.py`` that has nothing to do with pages.

Two things Streamlit's defaults cost this dashboard, each measured here.

1. Nagle's algorithm on every connection (``nodelay_on_listening_sockets``).

Streamlit 1.67's Starlette server binds its listening socket itself, as
``socket.socket(family)``, whose ``proto`` is 0 rather than ``IPPROTO_TCP``.
asyncio sets ``TCP_NODELAY`` on an accepted connection only when ``proto``
says TCP, so every connection to the dashboard keeps Nagle's algorithm on. A
response written in two parts (headers, then body) on a kept-alive connection
then waits for the browser's delayed ACK: measured here with curl, 1 ms for
the first request on a connection and 44 ms for each one after it. A page load
fetches about a hundred static files over six connections.

``nodelay_on_listening_sockets()`` sets ``TCP_NODELAY`` on the process's
listening TCP sockets; on Linux an accepted connection inherits it from its
listening socket. app.py calls it from its lifespan hook, which uvicorn runs
after the socket is bound and before it accepts anything.

2. A full garbage collection after every script run (``freeze_startup_heap``).
Streamlit calls ``gc.collect(2)`` when a script run ends, fragment reruns
included, so each refresh of the Train page's status walked every object
PyTorch, pandas and plotly created at import: 270,000 objects, 100-250 ms each
time; with twenty viewers py-spy found 43% of the server's samples in that one
call. ``gc.freeze()`` after the warm-up moves those objects to a generation the
collector never scans. What the visits make still cost 40-200 ms a run, holding
the GIL while the page's last messages waited to be sent, so the collection
after each run is now off (``runner.postScriptGC`` in .streamlit/config.toml);
Python's own collector still runs, and the freeze keeps the imports out of its
full collections too. The server's memory stays flat under twenty viewers
(tests/test_load.py).

3. Two connection attempts on every page but Home (``PageHtml``).
Opened at a page's own address (``/train``, a shared link, a refresh),
Streamlit's frontend cannot tell whether ``/train`` is the app's base path, so
it asks ``/train/_stcore/health`` first, gets a 404, waits 100 ms and asks
``/_stcore/health`` (streamlit/streamlit#7074, open). ``PageHtml`` answers a
browser asking for a page's address with Streamlit's own index.html plus one
line of host configuration: the base URL is the page's folder
(``window.__streamlit.BACKEND_BASE_URL``, the setting hosts that serve the
frontend elsewhere use), so the first attempt is the right one: 0.05-0.2 s
sooner on Model, Train, Predictions and Runs. Read in the browser from the
page's own address, the base stays right behind a proxy that adds a prefix.

4. A script run for every refresh of a watched run (``LiveApi``).
A Train page watching a run used to rerun two Streamlit fragments, every 2 and
5 s; each rerun costs the browser a React render of the page, and Chromium took
0.13 of a core that the training needed. ``LiveApi`` answers
``<base>/_lab/live/<run>`` with the run's progress as JSON, and its charts when
asked (``lab_ui.live_payload``: the new metric lines only, the figures serialised
once per change for every viewer). The page polls it every second
(lab_charts.py) and updates its progress line and charts in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import socket
import stat
from urllib.parse import parse_qs


def listening_tcp_fds() -> list[int]:
    """File descriptors of this process's listening TCP sockets (Linux; [] elsewhere)."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            with contextlib.suppress(OSError):
                if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    continue
                probe = socket.socket(fileno=os.dup(fd))  # a duplicate: closing it leaves ``fd`` open
                with probe:
                    if (probe.family in (socket.AF_INET, socket.AF_INET6) and probe.type == socket.SOCK_STREAM
                            and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
                        found.append(fd)
    return found


def nodelay_on_listening_sockets() -> int:
    """Set TCP_NODELAY on every listening TCP socket of this process; returns how many."""
    count = 0
    for fd in listening_tcp_fds():
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            count += 1
    return count


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now out of the collector's reach; returns how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


# One path segment, no dot (not a file such as favicon.png), not Streamlit's own.
_PAGE_SEGMENT = re.compile(r"[^/.]+")
# The page's own folder: right behind a proxy that serves the app under a prefix of its own, too.
_HOST_CONFIG = '<script>window.__streamlit = {BACKEND_BASE_URL: new URL(".", window.location.href).href};</script>'


class _UnderBase:
    """What PageHtml and LiveApi share: the part of a GET's path under the app's
    base path, and a whole response in one go."""

    def __init__(self, app, base_path: str | None = None):
        self.app = app
        self._base_path = base_path  # None: read server.baseUrlPath on the first request

    def base_path(self) -> str:
        if self._base_path is None:
            from streamlit import config

            self._base_path = (config.get_option("server.baseUrlPath") or "").strip("/")
        return self._base_path

    def under_base(self, scope) -> str | None:
        """The path of a GET below the base path ("train" for "/lab/train"), else None."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        prefix = "/" + self.base_path() + "/" if self.base_path() else "/"
        path = scope.get("path", "")
        return path[len(prefix) :] if path.startswith(prefix) else None

    @staticmethod
    async def respond(send, status: int, body: bytes, content_type: bytes, cache: bytes) -> None:
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", cache),
            ],
        })
        await send({"type": "http.response.body", "body": body})


class PageHtml(_UnderBase):
    """ASGI middleware: a browser asking for a page's address (``/train``) gets
    Streamlit's index.html with the app's base URL set, so the frontend connects
    at the first attempt (point 3 above). Every other request goes to Streamlit."""

    def __init__(self, app, base_path: str | None = None):
        super().__init__(app, base_path)
        self._html: bytes | None = None

    def html(self) -> bytes:
        if self._html is None:
            from streamlit import file_util

            with open(os.path.join(file_util.get_static_dir(), "index.html"), encoding="utf-8") as f:
                page = f.read()
            head = page.index("<head>") + len("<head>")
            self._html = (page[:head] + "\n    " + _HOST_CONFIG + page[head:]).encode("utf-8")
        return self._html

    def is_page(self, scope) -> bool:
        page = self.under_base(scope)  # "/train/" leaves "train/": Streamlit redirects it
        if page is None or b"text/html" not in dict(scope.get("headers") or ()).get(b"accept", b""):
            return False
        return bool(_PAGE_SEGMENT.fullmatch(page)) and not page.startswith("_stcore")

    async def __call__(self, scope, receive, send):
        if not self.is_page(scope):
            await self.app(scope, receive, send)
            return
        await self.respond(send, 200, self.html(), b"text/html; charset=utf-8", b"no-cache")


LIVE_PATH = "_lab/live/"  # under the base path; lab_charts builds the page's poll address from it
_LIVE = re.compile(re.escape(LIVE_PATH) + r"([^/]+)")
log = logging.getLogger("alexnet_lab")


def _live_payload(run_id: str, viewer: str, since: int | None) -> bytes:
    import lab_ui  # imported by the warm-up long before the first poll
    from alexnet_core import runs

    try:
        return lab_ui.live_payload(run_id, viewer, since)
    except (runs.RunError, FileNotFoundError) as exc:  # an unknown or invalid id, a deleted run
        raise LookupError(str(exc)) from exc


class LiveApi(_UnderBase):
    """ASGI middleware: ``GET <base>/_lab/live/<run>?viewer=..&since=..`` answers a
    watching page's poll with ``provider(run, viewer, since)`` (point 4 above), run
    in a worker thread; 404 where it raises LookupError (no such run). Every other request goes on."""

    def __init__(self, app, base_path: str | None = None, provider=_live_payload):
        super().__init__(app, base_path)
        self.provider = provider

    def run_id(self, scope) -> str | None:
        path = self.under_base(scope)
        found = _LIVE.fullmatch(path) if path is not None else None
        return found.group(1) if found else None

    async def __call__(self, scope, receive, send):
        run_id = self.run_id(scope)
        if run_id is None:
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        viewer = (query.get("viewer") or ["anonymous"])[0][:100]
        try:
            since = int(query["since"][0]) if "since" in query else None
        except ValueError:
            since = None
        status, body = 200, b""
        try:
            body = await asyncio.to_thread(self.provider, run_id, viewer, since)
        except LookupError as exc:
            status, body = 404, _json_error(exc)
        except Exception as exc:  # the page keeps polling; the teacher's terminal says why
            log.exception("AlexNet Lab: the live view of %s failed", run_id)
            status, body = 500, _json_error(exc)
        await self.respond(send, status, body, b"application/json", b"no-store")


def _json_error(exc: BaseException) -> bytes:
    return json.dumps({"error": str(exc) or type(exc).__name__}).encode()

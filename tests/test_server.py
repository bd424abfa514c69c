"""lab_server: TCP_NODELAY on the dashboard's connections, the start-up heap frozen,
a page's address answered with the app's base URL, and a watching page's poll
answered (see lab_server.py for why)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

import lab_server


def bound_like_streamlit() -> socket.socket:
    """A listening socket made as Streamlit 1.67 makes it: ``socket.socket(family)``, proto 0."""
    sock = socket.socket(socket.AF_INET)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def accepted_nodelay(listener: socket.socket) -> int:
    with socket.create_connection(listener.getsockname()):
        conn, _ = listener.accept()
        with conn:
            return conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_streamlits_kind_of_socket_leaves_nagle_on():
    # the premise: asyncio only sets TCP_NODELAY when proto says TCP, and this proto says 0
    with bound_like_streamlit() as listener:
        assert listener.proto == 0
        assert accepted_nodelay(listener) == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds sockets through /proc (Linux)")
def test_nodelay_is_set_on_the_listening_socket_and_inherited_by_connections():
    with bound_like_streamlit() as listener, socket.socket() as idle:
        assert listener.fileno() in lab_server.listening_tcp_fds()
        assert idle.fileno() not in lab_server.listening_tcp_fds()  # not listening: left alone
        assert lab_server.nodelay_on_listening_sockets() >= 1
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert accepted_nodelay(listener) == 1
        assert listener.fileno() in lab_server.listening_tcp_fds()  # the duplicates closed, the socket open


def test_freeze_leaves_only_new_objects_to_the_collector():
    import gc

    try:
        frozen = lab_server.freeze_startup_heap()
        assert frozen > 1000 and gc.get_freeze_count() == frozen
        survivors = len(gc.get_objects())
        assert survivors < frozen  # the collector now tracks only what was made after the freeze
    finally:
        gc.unfreeze()


# ---------------------------------------------------------------- PageHtml


def ask(middleware: lab_server.PageHtml, path: str, accept: bytes = b"text/html,*/*", method: str = "GET"):
    """One request through the middleware; returns (who answered, status, body)."""
    sent, passed = [], []

    async def streamlit(scope, receive, send):
        passed.append(scope["path"])

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"accept", accept)]}
    middleware.app = streamlit
    asyncio.run(middleware(scope, None, send))
    if passed:
        return "streamlit", None, b""
    return "page", sent[0]["status"], sent[1]["body"]


def test_a_page_address_gets_streamlits_html_with_the_base_url():
    page = lab_server.PageHtml(None, base_path="")
    who, status, body = ask(page, "/predictions")
    assert (who, status) == ("page", 200)
    html = body.decode()
    assert 'BACKEND_BASE_URL: new URL(".", window.location.href)' in html  # the page's folder
    assert html.index("window.__streamlit") < html.index('<script type="module"')  # set before the app reads it
    assert "./static/js/index." in html  # Streamlit's own page, untouched otherwise


@pytest.mark.parametrize(
    "path, accept, method",
    [
        ("/", b"text/html", "GET"),  # Home: one candidate already
        ("/favicon.png", b"text/html", "GET"),  # a file
        ("/_stcore/health", b"*/*", "GET"),
        ("/train/_stcore/health", b"*/*", "GET"),
        ("/static/js/index.js", b"*/*", "GET"),
        ("/app/static/plotly-basic-4.1.1.min.js", b"*/*", "GET"),
        ("/train", b"application/json", "GET"),  # not a browser navigation
        ("/train", b"text/html", "HEAD"),
        ("/train/", b"text/html", "GET"),  # Streamlit redirects it to /train
    ],
)
def test_everything_else_goes_to_streamlit(path, accept, method):
    assert ask(lab_server.PageHtml(None, base_path=""), path, accept, method)[0] == "streamlit"


def test_under_a_base_path_only_its_pages_are_answered():
    page = lab_server.PageHtml(None, base_path="lab")
    assert ask(page, "/lab/runs")[0] == "page"
    assert ask(page, "/runs")[0] == "streamlit"
    assert ask(page, "/lab")[0] == "streamlit"  # the base itself is Home


def poll(api: lab_server.LiveApi, path: str, query: bytes = b"", method: str = "GET"):
    """(who answered, status, body, content type) for a request to ``api``."""
    sent, passed = [], []

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        passed.append(scope)

    api.app = app
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}
    asyncio.run(api(scope, None, send))
    if passed:
        return "streamlit", None, b"", None
    return "live", sent[0]["status"], sent[1]["body"], dict(sent[0]["headers"])[b"content-type"]


def test_a_poll_is_answered_by_the_provider_with_its_viewer_and_version():
    asked = []

    def provider(run_id, viewer, since):
        asked.append((run_id, viewer, since))
        return b'{"state": "running"}'

    api = lab_server.LiveApi(None, base_path="", provider=provider)
    assert poll(api, "/_lab/live/run-1", b"viewer=abc&since=7") == ("live", 200, b'{"state": "running"}', b"application/json")
    assert poll(api, "/_lab/live/run-1", b"viewer=abc")[1] == 200
    assert poll(api, "/_lab/live/run-1", b"since=x")[1] == 200  # a bad version: charts not asked for
    assert asked == [("run-1", "abc", 7), ("run-1", "abc", None), ("run-1", "anonymous", None)]


def test_a_poll_for_a_missing_run_is_a_404_and_a_failure_a_500():
    def missing(run_id, viewer, since):
        raise LookupError(f"No run {run_id!r}")

    def broken(run_id, viewer, since):
        raise RuntimeError("disk on fire")

    who, status, body, _ = poll(lab_server.LiveApi(None, base_path="", provider=missing), "/_lab/live/gone")
    assert (who, status) == ("live", 404) and b"No run 'gone'" in body
    assert poll(lab_server.LiveApi(None, base_path="", provider=broken), "/_lab/live/x")[1] == 500


@pytest.mark.parametrize("path, method", [
    ("/_lab/live/run-1", "POST"),
    ("/_lab/live/", "GET"),
    ("/_lab/live/a/b", "GET"),
    ("/train", "GET"),
    ("/lab/_lab/live/run-1", "GET"),  # another base path
])
def test_other_requests_go_to_streamlit(path, method):
    api = lab_server.LiveApi(None, base_path="", provider=lambda *a: b"{}")
    assert poll(api, path, method=method)[0] == "streamlit"


def test_under_a_base_path_the_poll_is_answered_there():
    api = lab_server.LiveApi(None, base_path="lab", provider=lambda *a: b"{}")
    assert poll(api, "/lab/_lab/live/run-1")[0] == "live"
    assert poll(api, "/_lab/live/run-1")[0] == "streamlit"


def test_the_real_provider_says_404_for_an_unknown_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_RUNS", str(tmp_path))
    api = lab_server.LiveApi(None, base_path="")
    assert poll(api, "/_lab/live/no-such-run")[1] == 404
    assert poll(api, "/_lab/live/..")[1] == 404  # an id that is not a run's

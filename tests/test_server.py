"""lab_server: the dashboard's connections get TCP_NODELAY (see lab_server.py for why)."""

from __future__ import annotations

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

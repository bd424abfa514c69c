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
Streamlit calls ``gc.collect(2)`` when a script run ends
(``runner.postScriptGC``), fragment reruns included, so each refresh of the
Train page's status walks every object PyTorch, pandas and plotly created at
import: 270,000 objects, 100-250 ms each time. With twenty viewers py-spy
found 43% of the server's samples in that one call. ``gc.freeze()`` after the
warm-up moves those objects to a generation the collector never scans; the
collection after a script run then walks only what the runs made (measured
under 1 ms). Memory is still collected: the frozen objects are the modules
and their constants, which live as long as the server.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import stat


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

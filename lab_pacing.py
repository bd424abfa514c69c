"""How often a page watching a run refreshes: a budget per run, shared by its audience.

Every refresh of a watching Train page costs CPU that the training needs. A
page has three clocks:

- the progress line polls the server every ``POLL_EVERY_S`` (lab_charts: a small
  JSON request answered from the run's status and its new metric lines; no
  script run, no React render of the page);
- the two charts redraw from that poll at most every ``CHARTS_EVERY_S`` (plotly.js
  redraws a whole chart for one new point: about 40 ms each);
- the Streamlit fragment around them reruns every ``RERUN_EVERY_S``: the poll
  already reruns it when the run's state changes, so this is only a safety net
  (each rerun is a React render of the page: 0.3-0.5 s of the renderer's CPU
  on the 2-core machine, bench/README.md "Session 8"). Where the poll cannot
  reach the server (a proxy that does not forward ``_lab/``), the page says so
  and the fragments take over the refreshing, every ``UNREACHABLE_RERUN_EVERY_S``
  for the status and every ``CHARTS_EVERY_S`` for the charts, until the poll
  answers again (it keeps asking, ten times less often).

Measured on the 2-core machine over 20 s of a watched run training
(bench/README.md, "Session 7"), alternated: Chromium used 0.10 of a core when
two fragments did the work (the status every 2 s, the charts every 5 s; each
rerun a React render of the page, 70-130 ms), 0.05 with the poll; the server
0.026 and 0.020.

The poll's and the charts' intervals grow with the audience, and so do the
fragments' where they stand in for the poll; the safety net's does not (a rerun
costs the server about 25 ms: every 60 s, twenty viewers' take 0.01 of a core). Up to ``FREE_VIEWERS`` sessions refresh at the base rate;
beyond that every session slows by the power of two that keeps the total near
``FREE_VIEWERS`` sessions' worth (twenty viewers: 8x). Powers of two, so that an audience growing one by one changes the pace of a page only a
few times (each change is a full rerun of that page).

A session counts as watching a run while it has refreshed in the last
``SEEN_FOR_S`` seconds, longer than the slowest refresh, so an audience at the
slowest pace still counts itself. Streamlit-free, so it is unit-tested alone.
"""

from __future__ import annotations

import threading
import time

# The base rate, for one viewer.
POLL_EVERY_S = 1
CHARTS_EVERY_S = 5
RERUN_EVERY_S = 60
UNREACHABLE_RERUN_EVERY_S = 2

FREE_VIEWERS = 3
MAX_SCALE = 16
SEEN_FOR_S = 90.0


def refresh_scale(viewers: int) -> int:
    """How many times slower than the base rate each of ``viewers`` sessions refreshes."""
    scale = 1
    while scale * FREE_VIEWERS < viewers and scale < MAX_SCALE:
        scale *= 2
    return scale


class Audience:
    """The sessions watching one run, each with the time it last refreshed. Thread-safe:
    Streamlit runs every session's script in a thread of its own."""

    def __init__(self, seen_for_s: float = SEEN_FOR_S, clock=time.monotonic):
        self.seen_for_s = seen_for_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def seen(self, session: str) -> int:
        """Record that ``session`` refreshed now; return how many sessions are watching."""
        with self._lock:
            now = self._clock()
            self._last[session] = now
            return self._count(now)

    def count(self) -> int:
        with self._lock:
            return self._count(self._clock())

    def _count(self, now: float) -> int:
        for session, when in list(self._last.items()):
            if now - when > self.seen_for_s:
                del self._last[session]
        return len(self._last)

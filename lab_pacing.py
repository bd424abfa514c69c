"""How often a page watching a run refreshes: a budget per run, shared by its audience.

Every refresh of a watching Train page costs CPU that the training needs.
Measured on the 2-core machine with a run training (bench/README.md, "Busy
runs"): one watching page costs the server about 0.025 of a core and its
browser 0.14 (the status line every 2 s about 0.05, the two charts every 5 s
about 0.07). A classroom of twenty at that rate would take half a core from a
training run on the server alone.

So the refresh intervals grow with the audience. Up to ``FREE_VIEWERS``
sessions refresh at the base rate; beyond that every session slows by the
power of two that keeps the total near ``FREE_VIEWERS`` sessions' worth
(twenty viewers: 8x, the status line every 16 s). Powers of two, so that an
audience growing one by one changes the pace of a page only a few times (each
change is a full rerun of that page).

A session counts as watching a run while it has refreshed in the last
``SEEN_FOR_S`` seconds, longer than the slowest refresh, so an audience at the
slowest pace still counts itself. Streamlit-free, so it is unit-tested alone.
"""

from __future__ import annotations

import threading
import time

# The base rate, for one viewer. Measured with bench/bench.py --only ui (12-epoch
# quick runs, the Train page open vs not): the status every 1 s and the charts
# every 5 s left training at 0.75x; the status every 2 s at 0.98x.
STATUS_EVERY_S = 2
CHARTS_EVERY_S = 5

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

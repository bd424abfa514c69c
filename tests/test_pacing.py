"""The refresh budget of a watched run (ui.live)."""

from __future__ import annotations

import threading

import pytest

from ui import live
from ui.live import Audience, refresh_scale


@pytest.mark.parametrize(
    "viewers, scale",
    [(0, 1), (1, 1), (3, 1), (4, 2), (6, 2), (7, 4), (12, 4), (13, 8), (20, 8), (24, 8), (25, 16), (30, 16), (500, 16)],
)
def test_scale_keeps_the_total_near_the_free_viewers(viewers, scale):
    assert refresh_scale(viewers) == scale


def test_total_refresh_rate_stays_within_the_budget_up_to_the_cap():
    for viewers in range(1, live.FREE_VIEWERS * live.MAX_SCALE + 1):
        assert viewers / refresh_scale(viewers) <= live.FREE_VIEWERS


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_audience_counts_sessions_once_and_forgets_the_gone():
    clock = Clock()
    audience = Audience(seen_for_s=90, clock=clock)
    assert audience.seen("a") == 1
    assert audience.seen("a") == 1  # a session refreshing again is still one viewer
    assert audience.seen("b") == 2
    clock.now += 60
    assert audience.seen("b") == 2  # a is 60 s old: still watching at a slow pace
    clock.now += 31
    assert audience.count() == 1  # a last refreshed 91 s ago: its tab is closed
    clock.now += 100
    assert audience.count() == 0


def test_a_viewer_at_the_slowest_pace_still_counts():
    # both fragments slow down with the audience
    slowest = max(live.STATUS_EVERY_S, live.CHARTS_EVERY_S) * live.MAX_SCALE
    assert live.SEEN_FOR_S > slowest
    clock = Clock()
    audience = Audience(clock=clock)
    for session in "abc":
        audience.seen(session)
    clock.now += slowest
    assert audience.seen("a") == 3


def test_audience_is_safe_across_session_threads():
    audience = Audience()
    threads = [threading.Thread(target=lambda i=i: [audience.seen(f"s{i}") for _ in range(200)]) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert audience.count() == 20

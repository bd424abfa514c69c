"""How long training will take, as the pages say it (issue 17, item 1).

A figure measured on a quiet machine is a promise a busy laptop breaks: Home
promised "about 10 s on a 2-core CPU" for a run that took minutes, and Train
kept showing a timing taken once at its first visit. So Home names no time,
Train's estimate is timed now and says so, and a running run's time left comes
from its own steps.
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core import training
from alexnet_core.recipes import get_recipe
from tests.fixtures import tiny_config
from ui import cached, choice
from ui.formatting import format_duration
from ui.live import progress_text

APP = str(Path(__file__).resolve().parent.parent / "ui" / "frame.py")
TIMEOUT = 60
# "10 s", "2 min", "about 35 seconds", "on a 2-core CPU": a time or a machine promised in words.
PROMISE = re.compile(r"\b\d+(\.\d+)?\s?(s|sec|seconds?|min|minutes?)\b|\d-core|\bCPU\b")


def open_page(page) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page is not choice.HOME:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def words(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


def test_home_promises_no_time(ui_lab):
    at = open_page(choice.HOME)
    promised = [text for text in words(at) if PROMISE.search(text)]
    assert not promised, promised
    assert any("counts the time left from the run's own speed" in text for text in words(at))


def test_the_quick_recipe_promises_no_time():
    quick = get_recipe("quick")
    assert not PROMISE.search(quick.title + " " + quick.description), quick.description


def test_train_says_its_estimate_was_timed_just_now(ui_lab):
    cached._estimates.clear()
    at = open_page(choice.TRAIN)
    at.run()  # in a browser, the estimate fragment's first timer tick
    assert not at.exception, [e.message for e in at.exception]
    estimate = [m.value for m in at.markdown if "per epoch**" in m.value]
    assert len(estimate) == 1, words(at)
    assert "timed just now on this computer" in estimate[0] and "from its own steps" in estimate[0], estimate


@pytest.fixture
def clock(monkeypatch):
    """ui.cached's clock, moved by hand; the training steps it would time, replaced by a
    list of figures (the machine's speed as it changes)."""
    now = [1000.0]
    monkeypatch.setattr(cached, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(cached, "load_dataset", lambda *args, **kwargs: None)
    cached._estimates.clear()
    yield now
    cached._estimates.clear()


def test_a_timing_a_minute_old_is_taken_again(clock, monkeypatch):
    """Timed on a quiet machine (1 s an epoch), then the laptop got busy (50 s an epoch)."""
    speeds = iter([1.0, 50.0])
    monkeypatch.setattr(training, "estimate_epoch_seconds", lambda config, dataset=None: next(speeds))
    config = get_recipe("quick").make_config()
    key = cached.estimate_key(config)
    assert cached.known_estimate(key) is None
    assert cached.estimate(config) == 1.0
    clock[0] += cached.ESTIMATE_FRESH_S / 2
    assert cached.known_estimate(key) == 1.0 and cached.estimate(config) == 1.0  # another session, just after
    clock[0] += cached.ESTIMATE_FRESH_S
    assert cached.known_estimate(key) is None  # the page times it again rather than show the old figure
    assert cached.estimate(config) == 50.0
    assert cached.known_estimate(key) == 50.0


def test_the_time_left_comes_from_the_runs_own_steps(tmp_path):
    """The live view's "about N left" is the run's own: what its measured images/s and its
    measured evaluation time leave, never the estimate made before the launch."""
    config = tiny_config(epochs=3)
    before = progress_text({"state": "running", "epochs": 3, "steps_per_epoch": 20, "eta_seconds": None})[1]
    assert before.endswith("estimating time left…"), before  # no figure before the run's first steps

    read = []

    def progress(event):
        # The first step event of epoch 2: status.json holds what the end of epoch 1 wrote.
        if event["type"] == "step" and event["epoch"] == 2 and not read:
            read.append(json.loads((tmp_path / "status.json").read_text()))

    result = training.train(config, tmp_path, progress=progress)
    assert result["state"] == "finished", result["error"]
    status = read[0]
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    eval_s = next(e["eval_time"] for e in events if e["type"] == "epoch" and e["epoch"] == 1)
    left_steps = config.epochs * status["steps_per_epoch"] - status["step"]
    own = left_steps * config.batch_size / status["images_per_s"] + (config.epochs - status["epoch"]) * eval_s
    assert status["eta_seconds"] == pytest.approx(own, rel=1e-6)
    _, text = progress_text(dict(status, state="running"))
    assert f"about {format_duration(status['eta_seconds'])} left" in text, text


def test_a_run_on_a_gpu_says_which():
    """The Train page's live view names the GPU a run uses (the queue may have put it on any)."""
    status = {"state": "running", "epochs": 3, "steps_per_epoch": 20, "step": 5, "images_per_s": 900.0,
              "eta_seconds": 30.0}
    assert "on cuda:1" in progress_text(dict(status, device="cuda:1"))[1]
    assert " on " not in progress_text(dict(status, device="cpu"))[1]

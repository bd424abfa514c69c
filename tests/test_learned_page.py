"""The "What it learned" page under AppTest, on a real two-epoch run of the mnist net on
digits; an old run (no filters kept per epoch); and one browser visit from a link."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core import runs
from tests.fixtures import tiny_config
from ui import choice

APP = str(Path(__file__).resolve().parent.parent / "ui" / "frame.py")
TIMEOUT = 60
WAIT = 120  # the first computation of the features, under load


@pytest.fixture(scope="module")
def two_epochs(ui_lab):
    """A finished two-epoch run: filters kept at epochs 0, 1 and 2."""
    run_id = runs.launch(tiny_config(epochs=2))
    state = runs.wait(run_id, timeout=240)
    assert state["state"] == "finished", state
    return run_id


def open_learned(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(choice.LEARNED).run()
    return at


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def text(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def image_captions(at: AppTest) -> list[str]:
    return [img.caption for image in at.get("image") for img in image.proto.imgs]


def rerun_until(at: AppTest, words: str, timeout: float = WAIT) -> AppTest:
    """Run the page again until it shows ``words`` (the features are made in the background;
    AppTest never fires the progress fragment's timer)."""
    deadline = time.monotonic() + timeout
    while words not in text(at):
        assert time.monotonic() < deadline, f"{words!r} never appeared; the page shows:\n{text(at)}"
        no_errors(at)
        at.run()
    return at


def choose_tab(at: AppTest, tab: str) -> AppTest:
    at.session_state["learned_view"] = tab
    return at.run()


def test_filters_for_the_start_and_every_epoch(two_epochs):
    at = open_learned(run=two_epochs)
    no_errors(at)
    assert at.title[0].value == "What it learned"
    slider = at.select_slider(key=f"learned_filters:{two_epochs}")
    assert list(slider.options) == ["0", "1", "2"] and slider.value == 2
    assert "conv1 after epoch 2" in image_captions(at)
    slider.set_value(0).run()
    no_errors(at)
    assert "conv1 at the start (random weights)" in image_captions(at)


def test_a_link_opens_the_closest_training_images_of_a_test_image(two_epochs):
    at = open_learned(run=two_epochs, image="5")
    no_errors(at)
    assert at.number_input(key="learned_image").value == 5
    at = rerun_until(at, "closest training images in the last hidden layer")
    no_errors(at)
    assert "Test image **#5**" in text(at)
    assert "computed once in" in text(at) and "kept in the run folder" in text(at)
    assert (runs.run_path(two_epochs) / "features-best.npz").is_file()
    # the next misclassified one is a click away, and instant now
    at.button(key=[b.key for b in at.button if b.label == "Next misclassified"][0]).click().run()
    no_errors(at)
    assert at.number_input(key="learned_image").value > 5
    assert "closest training images in the last hidden layer" in text(at)


def test_a_link_to_an_image_the_run_does_not_have_says_so(two_epochs):
    at = open_learned(run=two_epochs, image="99999")
    assert not at.exception
    assert any("does not have" in w.value for w in at.warning)


def test_where_it_looked_draws_a_page_of_heatmaps_and_opens_a_tile(two_epochs):
    at = open_learned(run=two_epochs)
    at = choose_tab(at, "Where it looked")
    no_errors(at)
    assert at.toggle(key="learned_cam").value is True
    buttons = [b for b in at.button if b.label == "Closest"]
    assert 1 <= len(buttons) <= 24
    at.radio(key="learned_target").set_value("the true class").run()
    no_errors(at)
    at.toggle(key="learned_cam").set_value(False).run()
    no_errors(at)
    buttons = [b for b in at.button if b.label == "Closest"]
    index = int(buttons[0].key.rsplit(":", 1)[1])
    buttons[0].click().run()
    assert at.session_state["learned_view"] == "Closest training images"
    assert at.number_input(key="learned_image").value == index


def test_the_map_of_the_test_set(two_epochs):
    at = open_learned(run=two_epochs)
    at = choose_tab(at, "Map of the test set")
    at = rerun_until(at, "Each point is a test image")
    no_errors(at)
    (figure,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = [trace["name"] for trace in figure["data"]]
    assert names[-1] == "misclassified" and set(names[:-1]) <= {str(i) for i in range(10)}
    assert sum(len(t["text"]) for t in figure["data"][:-1]) == 360  # every test image once
    at.radio(key="learned_projection").set_value("t-SNE").run()
    at = rerun_until(at, "Each point is a test image")
    no_errors(at)
    assert (runs.run_path(two_epochs) / "map-tsne-best.npz").is_file()


def test_what_flipped_between_two_epochs(two_epochs):
    at = open_learned(run=two_epochs)
    at = choose_tab(at, "What flipped")
    no_errors(at)
    metrics = {m.label: m.value for m in at.metric}
    worse, better = int(metrics["Right → wrong"].replace(",", "")), int(metrics["Wrong → right"].replace(",", ""))
    first = runs.read_predictions(two_epochs, 1)
    second = runs.read_predictions(two_epochs, 2)
    right = lambda p: int((p["label"] == p["pred"]).sum())  # noqa: E731
    assert better - worse == right(second) - right(first)
    assert metrics["Net change"] == f"{better - worse:+,}"


def test_an_old_run_shows_its_start_and_last_filters_in_a_sentence(two_epochs, ui_lab):
    old = f"{two_epochs}-old"
    shutil.copytree(runs.run_path(two_epochs), runs.run_path(two_epochs).parent / old)
    for path in (runs.run_path(old) / "predictions").glob("conv1-*.npz"):
        path.unlink()
    at = open_learned(run=old)
    no_errors(at)
    assert "trained before the lab kept the first layer's filters" in text(at)
    assert image_captions(at)[:2] == ["at the start (rebuilt from its seed)", "its last weights (last.pt)"]


def test_a_three_channel_net_on_grey_digits_after_one_epoch(ui_lab):
    """The cifar net (3 channels, 3x3 filters) on 1-channel digits: grey filters, every tab
    draws, and what flipped says it needs a second epoch."""
    run_id = runs.launch(tiny_config(variant="cifar", input_size=16, batch_size=128))
    assert runs.wait(run_id, timeout=240)["state"] == "finished"
    at = open_learned(run=run_id)
    no_errors(at)
    assert "grey" in text(at) and "conv1 after epoch 1" in image_captions(at)
    at = rerun_until(choose_tab(at, "Closest training images"), "closest training images in the last hidden layer")
    assert "4,096 values each" in text(at)
    at = choose_tab(at, "Where it looked")
    no_errors(at)
    at = choose_tab(at, "What flipped")
    no_errors(at)
    assert "what flipped needs two" in text(at)


def test_no_runs_says_where_to_start(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_RUNS", str(tmp_path / "runs"))
    at = open_learned()
    no_errors(at)
    assert "No run has finished an epoch yet" in text(at)


def test_in_a_browser_a_tile_link_opens_the_closest_images_and_every_tab_draws(two_epochs, ui_lab):
    """The link Predictions' tiles give (``/learned?run=...&image=N``) in real Chromium at 1280x800,
    a screenshot of each tab in artifacts/."""
    from tests.browser import (CHROMIUM, DRAWN_CHART, Server, error_texts, lab_env, launch_chromium, projector_page,
                               settle, shot)

    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    with Server(lab_env(ui_lab), ui_lab / "server.log") as server, sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            with projector_page(browser) as pg:
                pg.goto(f"{server.url}/learned?run={two_epochs}&image=3")
                pg.get_by_text("closest training images in the last hidden layer").wait_for()
                settle(pg)
                assert pg.get_by_text("Test image #3").count() == 1 and not error_texts(pg)
                shot(pg, "learned-closest")
                for tab, ready in (("Filters", "[data-testid=stImage]"), ("Where it looked", "[data-testid=stImage]"),
                                   ("Map of the test set", DRAWN_CHART), ("What flipped", "[data-testid=stMetric]")):
                    pg.get_by_role("tab", name=tab).click()
                    pg.locator(ready).first.wait_for()
                    settle(pg)
                    assert not error_texts(pg), tab
                    shot(pg, "learned-" + tab.lower().replace(" ", "-"))
        finally:
            browser.close()

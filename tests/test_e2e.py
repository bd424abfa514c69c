"""One journey through the dashboard in a real headless Chromium.

`streamlit run app.py` on a free loopback port with the run store in a
temporary folder; Playwright drives Debian's chromium. Every wait is on
visible text or an element, never on a sleep. A screenshot of every page is
saved in artifacts/ (gitignored).
"""

from __future__ import annotations

import re

import pytest

from tests.browser import CHROMIUM, DRAWN_CHART, QUICK_SIZE, VIEWPORT, Server, lab_env, launch_chromium, nav, no_exception, settle, shot

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    lab = tmp_path_factory.mktemp("e2e")
    with Server(lab_env(lab), lab / "server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def server(running):
    return running.url


def test_server_start_up_tuning_took_effect(running):
    # lab_server.py: without TCP_NODELAY every kept-alive response waited ~40 ms
    log = running.log_path.read_text()
    assert "TCP_NODELAY on 1 listening socket" in log
    # and the post-script-run collection skips the imports (lab_server.freeze_startup_heap)
    assert re.search(r"AlexNet Lab: \d{5,} objects of the warm-up frozen", log), log


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            pg = browser.new_page(viewport=VIEWPORT)
            pg.set_default_timeout(60_000)
            yield pg
        finally:
            browser.close()


def digit_png() -> bytes:
    """A black 7 drawn on white paper, as a student would photograph it."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).line([(25, 20), (95, 20), (50, 105)], fill=0, width=14)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_journey_home_model_train_predictions_runs(server, page):
    expect = playwright_api.expect
    expect.set_options(timeout=60_000)
    pg = page

    pg.goto(server)
    settle(pg)
    expect(pg.get_by_role("heading", name="AlexNet Lab")).to_be_visible()
    expect(pg.get_by_text("Start the quick demo")).to_be_visible()
    no_exception(pg)
    shot(pg, "01-home")

    nav(pg, "Model")
    expect(pg.get_by_role("heading", name="AlexNet for 28x28 (MNIST)")).to_be_visible()
    expect(pg.get_by_text("Mult-adds per image")).to_be_visible()
    expect(pg).to_have_url(f"{server}/model")
    settle(pg)
    no_exception(pg)
    shot(pg, "02-model")

    nav(pg, "Train")
    expect(pg.get_by_role("heading", name="Train", exact=True)).to_be_visible()
    pg.get_by_role("button", name="Use the recipe's").click()  # the quick demo: digits, small
    expect(pg.get_by_text(f"at {QUICK_SIZE}x{QUICK_SIZE}")).to_be_visible()
    epochs = pg.get_by_label("Epochs", exact=True)
    epochs.fill("1")
    epochs.press("Enter")
    launch = pg.get_by_role("button", name="Launch training")
    expect(launch).to_be_enabled()
    launch.click()
    expect(pg.get_by_text("is finished")).to_be_visible(timeout=240_000)
    settle(pg)  # the full rerun that stops the polling
    expect(pg.get_by_text("epoch 1 of 1")).to_be_visible()  # the epochs typed just before the click
    # One chart of each, once the rerun that stops the polling has replaced the
    # stale ones: while it runs the old charts are still in the page, so a strict
    # match can see two for a moment (it did on CI); to_have_count waits it out.
    expect(pg.get_by_text("Accuracy per epoch")).to_have_count(1)
    expect(pg.get_by_text("Loss", exact=True)).to_have_count(1)
    expect(pg.locator(DRAWN_CHART).first).to_be_visible()
    # the log is drawn when opened (lazy expander): its epoch line, then the code block
    expect(pg.locator("[data-testid=stCode]")).to_have_count(0)
    pg.get_by_text("Log (last 40 lines)").click()
    expect(pg.locator("[data-testid=stCode]").get_by_text(re.compile(r"epoch 1/1 .*train loss"))).to_be_visible()
    no_exception(pg)
    shot(pg, "03-train")

    pg.get_by_role("link", name="See its predictions").click()
    expect(pg.get_by_role("heading", name="Predictions")).to_be_visible()
    expect(pg.get_by_text("Misclassified only")).to_be_visible()
    tile = pg.locator("[data-testid=stMarkdownContainer]", has_text="✗ predicted").first
    expect(tile).to_be_visible()
    expect(pg.locator("[data-testid=stImage]").first).to_be_visible()
    no_exception(pg)
    shot(pg, "04-predictions")

    pg.get_by_role("tab", name="Your own image").click()
    upload = pg.locator("[data-testid=stFileUploaderDropzoneInput]")
    upload.set_input_files(files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"not a png"}])
    expect(pg.get_by_text("not an image that can be read")).to_be_visible()
    upload.set_input_files(files=[{"name": "seven.png", "mimeType": "image/png", "buffer": digit_png()}])
    expect(pg.get_by_text("as the network sees it")).to_be_visible()
    expect(pg.get_by_text("Best guess")).to_be_visible()
    no_exception(pg)
    shot(pg, "05-upload")

    nav(pg, "Runs")
    expect(pg.get_by_role("heading", name="Compare curves")).to_be_visible()
    curves = pg.locator("svg.lab-lines")  # lab_charts.lines: plain SVG, no plotly.js on this page
    expect(curves).to_be_visible()
    expect(curves.locator("polyline.lab-line")).not_to_have_count(0)
    frame = curves.bounding_box()
    curves.hover(position={"x": frame["width"] * 0.9, "y": frame["height"] / 2})
    expect(pg.locator(".lab-lines-tip")).to_contain_text(re.compile(r"epoch \d+.*: \d+(\.\d+)?%", re.S))
    pg.get_by_text("Download or delete a run").click()  # drawn when opened
    expect(pg.get_by_role("button", name="best.pt")).to_be_visible()
    # a download's file is made when its button is clicked
    with pg.expect_download() as download:
        pg.get_by_role("button", name="epochs.csv").click()
    epochs_csv = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert epochs_csv[0].split(",")[0] == "epoch" and len(epochs_csv) == 2, epochs_csv  # a header, one epoch
    no_exception(pg)
    shot(pg, "06-runs")


def test_charts_below_the_first_screen_draw_when_seen(server, page):
    """A new visitor's Train page on a projector (1280x800): the form fills the
    first screen and the last run's charts sit below it. lab_charts draws those
    when they scroll into view, or once the page has been idle, never not at all.
    (Runs after the journey, which left a finished run.)"""
    expect = playwright_api.expect
    charts = '.stElementContainer[class*="st-key-chart-"]'  # lab_charts.KEY_PREFIX: the charts, not the progress line
    for scroll in (True, False):
        context = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            pg = context.new_page()
            pg.goto(f"{server}/train")
            settle(pg)
            expect(pg.locator(charts)).to_have_count(2)
            if scroll:
                pg.locator(charts).first.scroll_into_view_if_needed()
            expect(pg.locator(DRAWN_CHART)).to_have_count(2, timeout=30_000)
            expect(pg.locator(".lab-chart-wait")).to_have_count(0)
            if scroll:  # folding the sidebar widens the column: the chart follows it
                svg = pg.locator(".lab-chart .main-svg").first
                narrow = svg.bounding_box()["width"]
                pg.locator("[data-testid=stSidebar]").hover()  # the fold button shows on hover
                pg.get_by_role("button", name="Collapse sidebar").click()
                pg.wait_for_function(
                    "w => document.querySelector('.lab-chart .main-svg').getBoundingClientRect().width > w + 100",
                    arg=narrow,
                )
            no_exception(pg)
        finally:
            context.close()


def test_a_page_opened_at_its_own_address_connects_at_the_first_attempt(server, page):
    """A shared link or a refresh opens /model itself. Streamlit's frontend would first
    try /model/_stcore/health, get a 404 and wait 100 ms (lab_server.PageHtml)."""
    expect = playwright_api.expect
    context = page.context.browser.new_context(viewport=VIEWPORT)
    try:
        pg = context.new_page()
        asked = []
        pg.on("request", lambda request: asked.append(request.url))
        pg.goto(f"{server}/model?variant=cifar")
        settle(pg)
        expect(pg.get_by_role("heading", name="AlexNet for 32x32 (CIFAR)")).to_be_visible()
        probes = [url for url in asked if "/_stcore/" in url and "/stream" not in url]
        assert probes and all(url.startswith(f"{server}/_stcore/") for url in probes), probes
        no_exception(pg)
    finally:
        context.close()


# Counts Plotly.react calls per chart title from now on.
COUNT_REDRAWS = """() => {
    window.__labRedraws = {};
    const plotly = window.Plotly, react = plotly.react;
    plotly.react = function (gd, data, layout, ...rest) {
        const title = layout?.title?.text ?? "";
        window.__labRedraws[title] = (window.__labRedraws[title] || 0) + 1;
        return react.call(plotly, gd, data, layout, ...rest);
    };
}"""


def test_a_watched_run_redraws_its_accuracy_chart_only_when_an_epoch_ends(running, page):
    """The poll brings both charts every few seconds; the accuracy chart changes
    only at an epoch's end, and redrawing the same picture cost the browser
    40-60 ms of plotly.js each time. (Last in this file: it leaves a stopped run.)"""
    from pathlib import Path

    from alexnet_core import runs
    from alexnet_core.training import TrainConfig

    expect = playwright_api.expect
    runs_dir = Path(running.env["ALEXNET_LAB_RUNS"])
    # 96-pixel digits: an epoch takes far longer than the few seconds between chart polls
    run_id = runs.launch(TrainConfig(variant="mnist", dataset="digits", input_size=96, epochs=3, batch_size=32), runs_dir)
    try:
        page.goto(f"{running.url}/train?run={run_id}")
        expect(page.get_by_text(f"{run_id} is running")).to_be_visible()
        expect(page.locator(DRAWN_CHART)).to_have_count(2)
        epoch_before = runs.status(run_id, runs_dir)["epoch"]
        page.evaluate(COUNT_REDRAWS)
        page.wait_for_function("() => (window.__labRedraws['Loss'] || 0) >= 3", timeout=90_000)
        redraws = page.evaluate("window.__labRedraws")
        ended = runs.status(run_id, runs_dir)["epoch"] - epoch_before
        # at most one redraw per epoch that ended meanwhile (and one for an end just before the count began)
        assert redraws.get("Accuracy per epoch", 0) <= ended + 1 < redraws["Loss"], (redraws, ended)
        no_exception(page)
    finally:
        runs.stop(run_id, runs_dir)

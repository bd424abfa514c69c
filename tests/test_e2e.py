"""One journey through the dashboard in a real headless Chromium.

`streamlit run app.py` on a free loopback port with the run store in a
temporary folder; Playwright drives Debian's chromium. Every wait is on
visible text or an element, never on a sleep. A screenshot of every page is
saved in artifacts/ (gitignored).
"""

from __future__ import annotations

import re

import pytest

from tests.browser import (
    CHROMIUM, DRAWN_CHART, PROGRESS, QUICK_SIZE, VIEWPORT, Server, chart_xs, lab_env, launch_chromium, nav, no_exception,
    projector_page, settle, shot, shown_as, wait_for_chart,
)

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


def test_server_start_up_warmed_and_froze_the_imports(running):
    # app.py's lifespan: the imports and caches are warm before the first visitor,
    # and frozen out of the garbage collector's way
    log = running.log_path.read_text()
    assert "AlexNet Lab: PyTorch and the lab imported and warmed" in log, log
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


def only_run(running) -> str:
    from alexnet_core import runs

    (run_id,) = runs.list_runs(running.env["ALEXNET_LAB_RUNS"])["id"]
    return run_id


def test_journey_home_model_train_predictions_runs(running, server, page):
    expect = playwright_api.expect
    expect.set_options(timeout=60_000)
    pg = page
    # Offline means offline: a classroom may have no internet, so no request leaves the server.
    elsewhere = []
    pg.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else elsewhere.append(r.url))

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
    expect(pg.get_by_text(f"Trains mnist on digits at {QUICK_SIZE}x{QUICK_SIZE}.")).to_be_visible()  # the recipe's own
    epochs = pg.get_by_label("Epochs", exact=True)
    epochs.fill("1")
    epochs.press("Enter")
    launch = pg.get_by_role("button", name="Launch training")
    expect(launch).to_be_enabled()
    launch.click()
    expect(pg.get_by_text("is finished")).to_be_visible(timeout=240_000)
    run_id = only_run(running)
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

    def choose(name, mime, data):
        # Wait until the uploader holds this file and the rerun it started has ended:
        # a file chosen while the previous one's rerun ran was dropped once on CI.
        settle(pg)
        upload.set_input_files(files=[{"name": name, "mimeType": mime, "buffer": data}])
        expect(pg.get_by_role("button", name=f"Remove {name}")).to_be_visible()
        settle(pg)

    choose("broken.png", "image/png", b"not a png")
    expect(pg.get_by_text("not an image that can be read")).to_be_visible()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>'
    choose("drawing.svg", "image/svg+xml", svg)
    expect(pg.get_by_text("not an image that can be read")).to_be_visible()  # a sentence, not only a red mark
    choose("seven.png", "image/png", digit_png())
    expect(pg.get_by_text("as the network sees it")).to_be_visible()
    expect(pg.get_by_text("Best guess")).to_be_visible()
    expect(pg.get_by_text("conv1 after its ReLU (features.1): 32 channels")).to_be_visible()  # a student's names
    pg.get_by_text("Where it looked").click()
    expect(pg.get_by_text(re.compile(r"^where it looked for "))).to_be_visible()
    no_exception(pg)
    shot(pg, "05-upload")

    nav(pg, "Runs")
    expect(pg.get_by_role("heading", name="Compare curves")).to_be_visible()
    expect(pg.locator(DRAWN_CHART)).to_have_count(1)
    wait_for_chart(pg, "validation accuracy (%) by epoch", shown_as(run_id, running.env["ALEXNET_LAB_RUNS"]),
                   "x.length === 1 && x[0] === 1")  # the legend names the run as the pages do
    point = pg.locator(f"{DRAWN_CHART} .scatterlayer .point").first
    box = point.bounding_box()  # plotly's drag layer lies over the points: move the pointer there
    pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(pg.locator(".hoverlayer")).to_contain_text(re.compile(r"epoch 1: \d+(\.\d+)?%"))
    pg.get_by_text("Download or delete a run").click()  # drawn when opened
    expect(pg.get_by_role("button", name="best.pt")).to_be_visible()
    settle(pg)  # the rerun that opened the panel has ended: a click now is not lost to its redraw
    # a download's file is made when its button is clicked
    with pg.expect_download() as download:
        pg.get_by_role("button", name="epochs.csv").click()
    epochs_csv = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert epochs_csv[0].split(",")[0] == "epoch" and len(epochs_csv) == 2, epochs_csv  # a header, one epoch
    no_exception(pg)
    shot(pg, "06-runs")
    assert elsewhere == [], elsewhere


def test_markdown_in_a_link_shows_as_typed_never_as_a_link_or_an_image(server, page):
    """A link's values are shown as plain text: a crafted one cannot put a clickable
    external link or a remote image inside the app's own warning."""
    from urllib.parse import quote

    expect = playwright_api.expect
    phishing = "[Your session expired - click here](https://evil.example/login)"
    pixel = "![](https://evil.example/pixel.png) www.evil.example"
    with projector_page(page.context.browser) as pg:
        pg.goto(f"{server}/model?dataset={quote(phishing)}&variant={quote(pixel)}")
        settle(pg)
        expect(pg.locator("[data-testid=stAlert]").filter(has_text="Your session expired")).to_have_count(1)
        # the text as typed (a word joiner, invisible, keeps a bare address from becoming a link)
        shown = " ".join(pg.locator("[data-testid=stAlert]").all_inner_texts()).replace("\u2060", "")
        assert phishing in shown and "![](https://evil.example/pixel.png) www.evil.example" in shown, shown
        assert pg.locator("a[href*='evil.example']").count() == 0
        assert pg.locator("img[src*='evil.example']").count() == 0
        no_exception(pg)


def test_a_garbage_dataset_cache_does_not_stop_the_server(tmp_path, page):
    """The start-up warm-up loads the default dataset from its cache: a cache file of
    random bytes must not take the server down."""
    import os

    expect = playwright_api.expect
    cache = tmp_path / "cache"
    cache.mkdir()
    garbage = os.urandom(4096)
    from alexnet_core import datasets, paths

    with pytest.MonkeyPatch.context() as mp:  # write garbage where the server will look first
        mp.setenv("ALEXNET_LAB_CACHE", str(cache))
        datasets.load_dataset("digits")
        for path in paths.cache_root().glob("digits-*.pt"):
            path.write_bytes(garbage)
    assert list(cache.glob("digits-*.pt")), "the cache file the server reads"
    with Server(lab_env(tmp_path), tmp_path / "server.log") as srv:
        with projector_page(page.context.browser) as pg:
            pg.goto(srv.url)
            settle(pg)
            expect(pg.get_by_role("heading", name="AlexNet Lab")).to_be_visible()
            no_exception(pg)


def test_the_input_size_follows_a_change_of_variant(server, page):
    """On /model, mnist -> paper left 28 in the size box (in red) while the tables used 227."""
    expect = playwright_api.expect
    with projector_page(page.context.browser) as pg:
        pg.goto(f"{server}/model?variant=mnist")
        settle(pg)
        sidebar = pg.locator("[data-testid=stSidebar]")
        expect(sidebar.get_by_test_id("stNumberInputField")).to_have_value("28")
        sidebar.locator("[data-testid=stSelectbox]").first.click()
        pg.get_by_role("option", name="paper", exact=True).click()
        expect(pg.get_by_role("heading", name="AlexNet 2012 (paper)")).to_be_visible()
        expect(sidebar.get_by_test_id("stNumberInputField")).to_have_value("227")
        settle(pg)
        no_exception(pg)


def test_a_deep_link_opened_first_after_a_start_gets_the_frame(tmp_path, page):
    """A shared link is often the first page a fresh server serves. It must get the
    st.navigation frame (the page list and the sidebar choice), not Streamlit's
    legacy pages/ mode, which a pages/ folder beside the navigation script starts."""
    expect = playwright_api.expect
    with Server(lab_env(tmp_path), tmp_path / "server.log") as srv:
        with projector_page(page.context.browser) as pg:
            pg.goto(f"{srv.url}/model?variant=cifar&model_view=Shapes")
            settle(pg)
            expect(pg.get_by_role("heading", name="AlexNet for 32x32 (CIFAR)")).to_be_visible()
            nav_links = pg.locator("[data-testid=stSidebarNav] a")
            expect(nav_links).to_have_count(6)
            labels = [text.split("\n")[-1] for text in nav_links.all_inner_texts()]  # after each icon's name
            assert labels == ["Home", "Model", "Train", "Predictions", "What it learned", "Runs"], labels
            expect(pg.locator("[data-testid=stSidebar]").get_by_text("Your choice")).to_be_visible()
            expect(pg.locator("[data-testid=stSidebar]")).to_contain_text("AlexNet for 32x32 (CIFAR):")  # the link's variant
            no_exception(pg)


def test_a_watched_run_updates_its_status_and_charts_in_place(running, page):
    """The live view is two fragments: the status line and the charts refresh on
    their own timers, with no reload of the page. (Last in this file: it leaves a
    stopped run.)"""
    from pathlib import Path

    from alexnet_core import runs
    from alexnet_core.config import TrainConfig

    expect = playwright_api.expect
    runs_dir = Path(running.env["ALEXNET_LAB_RUNS"])
    # 96-pixel digits: long enough to watch several refreshes
    run_id = runs.launch(TrainConfig(variant="mnist", dataset="digits", input_size=96, epochs=3, batch_size=32), runs_dir)
    try:
        page.goto(f"{running.url}/train?run={run_id}")
        expect(page.get_by_text(f"{shown_as(run_id, runs_dir)} is running")).to_be_visible()
        page.evaluate("() => { window.__sameDocument = true; }")
        bar = page.locator(PROGRESS).first
        expect(bar).to_contain_text(re.compile(r"step [1-9]"))
        seen = bar.inner_text()
        expect(bar).not_to_have_text(seen)
        wait_for_chart(page, "Loss", "training (per step)", "x.length > 0")
        steps = len(next(t["x"] for t in chart_xs(page)["Loss"] if t["name"] == "training (per step)"))
        wait_for_chart(page, "Loss", "training (per step)", "x.length > arg", arg=steps)
        assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
        no_exception(page)
    finally:
        runs.stop(run_id, runs_dir)

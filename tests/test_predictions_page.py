"""The Predictions page on a Fashion-MNIST run: a link restores the view, a link's bad
values fall back quietly, a tile opens large with its labels, and at a projector's
1280x800 the header, the confusion matrix and the first row of the gallery read cleanly.

The run is real (the mnist net at 12x12, two epochs, on Fashion-MNIST files written
in torchvision's format, 10,000 test images); its predictions are then rewritten to a
small net's usual confusion, so the matrix holds three-digit counts under the long
class names ("T-shirt/top", "Ankle boot") the issue found unreadable.
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core import paths, runs
from tests.fixtures import tiny_config, write_mnist
from tests.test_pages import no_errors, open_page
from ui import cached
from ui.charts import CONFUSION_CLASSES, confusion_classes, confusion_figure

# Rows: true class, columns: predicted, of a small net on Fashion-MNIST (88% right).
FASHION_CONFUSION = np.array([
    [853, 1, 15, 27, 4, 1, 93, 0, 6, 0],
    [3, 967, 1, 21, 4, 0, 3, 0, 1, 0],
    [17, 1, 805, 9, 96, 0, 70, 0, 2, 0],
    [22, 6, 10, 903, 31, 0, 25, 0, 3, 0],
    [1, 1, 80, 29, 835, 0, 52, 0, 2, 0],
    [0, 0, 0, 1, 0, 967, 0, 22, 1, 9],
    [169, 1, 90, 29, 70, 0, 633, 0, 8, 0],
    [0, 0, 0, 0, 0, 11, 0, 970, 0, 19],
    [3, 1, 3, 4, 2, 3, 4, 4, 975, 1],
    [0, 0, 0, 0, 0, 6, 1, 32, 0, 961],
])


def confuse_like_a_small_net(run_id: str) -> None:
    """Rewrite every epoch's predictions: each test image's answer drawn from its true
    class's row of FASHION_CONFUSION (seeded), with fitting probabilities and losses."""
    rng = np.random.default_rng(0)
    for path in sorted((runs.run_path(run_id) / "predictions").glob("epoch-*.npz")):
        with np.load(path) as npz:
            arrays = dict(npz)
        labels = arrays["label"].astype(int)
        pred = labels.copy()
        for c, row in enumerate(FASHION_CONFUSION):
            mine = np.flatnonzero(labels == c)
            pred[mine] = rng.choice(10, size=len(mine), p=row / row.sum())
        right = pred == labels
        p_pred = np.where(right, rng.uniform(0.6, 1, len(pred)), rng.uniform(0.4, 0.99, len(pred)))
        p_true = np.where(right, p_pred, rng.uniform(0.001, 0.3, len(pred)))
        arrays.update(pred=pred.astype(arrays["pred"].dtype), p_pred=p_pred.astype(np.float32),
                      p_true=p_true.astype(np.float32), loss=(-np.log(p_true)).astype(np.float32))
        np.savez(path, **arrays)


@pytest.fixture(scope="module")
def fashion_lab(tmp_path_factory):
    """A run store, cache and data root holding one finished two-epoch Fashion-MNIST run;
    yields (lab folder, run id)."""
    lab = tmp_path_factory.mktemp("fashion_lab")
    write_mnist(lab / "data", "FashionMNIST", n_train=600, n_test=10_000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_RUNS", str(lab / "runs"))
        mp.setenv("ALEXNET_LAB_CACHE", str(lab / "cache"))
        mp.setenv("ALEXNET_LAB_DATA", str(lab / "data"))
        mp.setattr(paths, "SYSTEM_ARCHIVES", {})
        # the dashboard's dataset cache is keyed by name, not by data root: none of
        # another module's Fashion-MNIST in here, none of this one's after
        cached._load_dataset.clear()
        cached.test_fingerprint.clear()
        run_id = runs.launch(tiny_config(dataset="fashion-mnist", epochs=2))
        state = runs.wait(run_id, timeout=240)
        assert state["state"] == "finished", state
        confuse_like_a_small_net(run_id)
        yield lab, run_id
        cached._load_dataset.clear()
        cached.test_fingerprint.clear()


def open_predictions(**params) -> AppTest:
    """Predictions opened from a link with these query parameters (no run: the newest)."""
    at = open_page("predictions", **params)
    no_errors(at)
    return at


def matching(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "matching" in m.value)


def test_the_grid_shows_where_the_network_looked_and_links_each_tile_to_its_closest_images(fashion_lab):
    """Grad-CAM over each tile of the prediction grid, for the class it said or the true one,
    at the epoch whose weights were kept; one click from a tile to its closest training images."""
    _, run_id = fashion_lab
    best = runs.status(run_id)["best_epoch"]
    other = next(e for e in runs.prediction_epochs(run_id) if e != best)
    at = open_predictions(epoch=str(other))
    assert at.button_group(key="heat").proto.disabled  # not these weights' predictions
    at = open_predictions(epoch=str(best))
    plain = [img.value[0] for img in at.image]
    links = [link for link in at.get("page_link") if link.proto.label == "Closest"]
    first = runs.read_predictions(run_id, best).pipe(
        lambda p: p[p["label"] != p["pred"]].sort_values("loss", ascending=False, kind="stable"))["index"].iloc[0]
    assert len(links) == len(plain) and (links[0].proto.page, links[0].proto.query_string) == ("learned", f"run={run_id}&image={first}")
    for heat in ("the class it said", "the true class"):
        at.button_group(key="heat").set_value(heat).run()
        no_errors(at)
        drawn = [img.value[0] for img in at.image]
        assert len(drawn) == len(plain) and drawn != plain, heat


def test_64_per_page_is_drawn_as_an_8x8_grid(fashion_lab):
    """The write-ups show their predictions as an 8x8 grid of 64 tiles."""
    at = open_predictions(only_wrong="false", per_page="64")
    tiles = [m.value for m in at.markdown if "predicted" in m.value and "loss" in m.value]
    assert len(tiles) == 64
    tile_columns = [c for c in at.columns if c.image]
    assert len(tile_columns) == 64 and {round(c.weight, 3) for c in tile_columns} == {round(1 / 8, 3)}


# ---------------------------------------------------------------- a link restores the view


def test_a_link_restores_epoch_filters_order_and_page(fashion_lab):
    """Epoch 1 and true class 8 from a link opened in a new browser came back as the last
    epoch and every class."""
    _, run_id = fashion_lab
    at = open_predictions(epoch="1", true_class="8: Bag", only_wrong="false", by_loss="false",
                          grid_page="2", per_page="24")
    assert at.selectbox(key="run").value == run_id
    assert at.selectbox(key="epoch").value == 1
    assert at.selectbox(key="true_class").value == 8
    assert at.toggle(key="only_wrong").value is False and at.toggle(key="by_loss").value is False
    assert at.selectbox(key="per_page").value == 24 and at.pagination(key="grid_page").value == 2
    preds = runs.read_predictions(run_id, 1)
    bags = int((preds["label"] == 8).sum())
    assert f"Images **25–48** of **{bags:,}** matching" == matching(at)
    first = sorted(preds.loc[preds["label"] == 8, "index"])[24]  # by dataset index: sorting by loss is off
    tiles = [m.value for m in at.markdown if "predicted" in m.value and "loss" in m.value]
    assert f"#{first}<" in tiles[0], tiles[0]


def test_a_link_to_a_confusion_cell_and_a_later_epoch(fashion_lab):
    at = open_predictions(epoch="2", true_class="6: Shirt", pred_class="0: T-shirt/top")
    _, run_id = fashion_lab
    preds = runs.read_predictions(run_id, 2)
    n = int(((preds["label"] == 6) & (preds["pred"] == 0)).sum())
    assert at.selectbox(key="epoch").value == 2 and at.selectbox(key="pred_class").value == 0
    assert f"of **{n:,}** matching" in matching(at)


@pytest.mark.parametrize("params", [
    {"epoch": "7"},
    {"epoch": "<img src=x onerror=alert(1)>"},
    {"true_class": "11: Nope", "pred_class": "[Your session expired](https://evil.example/login)"},
    {"true_class": "<b>8: Bag</b>", "only_wrong": "maybe", "by_loss": "**yes**"},
    {"grid_page": "999"},
    {"grid_page": "-1", "per_page": "13"},
    {"grid_page": ":red[2]", "pred_view": "**Confusion** matrix"},
])
def test_a_links_values_the_run_cannot_take_fall_back_quietly(fashion_lab, params):
    """An epoch the run does not have, a class that does not exist, a page beyond the
    last, Markdown or HTML: the default view, no error, nothing of the value shown."""
    at = open_predictions(**params)
    assert at.selectbox(key="epoch").value == 2  # the newest
    assert at.selectbox(key="true_class").value == -1 and at.selectbox(key="pred_class").value == -1
    assert at.toggle(key="only_wrong").value is True and at.toggle(key="by_loss").value is True
    assert at.pagination(key="grid_page").value == 1 and at.selectbox(key="per_page").value == 12
    assert matching(at).startswith("Images **1–12** of")
    shown = [m.value for m in at.markdown] + [w.value for w in at.warning] + [c.value for c in at.caption]
    for value in params.values():
        if not value.lstrip("-").isdigit():  # a number may well be on the page for itself
            assert not any(value in text for text in shown), value
    assert not any("evil.example" in text for text in shown)


def test_another_run_opens_at_its_newest_epoch(fashion_lab):
    """The epoch is one widget for every run: a run picked later starts at its own newest
    epoch, not at the number shown for the run before (which it has too)."""
    _, run_id = fashion_lab
    other = runs.launch(tiny_config(dataset="fashion-mnist", epochs=1))
    try:
        assert runs.wait(other, timeout=240)["state"] == "finished"
        at = open_predictions()
        assert at.selectbox(key="run").value == other and at.selectbox(key="epoch").value == 1  # the newest run
        at.selectbox(key="run").set_value(run_id).run()
        assert at.selectbox(key="epoch").value == 2 and not at.exception
    finally:
        runs.delete_run(other)


# ---------------------------------------------------------------- a tile, large


def test_a_tile_opens_large_with_its_labels(fashion_lab):
    at = open_predictions()
    (button, *_) = [b for b in at.button if str(b.key).startswith("large:")]
    index = int(button.key.split(":")[1])
    button.click().run()
    assert not at.exception, [e.message for e in at.exception]
    said = " ".join(m.value for m in at.markdown if "confidence" in m.value)
    assert re.search(r"Predicted \*\*.+\*\* with \d+% confidence: :red\[\*\*wrong\*\*\]", said), said
    assert "True class **" in said and f"test image #{index} " in said


# ---------------------------------------------------------------- the confusion matrix's text


def test_counts_are_sized_to_their_cells_and_many_classes_hover_only():
    """Ten long names with four-digit counts keep their counts; 102 classes show the 30
    with the most mistakes as a heatmap without text, counts on hover."""
    from torchvision.datasets import FashionMNIST, Flowers102

    big = FASHION_CONFUSION * 2  # a diagonal of four digits, as MNIST's 1,135 ones give
    fig = confusion_figure(big, list(FashionMNIST.classes), list(range(10)))
    heat = fig.data[0]
    assert heat.texttemplate == "%{text}" and 11 <= heat.textfont.size <= 18
    assert list(fig.layout.xaxis.ticktext) == list(FashionMNIST.classes)  # short enough: whole
    rng = np.random.default_rng(0)
    matrix = np.diag(rng.integers(40, 60, 102)) + rng.poisson(0.3, (102, 102))
    shown = confusion_classes(matrix)
    fig = confusion_figure(matrix, list(Flowers102.classes), shown)
    assert len(shown) == CONFUSION_CLASSES and fig.data[0].texttemplate is None
    heat, cells = fig.data  # the markers that take a click lie over the cells: their hover counts too
    assert "%{z} images" in heat.hovertemplate and "%{text} images" in cells.hovertemplate
    assert list(cells.text) == [str(v) for v in matrix[np.ix_(shown, shown)].ravel()]
    assert all(len(t) <= 18 for t in fig.layout.yaxis.ticktext)  # "hard-leaved pocket orchid" is cut
    assert list(fig.data[0].y) == [html.escape(Flowers102.classes[i]) for i in shown]  # whole on hover


# ---------------------------------------------------------------- in Chromium at 1280x800


@pytest.fixture(scope="module")
def browser_lab(fashion_lab):
    """(server url, chromium) over the Fashion-MNIST lab."""
    from tests.browser import CHROMIUM, Server, lab_env, launch_chromium

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    lab, _ = fashion_lab
    env = dict(lab_env(lab), ALEXNET_LAB_DATA=str(lab / "data"))
    with Server(env, lab / "server.log") as server, sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield server.url, browser
        finally:
            browser.close()


# Rectangles of what the page draws, in the viewport's pixels.
RECTS = """(elements) => elements.map(e => {
    const r = e.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height, text: e.textContent};
})"""
# Axis names: where each one's end stands (its tick, for a name turned to end there), its
# height upright, and the angle it is turned by.
TICKS = """(elements) => elements.map(e => {
    const r = e.getBoundingClientRect(), turn = /rotate\\((-?[\\d.]+)/.exec(e.getAttribute('transform') || '');
    return {x: r.x + r.width, h: e.getBBox().height, angle: turn ? parseFloat(turn[1]) : 0, text: e.textContent};
})"""
# Text cut short by the page (an ellipsis): a box narrower than what it holds.
CUT = """(selector) => Array.from(document.querySelectorAll(selector))
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""


# A tile's labels under its image ("✗ predicted Coat (97%) true: Pullover ...").
TILE_TEXT = "[data-testid=stMarkdownContainer]:has-text('✗ predicted')"


def overlapping(rects: list[dict]) -> list[tuple[str, str]]:
    return [(a["text"], b["text"]) for i, a in enumerate(rects) for b in rects[i + 1:]
            if a["x"] < b["x"] + b["w"] - 1 and b["x"] < a["x"] + a["w"] - 1
            and a["y"] < b["y"] + b["h"] - 1 and b["y"] < a["y"] + a["h"] - 1]


def test_at_1280x800_the_header_matrix_and_gallery_read_cleanly(browser_lab):
    """Fashion-MNIST's matrix overlapped its counts ("1691 9331 96"), the pair buttons hid
    theirs ("Shirt -> T-shi..."), the Misclassified metric was cut ("1,161 of..."), and
    the gallery's first row began near the bottom of the first screen."""
    from playwright.sync_api import expect

    from tests.browser import DRAWN_CHART, no_exception, projector_page, settle, shot

    url, browser = browser_lab
    with projector_page(browser) as pg:
        pg.goto(f"{url}/predictions")
        settle(pg)
        expect(pg.get_by_text(re.compile(r"Images 1–12 of [\d,]+ matching"))).to_be_visible()
        shot(pg, "predictions-gallery-1280x800")
        assert pg.evaluate(CUT, "[data-testid=stMetric] [data-testid=stMarkdownContainer]") == []
        image = pg.locator("[data-testid=stImage]").first.bounding_box()
        labels = pg.locator(TILE_TEXT).first.bounding_box()
        print(f"first tile at y={image['y']:.0f}, its labels end at y={labels['y'] + labels['height']:.0f}")
        assert labels["y"] + labels["height"] <= 800, "the gallery's first row, labels too, is in the first screen"

        pg.get_by_role("tab", name="Confusion matrix").click()
        expect(pg.locator(f"{DRAWN_CHART} .heatmaplayer text").first).to_be_visible()
        settle(pg)
        matrix = pg.locator(DRAWN_CHART).first
        counts = matrix.locator(".heatmaplayer text").evaluate_all(RECTS)
        cells = matrix.locator(".heatmaplayer image").evaluate_all(RECTS)[0]
        assert len(counts) > 50 and overlapping(counts) == [], overlapping(counts)[:5]
        assert all(c["w"] <= cells["w"] / 10 for c in counts), "every count inside its cell"
        names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        rows = matrix.locator(".ytick text").evaluate_all(RECTS)
        assert [t["text"] for t in rows] == names and overlapping(rows) == [], overlapping(rows)
        columns = matrix.locator(".xtick text").evaluate_all(TICKS)
        assert [t["text"] for t in columns] == names
        assert all(t["angle"] in (-45, -90) for t in columns), "too long to stand level"
        for a, b in zip(columns, columns[1:]):  # slanted names: apart across their slant
            gap = (b["x"] - a["x"]) * math.sin(math.radians(-a["angle"]))
            assert gap >= 0.9 * a["h"], (a, b)
        assert cells["y"] + cells["h"] <= 800, "the whole matrix in the first screen"
        pairs = pg.locator("[data-testid=stButton]", has_text="→")
        expect(pairs).to_have_count(8)
        assert re.fullmatch(r"\d+ · Shirt → T-shirt/top", pairs.first.inner_text().strip())
        assert pg.evaluate(CUT, "[data-testid=stButton] [data-testid=stMarkdownContainer]") == []
        no_exception(pg)
        shot(pg, "predictions-matrix-1280x800")


def choose(pg, label: str, option: str) -> None:
    from tests.browser import settle

    settle(pg)
    pg.locator("[data-testid=stMain] [data-testid=stSelectbox]", has_text=label).click()
    pg.get_by_role("option", name=option, exact=True).click()


def test_a_copied_link_restores_the_view_in_a_new_browser(browser_lab, fashion_lab):
    """Epoch, true class, order and page chosen in one browser; its URL opened in
    another (nothing shared) shows the same images. Then one of them, large."""
    from playwright.sync_api import expect

    from tests.browser import no_exception, projector_page, settle, shot

    url, browser = browser_lab
    _, run_id = fashion_lab
    preds = runs.read_predictions(run_id, 1)
    bags_wrong = int(((preds["label"] == 8) & (preds["pred"] != 8)).sum())
    assert bags_wrong > 12, "two pages of them"
    page_two = f"Images 13–{min(24, bags_wrong)} of {bags_wrong} matching"
    with projector_page(browser) as pg:
        pg.goto(f"{url}/predictions?run={run_id}")
        settle(pg)
        expect(pg).to_have_url(re.compile(f"run={run_id}"))  # the id, not the short name the picker shows
        choose(pg, "Epoch", "1")
        expect(pg).to_have_url(re.compile(r"epoch=1"))
        choose(pg, "True class", "8: Bag")
        expect(pg).to_have_url(re.compile(r"true_class=8"))
        settle(pg)
        pg.get_by_text("Top losses first").click()
        expect(pg).to_have_url(re.compile(r"by_loss=false"))
        settle(pg)
        pg.get_by_role("button", name="Page 2", exact=True).click()
        expect(pg.get_by_text(page_two)).to_be_visible()
        settle(pg)
        link = pg.url
        tile = pg.locator(TILE_TEXT).first.text_content()
    with projector_page(browser) as pg:
        pg.goto(link)
        settle(pg)
        expect(pg.get_by_text(page_two)).to_be_visible()
        expect(pg.get_by_role("combobox", name="Epoch (of 2)")).to_have_value("1")
        expect(pg.get_by_role("combobox", name="True class")).to_have_value("8: Bag")
        expect(pg.locator(TILE_TEXT).first).to_have_text(tile)
        no_exception(pg)

        pg.get_by_role("button", name="Enlarge").first.click()
        dialog = pg.get_by_role("dialog")
        expect(dialog).to_contain_text("confidence")
        expect(dialog).to_contain_text("True class Bag")
        large = dialog.locator("[data-testid=stImage] img")
        expect(large).to_be_visible()
        pg.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=large.element_handle())
        assert large.evaluate("img => img.naturalWidth") >= 400, "large, each test pixel a square"
        shot(pg, "predictions-large-tile")

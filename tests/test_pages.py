"""Every page under streamlit.testing.v1.AppTest, at defaults, from a link, and on real runs.

The run store lives in a temporary folder (the ``ui_lab`` fixture); runs are
real training processes on the bundled digits, one epoch each.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core import datasets, runs, variants
from alexnet_core.recipes import get_recipe
from tests.browser import shown_as
from ui import choice
from ui.formatting import md

APP = str(Path(__file__).resolve().parent.parent / "ui" / "frame.py")
PAGES = {
    "home": choice.HOME,
    "model": choice.MODEL,
    "train": choice.TRAIN,
    "predictions": choice.PREDICTIONS,
    "runs": choice.RUNS,
}
TIMEOUT = 60


def open_page(page: str, **params) -> AppTest:
    """The app opened on ``page`` with a link's query parameters."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page != "home":
        at.switch_page(PAGES[page]).run()
    return at


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def chart_titles(at: AppTest) -> list[str]:
    return [f["layout"]["title"]["text"] for f in charts(at)]


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(str(s.value) for s in at.success)


# ---------------------------------------------------------------- every page renders


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_at_defaults(ui_lab, page):
    at = open_page(page)
    no_errors(at)
    assert at.title, "every page has a title"
    assert at.sidebar.selectbox(key="variant").value == "mnist"
    assert at.sidebar.selectbox(key="dataset").value == "digits"
    assert at.sidebar.number_input(key="size").value == variants.get_spec("mnist").input_size


def test_sidebar_is_filled_from_the_registries(ui_lab):
    at = open_page("home")
    assert at.sidebar.selectbox(key="variant").options == variants.list_models()
    assert at.sidebar.selectbox(key="dataset").options == datasets.list_datasets()


@pytest.mark.parametrize("page", list(PAGES))
def test_link_opens_the_same_view(ui_lab, page):
    at = open_page(page, variant="paper", dataset="digits", size="224")
    no_errors(at)
    assert not at.warning
    assert at.sidebar.selectbox(key="variant").value == "paper"
    assert at.sidebar.number_input(key="size").value == 224
    if page == "model":
        assert at.title[0].value == variants.get_spec("paper").title


def test_choice_is_kept_across_pages(ui_lab):
    at = open_page("home")
    at.sidebar.selectbox(key="variant").set_value("cifar").run()
    assert at.sidebar.number_input(key="size").value == 32  # the new variant's native size
    at.switch_page(PAGES["model"]).run()
    assert at.sidebar.selectbox(key="variant").value == "cifar"
    assert at.title[0].value == variants.get_spec("cifar").title


@pytest.mark.parametrize(
    "params, words",
    [
        ({"variant": "alexnet9000"}, "variant **alexnet9000**"),
        ({"dataset": "imagenet"}, "dataset **imagenet**"),
        ({"size": "5"}, "input size **5**"),
        ({"size": "big"}, "input size **big**"),
    ],
)
def test_unknown_link_value_falls_back_with_a_notice(ui_lab, params, words):
    at = open_page("model", **params)
    no_errors(at)
    assert any(words in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.sidebar.selectbox(key="variant").value == "mnist"
    assert at.sidebar.selectbox(key="dataset").value == "digits"
    assert at.sidebar.number_input(key="size").value == 28


@pytest.mark.parametrize("tab", ["Layers", "Shapes", "224 or 227", "All variants", "Feature maps"])
def test_model_tabs(ui_lab, tab):
    at = open_page("model", variant="paper", size="227", model_view=tab)
    no_errors(at)
    if tab == "Layers":
        assert "<td>96×55×55</td>" in at.html[0].value  # conv1 of the paper net at 227
    if tab == "224 or 227":
        (both,) = (h.value for h in at.html)  # one table, the sizes side by side (tests/test_model_page.py)
        assert '<tr class="marked">' in both and "px dropped" in both  # 224 rounds pixels away
    if tab == "All variants":
        assert all(f"<td>{name}</td>" in at.html[0].value for name in variants.list_models())
    if tab == "Feature maps":
        assert len(at.get("image")) >= 1


def test_table_html_escapes_cells_and_marks_rows():
    import pandas as pd

    from ui.formatting import table_html

    table = table_html(pd.DataFrame({"layer": ["<b>x</b>", "y"], "params": ["1,024", None]}), right=("params",), marked={1})
    assert "&lt;b&gt;x&lt;/b&gt;" in table and "<b>x</b>" not in table
    assert '<th class="num">params</th>' in table and '<td class="num">1,024</td>' in table
    assert '<tr><td>&lt;b&gt;x&lt;/b&gt;</td>' in table  # row 0 plain
    assert '<tr class="marked"><td>y</td><td class="num"></td></tr>' in table  # row 1 marked, None empty


def test_all_variants_show_the_speed_a_run_measured_here(ui_lab, finished_run):
    at = open_page("model", model_view="All variants")
    no_errors(at)
    rate = runs.status(finished_run)["images_per_s"]
    size = runs.read_config(finished_run).resolved_input_size
    assert f'<td class="num">{rate:,.0f} at {size} px</td>' in at.html[0].value  # the quick recipe's mnist, not at 28
    assert any("images/s here" in c.value for c in at.main.caption)


def test_feature_maps_compare_a_run_with_the_weights_it_started_from(ui_lab, finished_run):
    at = open_page("model", variant="mnist", dataset="digits", model_view="Feature maps")
    no_errors(at)
    assert at.selectbox(key="fm_run").value == finished_run  # its newest run with weights, chosen for you
    layers = [m.value for m in at.markdown if "as large as the response before training" in m.value]
    assert len(layers) == 5, layers  # the mnist net's five conv layers
    changes = [float(re.search(r"is \*\*(\d+)%", text).group(1)) for text in layers]
    assert all(change > 0 for change in changes), changes  # one epoch of training moved every layer
    captions = [img.caption for image in at.get("image") for img in image.proto.imgs]
    assert captions.count("what changed") == 5 and captions.count("before training") == 5, captions
    at.selectbox(key="fm_run").set_value("none").run()
    no_errors(at)
    assert not any("as large as the response before" in m.value for m in at.markdown)  # the untrained net alone


# ---------------------------------------------------------------- training from the page


def test_train_times_an_epoch_and_another_session_shows_it_at_once(ui_lab):
    def estimate(at: AppTest) -> list[str]:
        return [m.value for m in at.markdown if "per epoch**" in m.value]

    at = open_page("train")
    no_errors(at)
    assert any("Timing a few training steps" in c.value for c in at.caption)  # drawn first, timed next
    assert not estimate(at)
    at.run()  # in a browser, the fragment's first timer tick
    no_errors(at)
    assert estimate(at), [m.value for m in at.markdown]
    again = open_page("train")  # another browser, the same settings
    assert estimate(again) == estimate(at)
    assert not any("Timing" in c.value for c in again.caption)


def test_train_launches_a_run_that_finishes(ui_lab):
    at = open_page("train")
    no_errors(at)
    quick = get_recipe("quick").config
    assert at.radio(key="quick:what").value == "recipe"  # the recipe's own choice unless asked otherwise
    assert f"Trains **mnist** on **digits** at **{quick.input_size}x{quick.input_size}**." in texts(at)
    at.number_input(key="quick:epochs").set_value(1).run()
    before = set(runs.list_runs()["id"])
    at.button(key="launch").click().run()
    no_errors(at)
    new = set(runs.list_runs()["id"]) - before
    assert len(new) == 1, "one click makes one run"
    run_id = new.pop()
    assert at.selectbox(key="run").value == run_id
    assert runs.wait(run_id, timeout=240)["state"] == "finished"
    at.run()  # AppTest never fires run_every: rerun to see the new state
    no_errors(at)
    assert f"{md(shown_as(run_id))} is **finished**" in texts(at)
    assert "test accuracy" in texts(at)
    assert chart_titles(at) == ["Loss", "Accuracy per epoch"]
    assert runs.read_config(run_id).epochs == 1
    assert runs.read_config(run_id).input_size == quick.input_size  # the recipe's 12, not the sidebar's 28
    # the status line: full, with the run's last step
    [line] = at.get("progress")
    assert line.proto.value == 100 and line.proto.text.startswith("epoch 1 of 1 · step ")
    # the run this session launched stays on top once it ends; the form folds away below it
    assert "Start another run" in [e.label for e in at.expander]
    assert "Start another run" not in [e.label for e in open_page("train").expander]  # a new visitor: the form first


def test_launch_twice_quickly_makes_one_run(ui_lab, finished_run):
    at = open_page("train")
    at.number_input(key="quick:epochs").set_value(1).run()
    before = set(runs.list_runs()["id"])
    at.button(key="launch").click().run()
    at.button(key="launch").click().run()
    new = set(runs.list_runs()["id"]) - before
    assert len(new) == 1
    run_id = new.pop()
    runs.stop(run_id)
    assert runs.wait(run_id, timeout=120)["state"] in ("stopped", "finished")


# ---------------------------------------------------------------- a finished run


def test_a_tile_never_shows_a_negative_loss(ui_lab, finished_run):
    """float32 gives a loss of -0.0 or -1e-7 for a certain right answer: a tile says 0.00."""
    import numpy as np

    copy = "negative-losses"
    shutil.copytree(runs.run_path(finished_run), runs.run_path(finished_run).parent / copy)
    try:
        for path in (runs.run_path(copy) / "predictions").glob("epoch-*.npz"):
            with np.load(path) as npz:
                arrays = dict(npz)
            right = arrays["label"] == arrays["pred"]
            arrays["loss"] = np.where(right, -1.2e-7, arrays["loss"]).astype(arrays["loss"].dtype)
            np.savez(path, **arrays)
        at = open_page("predictions", run=copy)
        at.toggle(key="only_wrong").set_value(False).run()
        at.toggle(key="by_loss").set_value(False).run()
        no_errors(at)
        tiles = [m.value for m in at.markdown if "✓" in m.value and "loss" in m.value]
        assert tiles and all("loss 0.00 · #" in t and "-0.00" not in t for t in tiles), tiles
    finally:
        shutil.rmtree(runs.run_path(copy), ignore_errors=True)


def test_run_metrics_read_only_the_new_lines(ui_lab, finished_run):
    """The live view's shared reader: each refresh reads the lines added since the
    last one, and builds the figures again only when some arrived."""
    from ui.live import RunMetrics

    copy = "growing-metrics"
    shutil.copytree(runs.run_path(finished_run), runs.run_path(finished_run).parent / copy)
    try:
        path = runs.run_path(copy) / "metrics.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        cut = len(lines) // 2
        path.write_text("".join(lines[:cut]))
        metrics = RunMetrics(copy, str(runs.run_path(copy).parent))
        steps_a, _, loss_a, _ = metrics.snapshot()
        offset = metrics.offset
        assert offset == path.stat().st_size and len(metrics.rows) == cut
        assert metrics.snapshot()[2] is loss_a, "no new line: the same figure"
        with open(path, "a") as f:
            f.write("".join(lines[cut:]))
        steps_b, epochs_b, loss_b, accuracy_b = metrics.snapshot()
        assert len(metrics.rows) == len(lines) and metrics.offset > offset
        assert len(steps_b) > len(steps_a) and loss_b is not loss_a
        assert loss_b.layout.title.text == "Loss" and accuracy_b.layout.title.text == "Accuracy per epoch"
        assert {t.name for t in accuracy_b.data} == {"training", "validation", "test"}
        assert list(accuracy_b.data[0].x) == list(epochs_b["epoch"])
    finally:
        shutil.rmtree(runs.run_path(copy), ignore_errors=True)


def test_a_large_audience_slows_every_page_and_says_so(ui_lab):
    """Past FREE_VIEWERS sessions watching one running run, each page refreshes a
    power of two slower, and says why."""
    from alexnet_core.config import TrainConfig
    from ui import live

    run_id = runs.launch(TrainConfig(variant="mnist", dataset="digits", input_size=28, epochs=200, batch_size=32))
    try:
        for i in range(live.FREE_VIEWERS * 2):  # other sessions watching it now
            live.run_metrics(run_id).audience.seen(f"another-session-{i}")
        at = open_page("train", run=run_id)
        no_errors(at)
        assert at.selectbox(key="run").value == run_id
        scale = live.refresh_scale(live.FREE_VIEWERS * 2 + 1)
        captions = [c.value for c in at.caption if "pages are watching this run" in c.value]
        assert scale == 4 and captions, [c.value for c in at.caption]
        assert f"progress every {live.STATUS_EVERY_S * scale:g} s" in captions[0]
        assert f"charts every {live.CHARTS_EVERY_S * scale:g} s" in captions[0]
    finally:
        runs.stop(run_id)
        runs.wait(run_id, timeout=120)


def test_predictions_grid_and_filters(ui_lab, finished_run):
    at = open_page("predictions", run=finished_run)
    no_errors(at)
    assert at.selectbox(key="run").value == finished_run
    preds = runs.read_predictions(finished_run)
    wrong = int((preds["label"] != preds["pred"]).sum())
    assert wrong > 0, "one epoch leaves mistakes to look at"
    PER_PAGE = at.selectbox(key="per_page").value
    tiles = [m.value for m in at.markdown if "predicted" in m.value and "loss" in m.value]
    assert len(tiles) == min(PER_PAGE, wrong) and all("✗" in t for t in tiles)
    assert f"of **{wrong:,}** matching" in texts(at)

    at.toggle(key="only_wrong").set_value(False).run()
    assert f"of **{len(preds):,}** matching" in texts(at)
    at.pagination(key="grid_page").set_value(2).run()  # paging, no cap
    assert f"Images **{PER_PAGE + 1}–{2 * PER_PAGE}**" in texts(at)

    label = int(preds["label"].iloc[0])
    at.selectbox(key="true_class").set_value(label).run()
    n = int((preds["label"] == label).sum())
    assert f"of **{n:,}** matching" in texts(at)
    no_errors(at)


def test_predictions_confusion_cell_filters_the_grid(ui_lab, finished_run):
    at = open_page("predictions", run=finished_run, pred_view="Confusion matrix")
    no_errors(at)
    assert len(at.get("plotly_chart")) == 2  # the matrix and per-class accuracy, on Streamlit's plotly
    pair_buttons = [b for b in at.button if str(b.key).startswith("pair:")]
    assert pair_buttons
    _, t, p = pair_buttons[0].key.split(":")
    pair_buttons[0].click().run()
    assert at.session_state["pred_view"] == "Test images"
    assert at.selectbox(key="true_class").value == int(t)
    assert at.selectbox(key="pred_class").value == int(p)
    preds = runs.read_predictions(finished_run)
    n = int(((preds["label"] == int(t)) & (preds["pred"] == int(p))).sum())
    assert f"of **{n:,}** matching" in texts(at)


def test_predictions_upload_tab(ui_lab, finished_run):
    at = open_page("predictions", run=finished_run, pred_view="Your own image")
    no_errors(at)
    assert "Upload a picture" in texts(at)


def test_predictions_link_to_a_missing_run(ui_lab, finished_run):
    at = open_page("predictions", run="no-such-run")
    no_errors(at)
    assert any("no\\-such\\-run" in w.value for w in at.warning)  # shown as typed, escaped for Markdown


def test_runs_page_table_curves_downloads(ui_lab, finished_run):
    at = open_page("runs")
    no_errors(at)
    assert not at.table and not at.dataframe  # a short list: one HTML table
    assert f"<td>{finished_run}</td>" in at.html[0].value and "<th>variant</th>" in at.html[0].value
    assert "<th>recipe</th>" in at.html[0].value and "<td>quick</td>" in at.html[0].value  # as written, or ours?
    (curves,) = charts(at)
    assert curves["layout"]["title"]["text"] == "validation accuracy (%) by epoch"
    assert curves["layout"]["yaxis"]["range"] == [0, 101]
    (line,) = [t for t in curves["data"] if t["name"] == shown_as(finished_run)]  # other tests' runs may be there too
    assert line["x"] == [1]
    assert line["y"] == [pytest.approx(100 * runs.status(finished_run)["best_val_acc"])]
    assert not at.get("download_button"), "the files wait in a closed expander"
    open_files(at)
    at.selectbox(key="files_run").set_value(finished_run).run()
    no_errors(at)
    assert len(at.get("download_button")) == 4  # config, epoch CSV, step CSV, best.pt
    # A click's rerun re-registered the buttons' files and could revoke the one the click asked
    # for before it was served: the journey's download never came, once in a CI run.
    assert all(b.proto.ignore_rerun for b in at.get("download_button"))


def open_files(at: AppTest) -> None:
    """Open the Runs page's "Download or delete a run" expander (drawn only while open)."""
    assert "Download or delete a run" in [e.label for e in at.expander]
    at.session_state["run_files"] = True
    at.run()


def test_runs_page_long_list_is_a_scrolling_grid(ui_lab, finished_run):
    TABLE_ROWS = 15  # pages/runs.py: up to this many runs, a plain table

    source = runs.run_path(finished_run)
    copies = [source.parent / f"copy-{i:02d}" for i in range(TABLE_ROWS)]
    try:
        for copy in copies:
            shutil.copytree(source, copy)
        at = open_page("runs")
        no_errors(at)
        assert not at.table and not any("<table" in h.value for h in at.html)
        assert len(at.dataframe[0].value) == len(runs.list_runs()) > TABLE_ROWS
    finally:
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)


def test_runs_page_delete_asks_first(ui_lab, finished_run):
    copy = "copy-of-a-run"
    source = runs.run_path(finished_run)
    shutil.copytree(source, source.parent / copy)
    at = open_page("runs")
    open_files(at)
    at.selectbox(key="files_run").set_value(copy).run()
    at.button(key="ask_delete").click().run()
    assert runs.run_path(copy).exists(), "nothing is deleted before the confirmation"
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="no_delete").click().run()
    assert runs.run_path(copy).exists()
    at.button(key="ask_delete").click().run()
    at.button(key="yes_delete").click().run()
    no_errors(at)
    assert not runs.run_path(copy).exists()
    assert copy not in runs.list_runs()["id"].tolist()


def test_home_lists_the_datasets_here_and_those_to_get(ui_lab):
    at = open_page("home")
    no_errors(at)
    ready = [m.value for m in at.markdown if m.value.startswith("**Ready on this computer**")]
    missing = [m.value for m in at.markdown if m.value.startswith("**Not here yet**")]
    assert len(ready) == len(missing) == 1  # one element per list
    assert "(`digits`)" in ready[0]  # bundled with scikit-learn
    assert "(`cifar10`)" in missing[0] and "(`cifar10`)" not in ready[0]  # nothing downloads in a test
    assert [e.label for e in at.expander].count("How to get the others") == 1  # once, below what is missing


def test_quick_demo_button_launches_and_goes_to_train(ui_lab):
    at = open_page("home")
    before = set(runs.list_runs()["id"])
    at.button(key="quick_demo").click().run()
    no_errors(at)
    new = set(runs.list_runs()["id"]) - before
    assert len(new) == 1
    run_id = new.pop()
    assert runs.read_config(run_id).recipe == "quick"
    assert at.title[0].value == "Train"
    assert at.selectbox(key="run").value == run_id
    runs.stop(run_id)
    assert runs.wait(run_id, timeout=120)["state"] in ("stopped", "finished")


# ---------------------------------------------------------------- what a link, a file or a folder says is text


@pytest.mark.parametrize("param, value", [
    ("variant", "![](https://evil.example/pixel.png)"),
    ("dataset", "[Your session expired - click here](https://evil.example/login)"),
    ("size", "**big** :red[x]"),
])
def test_a_links_values_show_as_plain_text(ui_lab, param, value):
    at = open_page("model", **{param: value})
    no_errors(at)
    (notice,) = [w.value for w in at.warning if "The link asks for" in w.value]
    assert value not in notice  # not as Markdown: every mark escaped
    assert "\\[" in notice or "\\*\\*" in notice
    assert "](https" not in notice and "**big**" not in notice


def test_a_link_to_a_run_with_markdown_shows_it_as_text(ui_lab, finished_run):
    at = open_page("predictions", run="[Your session expired - click here](https://evil.example/login)")
    no_errors(at)
    (notice,) = [w.value for w in at.warning if "The link names run" in w.value]
    assert "\\[Your session expired" in notice and "](https" not in notice


def hand_edited_copy(finished_run: str, name: str, **fields) -> str:
    """A copy of the finished run whose config.json has ``fields`` written over it."""
    source = runs.run_path(finished_run)
    shutil.copytree(source, source.parent / name)
    path = runs.run_path(name) / "config.json"
    config = json.loads(path.read_text())
    config.update(fields)
    path.write_text(json.dumps(config))
    return name


@pytest.mark.parametrize("fields, words", [
    ({"epochs": "<a href='https://evil.example'>6</a>"}, "must be a whole number"),
    ({"data_root": "/"}, "outside the lab's data root"),
])
def test_a_hand_edited_config_is_refused_with_a_sentence(ui_lab, finished_run, fields, words):
    name = hand_edited_copy(finished_run, "hand-edited", **fields)
    try:
        at = open_page("predictions", run=name)
        assert not at.exception
        errors = [e.value for e in at.error]
        assert errors and "cannot be read" in errors[0], errors
        assert any(words in c.value.replace("\\", "") for c in at.caption), [c.value for c in at.caption]
        assert not any("evil.example'>" in m.value for m in at.markdown)
    finally:
        shutil.rmtree(runs.run_path(name), ignore_errors=True)


def test_a_thousand_class_confusion_matrix_stays_small():
    """1,000 classes made a 28 MB figure that Chromium took minutes to draw: above a
    few dozen classes the matrix shows those with the most mistakes."""
    import time

    import numpy as np

    from ui.charts import CONFUSION_CLASSES, confusion_classes, confusion_figure

    rng = np.random.default_rng(0)
    n = 1000
    matrix = np.diag(rng.integers(5, 20, n))
    matrix[7, 3] = matrix[500, 999] = 40  # two pairs confused far more than any other
    classes = [f"<b>class {i}</b>" for i in range(n)]
    start = time.perf_counter()
    shown = confusion_classes(matrix)
    spec = confusion_figure(matrix, classes, shown).to_json()
    assert time.perf_counter() - start < 5
    assert len(shown) == CONFUSION_CLASSES and {3, 7, 500, 999} <= set(shown)
    assert len(spec) < 200_000, len(spec)
    names = json.loads(spec)["data"][0]["x"]
    assert "&lt;b&gt;class 7&lt;/b&gt;" in names and "<b>class 7</b>" not in names  # plotly reads HTML: escaped
    assert confusion_classes(matrix[:10, :10]) == list(range(10))


def test_on_a_gpu_the_page_suggests_the_batch_that_fills_it(ui_lab, monkeypatch):
    """Batch sizes that fill a GPU: the Train page says how large a batch fits in its free memory."""
    import torch

    from alexnet_core import device
    from ui import cached

    monkeypatch.setattr(device, "resolve_device", lambda name="auto", gpu=None: torch.device("cuda", 0))
    monkeypatch.setattr(device, "bf16_supported", lambda dev: True)  # an H100, say
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev=None: (80 * 2**30, 141 * 2**30))
    at = open_page("train", variant="paper", size="227")
    at.radio(key="quick:what").set_value("sidebar").run()
    no_errors(at)
    config = get_recipe("quick").make_config(variant="paper", dataset="digits", input_size=227)
    fits = cached.largest_batch(config, cached.MEMORY_SHARE * 80 * 1024)
    assert any(f"A batch of up to about {fits:,} fits in this GPU's 80 GB free" in c.value for c in at.caption), \
        [c.value for c in at.caption]


def test_a_batch_that_cannot_fit_in_memory_is_refused_with_a_sentence(ui_lab):
    from alexnet_core.device import available_memory_mb
    from ui import cached

    at = open_page("train", variant="paper", size="227")
    at.radio(key="quick:what").set_value("sidebar").run()
    at.number_input(key="quick:batch_size").set_value(4096).run()
    config = get_recipe("quick").make_config(variant="paper", dataset="digits", input_size=227, batch_size=4096)
    free = available_memory_mb()
    if free is None or cached.training_memory_mb(config) <= cached.MEMORY_SHARE * free:
        pytest.skip("this machine has the memory for the paper net at 227 with a batch of 4,096")
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("A batch of 4096 needs about" in e and "Choose a batch size of at most" in e for e in errors), errors
    fits = cached.largest_batch(config, cached.MEMORY_SHARE * free)
    assert 0 < fits < 4096
    assert cached.training_memory_mb(config, fits) <= cached.MEMORY_SHARE * free < cached.training_memory_mb(config, fits + 1)
    assert at.button(key="launch").disabled


def test_a_long_run_keeps_a_bounded_number_of_steps_for_its_chart(ui_lab, finished_run, monkeypatch):
    """A 200 MB metrics file kept 1.9 GB in the server: past MAX_STEP_ROWS step events,
    every other one is dropped, and every epoch event stays."""
    from ui import live

    copy = "many-steps"
    shutil.copytree(runs.run_path(finished_run), runs.run_path(finished_run).parent / copy)
    try:
        path = runs.run_path(copy) / "metrics.jsonl"
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        steps = [e for e in events if e.get("type") == "step"]
        epochs = [e for e in events if e.get("type") == "epoch"]
        monkeypatch.setattr(live, "MAX_STEP_ROWS", len(steps) * 2)
        with open(path, "a") as f:  # the same steps again, four times over
            for _ in range(4):
                f.write("".join(json.dumps(e) + "\n" for e in steps))
        # Read in bounded chunks, and once thinned, the step lines to be dropped are not parsed.
        chunk = max(1024, path.stat().st_size // 8)
        monkeypatch.setattr(live, "READ_CHUNK_BYTES", chunk)
        reads, read_metrics = [], runs.read_metrics
        monkeypatch.setattr(runs, "read_metrics", lambda *a, **k: reads.append(read_metrics(*a, **k)) or reads[-1])
        metrics = live.RunMetrics(copy, str(runs.run_path(copy).parent))
        metrics.snapshot()
        assert len(reads) > 4
        assert all(offset - before <= chunk for (_, before), (_, offset) in zip([([], 0)] + reads, reads))
        assert sum(1 for new, _ in reads for e in new if e.get("type") == "step") < 5 * len(steps)
        kept = [r for r in metrics.rows if r.get("type") == "step"]
        assert metrics.steps == len(kept) <= live.MAX_STEP_ROWS
        assert len(kept) >= live.MAX_STEP_ROWS // 2
        assert [r for r in metrics.rows if r.get("type") == "epoch"] == epochs
    finally:
        shutil.rmtree(runs.run_path(copy), ignore_errors=True)


def test_a_finished_as_written_run_stands_beside_its_posts_figure(ui_lab, finished_run):
    """A run of a post's recipe as written says what the post reported and what it got."""
    copy = "as-written-copy"
    shutil.copytree(runs.run_path(finished_run), runs.run_path(finished_run).parent / copy)
    config = runs.run_path(copy) / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"recipe": "lrn-cifar10-as-written"}))
    try:
        at = open_page("train", run=copy)
        no_errors(at)
        acc = 100 * runs.status(copy)["test_acc"]
        assert any(c.value.startswith("The LRN post reported 82") and md(f"this run: {acc:.2f}%") in c.value
                   for c in at.caption), [c.value for c in at.caption]
    finally:
        shutil.rmtree(runs.run_path(copy), ignore_errors=True)


def test_a_damaged_run_is_shown_with_its_reason_and_can_be_deleted(ui_lab, finished_run):
    """One bad status.json (a pid as text) broke every page: that run alone reads
    damaged, with a sentence, and the Runs page deletes it."""
    name = "damaged-copy"
    shutil.copytree(runs.run_path(finished_run), runs.run_path(finished_run).parent / name)
    status = runs.run_path(name) / "status.json"
    status.write_text(status.read_text().replace(f'"pid": {runs.status(finished_run)["pid"]}', '"pid": "1234"'))
    try:
        for page in ("runs", "predictions", "model"):
            no_errors(open_page(page))
        at = open_page("runs")
        assert not at.exception
        assert any("damaged" in w.value and "pid" in w.value for w in at.warning), [w.value for w in at.warning]
        assert f"<td>{finished_run}</td>" in at.html[0].value  # the other runs are unaffected
        open_files(at)
        at.selectbox(key="files_run").set_value(name).run()
        assert any("damaged" in e.value for e in at.error)
        assert not at.get("download_button")
        at.button(key="ask_delete").click().run()
        at.button(key="yes_delete").click().run()
        assert not runs.run_path(name).exists()
        at = open_page("train", run=name)
        assert not at.exception
    finally:
        shutil.rmtree(runs.run_path(name), ignore_errors=True)


def test_a_queued_run_says_what_it_waits_for_and_can_be_cancelled(ui_lab):
    from alexnet_core.config import TrainConfig

    long = TrainConfig(variant="mnist", dataset="digits", input_size=28, epochs=200, batch_size=32)
    first = runs.launch(long)
    second = runs.launch(long.replace(seed=1))
    try:
        deadline = time.monotonic() + 120
        while runs.status(first)["state"] != "running":  # a file's state, not the page's
            assert time.monotonic() < deadline, runs.status(first)
            time.sleep(0.2)
        assert runs.status(second)["state"] == "queued"
        at = open_page("train", run=second)
        no_errors(at)
        [line] = at.get("progress")
        assert line.proto.text.startswith(f"waiting for {shown_as(first)}: epoch "), line.proto.text
        at.button(key=f"cancel:{second}").click().run()
        no_errors(at)
        assert runs.status(second)["state"] == "stopped"
        assert f"{md(shown_as(second))} is **stopped**" in texts(at)
    finally:
        for run_id in (second, first):
            runs.stop(run_id)
        runs.wait(first, timeout=120)


def test_the_form_trains_the_sidebars_choice_when_asked(ui_lab):
    at = open_page("train", variant="cifar")
    no_errors(at)
    assert "Trains **mnist** on **digits** at **12x12**." in texts(at)  # the quick recipe's
    at.radio(key="quick:what").set_value("sidebar").run()
    no_errors(at)
    assert "Trains **cifar** on **digits** at **32x32**." in texts(at)


def test_a_dataset_that_downloads_can_be_launched_and_says_so(ui_lab, tmp_path, monkeypatch):
    """The page promised a download on first load but kept Launch disabled until the files were here."""
    monkeypatch.setenv("ALEXNET_LAB_DATA", str(tmp_path))  # no CIFAR-10 files here
    at = open_page("train", variant="cifar", dataset="cifar10")  # our cifar recipe, for that pair
    no_errors(at)
    assert any("the run downloads them first" in i.value for i in at.info), [i.value for i in at.info]
    assert not at.button(key="launch").disabled


def test_a_folder_with_one_image_per_class_cannot_launch(ui_lab, tmp_path, monkeypatch):
    """One image per class was accepted, then Predictions read nan% and Launch made a
    failed run: the Train page says why and keeps Launch disabled."""
    from tests import fixtures

    monkeypatch.setenv("ALEXNET_LAB_DATA", str(tmp_path))
    fixtures.write_image_folder(tmp_path / "tiny", {"cats": 1, "dogs": 1})
    at = open_page("train", dataset="folder", folder="tiny")
    at.radio(key="quick:what").set_value("sidebar").run()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("cannot train yet" in e and "at least 2 images" in e for e in errors), errors
    assert at.button(key="launch").disabled


def test_predictions_refuse_a_folder_edited_since_the_run(ui_lab, tmp_path, monkeypatch):
    """Images added to a folder after training made tiles show images of another class
    as the run's (2 of 6 tiles): a run records a fingerprint of its test split, and the
    page refuses, with a sentence, to show another folder's images as its own."""
    from tests import fixtures
    from ui import cached

    monkeypatch.setenv("ALEXNET_LAB_DATA", str(tmp_path))
    cached._load_dataset.clear()  # another test's "pets" folder, under another data root, may be cached
    cached.test_fingerprint.clear()
    fixtures.write_image_folder(tmp_path / "pets", {"cats": 30, "dogs": 30})
    config = get_recipe("quick").make_config(dataset="folder", folder="pets", epochs=1, batch_size=16)
    run_id = runs.launch(config)
    assert runs.wait(run_id, timeout=240)["state"] == "finished"
    assert runs.status(run_id)["test_fingerprint"]
    at = open_page("predictions", run=run_id)
    no_errors(at)  # the folder as it was trained on: its tiles
    fixtures.write_image_folder(tmp_path / "pets", {"cats": 35, "dogs": 30})  # five more cats
    cached._load_dataset.clear()  # as after a restart of the server
    cached.test_fingerprint.clear()
    at = open_page("predictions", run=run_id)
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    assert any("not the ones this run was tested on" in e for e in errors), errors
    assert not [m for m in at.markdown if "predicted" in m.value and "loss" in m.value], "no tile is shown"


@pytest.mark.parametrize("status, words", [
    ({"state": "running", "epoch": 0, "epochs": 6, "batch": 5}, "epoch 1 of 6"),
    ({"state": "stopped", "epoch": 0, "epochs": 6, "batch": 5}, "epoch 1 of 6"),  # it read "epoch 0 of 6"
    ({"state": "stopped", "epoch": 2, "epochs": 6, "batch": 0}, "after epoch 2 of 6"),
    ({"state": "finished", "epoch": 6, "epochs": 6, "batch": 0}, "epoch 6 of 6"),
])
def test_the_status_line_names_the_epoch_a_run_was_in(status, words):
    from ui.live import progress_text

    assert progress_text(status)[1].startswith(words)


def test_charts_before_the_first_step_say_what_is_coming():
    import pandas as pd

    from ui.charts import accuracy_figure, loss_figure

    empty = pd.DataFrame()
    for fig, words in ((loss_figure(empty, empty), "first steps"), (accuracy_figure(empty), "epoch 1 ends")):
        assert not fig.data and words in fig.layout.annotations[0].text
        assert tuple(fig.layout.xaxis.range) == (0, 1)


def test_a_variants_description_is_shown_as_written(ui_lab):
    """The cifar description read "a 25622 classifier input": Markdown ate 256*2*2."""
    at = open_page("model", variant="cifar")
    no_errors(at)
    assert "256*2*2" in variants.get_spec("cifar").description
    shown = [c.value for c in at.sidebar.caption] + [m.value for m in at.markdown]
    assert any("256\\*2\\*2" in text for text in shown), shown

"""Predictions: what a run gets right and wrong, image by image."""

import html
import math

import pandas as pd
import streamlit as st
import torch

from alexnet_core import anatomy, insight, predict, runs
from ui import cached, choice
from ui.charts import CONFUSION_CLASSES, bars_figure, confusion_classes, confusion_figure, labels
from ui.formatting import error_ui, md

TABS = ["Test images", "Confusion matrix", "Your own image"]
ANY = -1
GRID_COLUMNS = 6
# Two rows a page: a class talks over a few mistakes at a time.
PER_PAGE_OPTIONS = [12, 24, 48, 64, 96]
SQUARE_PAGE = 64  # drawn 8x8, as the grids in the write-ups are
# A tile's large view: about this many pixels a side, nearest-neighbour, so each pixel
# of the test image shows as a sharp square on a projector.
LARGE_TILE_PX = 448
# Every widget of the view is bound to the URL (its key is the query parameter), so a
# copied link opens the same run, epoch, filters, order and page; Streamlit drops a
# value the widget cannot take (an epoch or a class the run does not have).
BOUND = {"bind": "query-params"}


def first_page() -> None:
    """A filter changed: back to the first page of what it now matches (in a callback,
    so the pager, bound to the URL, is drawn with it)."""
    st.session_state["grid_page"] = 1


def show_cell(true_index: int, pred_index: int) -> None:
    """Filter the grid to one confusion-matrix cell and switch to it (a callback)."""
    st.session_state["true_class"] = int(true_index)
    st.session_state["pred_class"] = int(pred_index)
    st.session_state["only_wrong"] = int(true_index) != int(pred_index)
    st.session_state["pred_view"] = TABS[0]
    first_page()


def clear_filters() -> None:
    st.session_state["true_class"] = ANY
    st.session_state["pred_class"] = ANY
    first_page()


def tile_text(row, classes: list[str], ok: bool) -> str:
    colour = "#006b4f" if ok else "#a83a00"
    mark = "✓" if ok else "✗"
    return (
        f"<div style='line-height:1.3;font-size:0.95rem;margin-top:-0.6rem'>"
        f"<b style='color:{colour}'>{mark}</b> predicted <b style='color:{colour}'>{html.escape(classes[int(row.pred)])}</b> ({row.p_pred:.0%})<br>"
        f"true: <b>{html.escape(classes[int(row.label)])}</b> ({row.p_true:.0%})<br>"
        # a near-certain right answer's loss can be -0.0 or -1e-7 in float32: not "-0.00"
        f"loss {max(0.0, float(row.loss)):.2f} · #{int(row.index)}</div>"
    )


@st.dialog("A test image, large", width="medium")
def large_tile_ui(image, row, classes: list[str]) -> None:
    """One tile as large as a projector shows it, each of its pixels a sharp square (the
    browser's own full-screen view blurred a 28-pixel image and lost the labels)."""
    ok = int(row.label) == int(row.pred)
    st.image(predict.tile_image(image, ok, target=LARGE_TILE_PX), width="content")
    verdict = ":green[**right**]" if ok else ":red[**wrong**]"
    st.markdown(f"Predicted **{md(classes[int(row.pred)])}** with {row.p_pred:.0%} confidence: {verdict}.  \n"
                f"True class **{md(classes[int(row.label)])}**, given {row.p_true:.0%}.  \n"
                f"Loss {max(0.0, float(row.loss)):.2f}; test image #{int(row.index)} of this dataset.")


HEATMAPS = ["the class it said", "the true class"]


def grid_ui(preds: pd.DataFrame, ds, classes: list[str], run_id: str, best_epoch: bool) -> None:
    """Filters, a pager over every matching test image, and the tiles (with where the
    network looked, when the shown epoch is the one whose weights were kept)."""
    options = [ANY, *range(len(classes))]
    label = lambda i: "any class" if i == ANY else f"{i}: {classes[i]}"  # noqa: E731
    c1, c2, c3, c4 = st.columns([2, 2, 0.9, 2.3], vertical_alignment="bottom")
    true_class = c1.selectbox("True class", options, format_func=label, key="true_class", on_change=first_page, **BOUND)
    pred_class = c2.selectbox("Predicted class", options, format_func=label, key="pred_class", on_change=first_page,
                              **BOUND)
    c3.button("Clear", on_click=clear_filters, help="Show every class again.", width="stretch")
    only_wrong = c4.toggle("Misclassified only", value=True, key="only_wrong", on_change=first_page, **BOUND)
    by_loss = c4.toggle("Top losses first", value=True, key="by_loss", on_change=first_page,
                        help="Sort by loss, largest first; off: by dataset index.", **BOUND)
    shown = predict.filter_predictions(
        preds, misclassified=only_wrong, true_class=None if true_class == ANY else true_class,
        pred_class=None if pred_class == ANY else pred_class, sort_by_loss=by_loss,
    )
    if shown.empty:
        st.info("No test image matches these filters.", icon=":material/search_off:")
        return
    pager = st.container(horizontal=True, horizontal_alignment="distribute", vertical_alignment="center")
    tiles = st.container()
    # under the tiles (rarely changed), but read before them
    per_page = st.selectbox("Images per page", PER_PAGE_OPTIONS, key="per_page", on_change=first_page, width=180,
                            **BOUND)
    pages = max(1, math.ceil(len(shown) / per_page))
    with pager:
        matching = st.empty()
        heat = st.segmented_control(
            "Where it looked", HEATMAPS, key="heat", label_visibility="collapsed", disabled=not best_epoch,
            help="A Grad-CAM heatmap over each tile: where the last convolution found evidence for that class, "
                 "with the run's best weights. " + ("" if best_epoch else "Choose the best epoch to see it."))
        # a page the filters no longer reach (from a link, say) falls back to the first;
        # a fixed width: sized to its content in a row, it showed page 1 of 2 with no 2
        page = st.pagination(pages, key="grid_page", max_visible_pages=5, width=300, **BOUND)
    first, last = (page - 1) * per_page, min(page * per_page, len(shown))
    matching.markdown(f"Images **{first + 1}–{last}** of **{len(shown):,}** matching", width="content")
    rows = list(shown.iloc[first:last].itertuples(index=False))
    cams = None
    if heat and best_epoch:
        try:
            cams = cached.grad_cams(run_id, shown.iloc[first:last], ds)[:, HEATMAPS.index(heat)]
        except Exception as exc:
            error_ui("The heatmaps could not be computed with this run's weights.", exc)
    columns = 8 if per_page == SQUARE_PAGE else GRID_COLUMNS
    for start in range(0, len(rows), columns):
        for i, (col, row) in enumerate(zip(tiles.columns(columns), rows[start: start + columns]), start):
            ok = int(row.label) == int(row.pred)
            image = ds.test_x[int(row.index)]
            col.image(predict.tile_image(image, ok, target=128) if cams is None else
                      insight.heat_tile(image, cams[i], ok, target=128), width="stretch")
            col.markdown(tile_text(row, classes, ok), unsafe_allow_html=True)
            if col.button("Enlarge", key=f"large:{int(row.index)}", icon=":material/zoom_in:", type="tertiary",
                          help="This image large, pixel by pixel, with its labels."):
                large_tile_ui(image, row, classes)
            col.page_link(choice.LEARNED, label="Closest", icon=":material/travel_explore:",
                          query_params={"run": run_id, "image": int(row.index)},
                          help="The training images closest to this one in the last hidden layer: "
                               "what the network thought it looked like.")


def on_matrix_click() -> None:
    event = st.session_state.get("matrix_click") or {}
    for point in (event.get("selection") or {}).get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, dict):  # the browser may send the pair as {"0": t, "1": p}
            custom = [custom[k] for k in sorted(custom, key=int)]
        try:
            show_cell(int(custom[0]), int(custom[1]))
        except (TypeError, ValueError, KeyError, IndexError):
            continue  # a point of the heatmap itself: nothing to filter by
        return


def confusion_ui(preds: pd.DataFrame, classes: list[str]) -> None:
    matrix = predict.confusion_matrix(preds, len(classes))
    shown = confusion_classes(matrix)
    left, right = st.columns([2, 1])
    with left:
        st.caption("Rows: the true class; columns: the network's answer. Click a cell for its images."
                   + ("" if len(shown) == len(classes) else
                      f" Of {len(classes)} classes, the {len(shown)} with the most mistakes; hover for counts."))
        # no toolbar: zooming a matrix only loses rows, and its strip took the cells' room
        st.plotly_chart(confusion_figure(matrix, classes, shown), width="stretch", key="matrix_click", theme=None,
                        on_select=on_matrix_click, selection_mode="points", config={"displayModeBar": False})
    with right:
        st.markdown("##### Most confused pairs")
        st.caption("How many times, true → predicted. Click one to see its images.")
        pairs = predict.most_confused(preds, classes, k=8)
        if pairs.empty:
            st.success("No mistakes at this epoch.", icon=":material/target:")
        for row in pairs.itertuples(index=False):
            # the count first: a long class name is cut at the end, never the number
            st.button(f"**{row.count:,}** · {md(row.true)} → {md(row.predicted)}",
                      key=f"pair:{row.true_index}:{row.pred_index}", on_click=show_cell,
                      args=(row.true_index, row.pred_index), width="stretch",
                      help=f"{row.count:,} test images of {md(row.true)} taken for {md(row.predicted)}.")
    acc = predict.per_class_accuracy(preds, classes).sort_values("accuracy", kind="stable")
    title = ("Per-class accuracy" if len(acc) <= CONFUSION_CLASSES
             else f"The {CONFUSION_CLASSES} lowest per-class accuracies")
    acc = acc.head(CONFUSION_CLASSES)
    acc["percent"] = acc["accuracy"] * 100
    hover = [f"{c} of {t} right" for c, t in zip(acc["correct"], acc["total"])]
    st.plotly_chart(bars_figure(acc, "percent", "class", title, "accuracy (%)",
                                height=min(900, 120 + 32 * len(acc)), hover=hover),
                    width="stretch", key="per_class", theme=None)


def upload_ui(run_id: str, ds, config) -> None:
    """Classify an uploaded picture with the run's best weights; show its top 5 and feature maps."""
    st.markdown(
        f"Upload a picture and see what run **{md(choice.run_names(frame).get(run_id, run_id))}** "
        f"thinks it is. It is turned into a "
        f"{ds.channels}-channel {ds.image_size}x{ds.image_size} image like the {config.dataset} ones, "
        f"then resized to {config.resolved_input_size}x{config.resolved_input_size}."
    )
    # Any file is taken, so that one that is not a picture gets a sentence (load_image's),
    # not just the uploader's red mark.
    upload = st.file_uploader("Picture (PNG, JPEG, GIF, BMP, WebP, TIFF)", key="upload")
    if upload is None:
        st.caption(f"At most {st.get_option('server.maxUploadSize')} MB: the browser refuses a larger file "
                   "before it reaches the lab, with a red mark in the box above.")
        return
    try:
        image = predict.load_image(upload.getvalue())
    except predict.ImageError as exc:
        error_ui(str(exc))
        return
    try:
        model, run_config = cached.run_model(run_id)
    except Exception as exc:
        error_ui(f"The weights of run {run_id} could not be loaded.", exc)
        return
    invert = st.checkbox(
        "Invert the colours (a dark drawing on light paper, for a net trained on light-on-dark images)",
        value=predict.suggest_invert(image, ds.mean), key=f"invert:{upload.file_id}",
    )
    try:
        stored = predict.image_to_uint8(image, channels=ds.channels, image_size=ds.image_size, invert=invert)
        x = predict.prepare_image(
            image, channels=ds.channels, image_size=ds.image_size, in_channels=predict.model_in_channels(model),
            input_size=run_config.resolved_input_size, mean=ds.mean, std=ds.std, invert=invert,
        )
        top = predict.top_k(model, x, list(ds.classes), k=5)
        maps = anatomy.feature_maps(model, x[0]).maps
    except Exception as exc:
        error_ui("This picture could not be classified.", exc)
        return
    a, b, c = st.columns([1, 1, 2], gap="large")
    a.image(image, caption=f"your picture ({image.width}x{image.height})", width="stretch")
    b.image(predict.tile_image(stored[0], None, target=192, border=2), caption="as the network sees it", width="stretch")
    if b.toggle("Where it looked", key="upload_heat", help="A Grad-CAM heatmap: where the last convolution "
                "found evidence for its best guess."):
        try:
            said = list(ds.classes).index(top["class"].iloc[0])
            cam = insight.grad_cam(model, x, torch.tensor([said]))[0]
            b.image(insight.heat_tile(stored[0], cam, None, target=192), width="stretch",
                    caption=f"where it looked for {md(str(top['class'].iloc[0]))}")
        except Exception as exc:
            error_ui("The heatmap could not be computed.", exc)
    shown = top.assign(percent=top["probability"] * 100)[::-1]
    best = f"Best guess: {labels([top['class'].iloc[0]])[0]} ({100 * top['probability'].iloc[0]:.0f}%)"
    c.plotly_chart(bars_figure(shown, "percent", "class", best, "probability (%)", height=330),
                   width="stretch", key="top5", theme=None)
    st.markdown("##### Its feature maps (each conv layer's channels after ReLU)")
    named = anatomy.layer_names(model)
    items = list(maps.items())
    for start in range(0, len(items), 2):
        for col, (name, fmap) in zip(st.columns(2), items[start: start + 2]):
            c_, h, w = fmap.shape[-3:]
            col.image(predict.channel_grid(fmap, max_channels=64, cell=40), width="stretch",
                      caption=f"conv{named[name].removeprefix('relu')} after its ReLU ({name}): "
                              f"{c_} channels of {h}x{w}"
                              + (" (first 64)" if c_ > 64 else ""))


# The title and what is shown on one row, the choice and its figures on the next: the
# gallery's first row fits a 1280x800 projector's first screen.
head = st.columns([1, 1.5], vertical_alignment="bottom")
head[0].title("Predictions")

frame = cached.list_runs()
ids = choice.runs_with_predictions_or_stop(
    frame, cached.has_predictions, "No run has predictions yet: a run saves them at the end of every epoch. "
    "Launch one on the Train page (the quick demo on Home takes seconds).")

pick = st.columns([2.3, 1, 1, 1.1], vertical_alignment="bottom")
with pick[0]:
    run_id = choice.pick_run_ui(ids, frame)
try:
    epochs = runs.prediction_epochs(run_id)
    config = cached.run_config(run_id)
except Exception as exc:
    error_ui(f"Run {run_id} cannot be read.", exc)
    st.stop()
if st.session_state.get("_epoch_of") not in (None, run_id):
    st.session_state["epoch"] = epochs[-1]  # another run: its newest epoch, not the old run's number
st.session_state["_epoch_of"] = run_id
epoch = pick[1].selectbox(f"Epoch (of {config.epochs})", epochs[::-1], key="epoch",
                          help="Predictions are saved after every epoch; the newest is first.", **BOUND)

try:
    preds = cached.predictions(run_id, epoch)
    ds = cached.run_dataset(config)
except Exception as exc:
    error_ui(f"The test images of {config.dataset} are needed to show this run's predictions, "
             "and they could not be loaded.", exc)
    st.stop()
status = runs.status(run_id)
if cached.data_changed(config, status.get("test_fingerprint")):
    error_ui(f"The test images of {config.dataset} here are not the ones this run was tested on: the data "
             "changed since (images added, removed or renamed, or a class gone). Its predictions would show "
             "other images as its own. Train again on the images as they are now.")
    st.stop()
if len(preds) and int(preds["index"].max()) >= len(ds.test_y):
    error_ui(f"These predictions name test images that {config.dataset} does not have here "
             "(the dataset changed since the run). Train again to see its images.")
    st.stop()

if preds.empty:
    st.info("This run's test split is empty, so there is nothing to show: a dataset needs test images "
            "(an image folder, at least a few per class).", icon=":material/search_off:")
    st.stop()
classes = list(ds.classes)
wrong = int((preds["label"] != preds["pred"]).sum())
size = config.resolved_input_size
head[1].caption(f"{md(config.variant)} on {md(config.dataset)} at {size}x{size}, after epoch {epoch} of "
                f"{config.epochs}: {len(preds):,} test images.")
pick[2].metric("Test accuracy", f"{100 * predict.accuracy(preds):.1f}%")
pick[3].metric("Misclassified", f"{wrong:,}", help=f"{wrong:,} of the {len(preds):,} test images.")

images_tab, matrix_tab, upload_tab = st.tabs(TABS, key="pred_view", **BOUND)
if images_tab.open:
    with images_tab:
        grid_ui(preds, ds, classes, run_id, epoch == status.get("best_epoch"))
if matrix_tab.open:
    with matrix_tab:
        confusion_ui(preds, classes)
if upload_tab.open:
    with upload_tab:
        upload_ui(run_id, ds, config)

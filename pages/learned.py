"""What it learned: the first layer's filters epoch by epoch, the training images closest
to a test image, where it looked, a map of the test set and what flipped between epochs
(the 2012 paper's Figures 3 and 4, for any run). ``?run=ID&image=N`` opens a test image's
closest training images."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from alexnet_core import insight, predict, runs
from ui import cached, choice
from ui.charts import labels, styled
from ui.formatting import error_ui, format_duration, md

TABS = ["Filters", "Closest training images", "Where it looked", "Map of the test set", "What flipped"]
FILTERS, CLOSEST, LOOKED, MAP, FLIPPED = TABS
NEIGHBOURS = 8
COLUMNS = 6
PER_PAGE = 24  # a page of tiles: its heatmaps come from one batched pass
STRIP_FILTERS = 16
GL_POINTS = 2000  # above this many points the map draws with WebGL: SVG slowed the browser
# Ten distinct class colours (Tableau 10), none black: the misclassified crosses are. The
# lab's eight theme colours gave two Fashion-MNIST classes the colours of two others.
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"]


# --------------------------------------------------------------------------- background work

@dataclass
class Job:
    """Work running in a thread of the server (no st.* call in it): every session asking
    for the same thing shares it, and it goes on through reruns and page switches."""

    fraction: float = 0.0
    text: str = "Starting"
    started: float = field(default_factory=time.monotonic)
    finished: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


@st.cache_resource
def _jobs() -> tuple[threading.Lock, dict]:
    return threading.Lock(), {}


def job_for(key: tuple, work) -> Job:
    """The job for ``key``, started with ``work(progress)`` unless it runs or ran already
    (a failed one stays, with its error, until ``forget_job``)."""
    lock, jobs = _jobs()
    with lock:
        job = jobs.get(key)
        if job is None:
            for old in [k for k, j in jobs.items() if j.finished.is_set() and j.error is None]:
                del jobs[old]  # their results are in the run folder now
            job = jobs[key] = Job()

            def progress(fraction: float, text: str) -> None:
                job.fraction, job.text = fraction, text

            def run() -> None:
                try:
                    job.result = work(progress)
                except BaseException as exc:  # shown by the page that asks next
                    job.error = exc
                finally:
                    job.finished.set()

            threading.Thread(target=run, name=f"learned-{key[0]}", daemon=True).start()
            job.finished.wait(0.3)  # what is only read from the run folder is there on this run
    return job


def forget_job(key: tuple) -> None:
    lock, jobs = _jobs()
    with lock:
        jobs.pop(key, None)


def failed_ui(key: tuple, job: Job, message: str) -> None:
    error_ui(message, job.error)
    st.button("Try again", key=f"retry:{key[0]}", on_click=forget_job, args=(key,), icon=":material/refresh:")


@st.fragment(run_every=1.0)
def progress_ui(key: tuple) -> None:
    """The job's progress, refreshed every second; the whole page again once it ends."""
    job = _jobs()[1].get(key)
    if job is None or job.finished.is_set():
        st.rerun(scope="app")
    elapsed = time.monotonic() - job.started
    left = f", about {format_duration(elapsed * (1 - job.fraction) / job.fraction)} to go" if job.fraction > 0.05 else ""
    st.progress(min(max(job.fraction, 0.0), 1.0), text=f"{md(job.text)} ({format_duration(elapsed)} so far{left})")


# --------------------------------------------------------------------------- cached reads

@st.cache_resource(show_spinner=False, max_entries=2)
def _kept_features(run_dir: str, stamp: tuple, ds_key: tuple, _ds) -> insight.Features:
    features = insight.run_features(run_dir, _ds)
    features.train_norms  # computed once here: every lookup needs them
    return features


def features_ui(run_dir: Path, ds, ds_key: tuple) -> insight.Features | None:
    """The run's features (best.pt), computing them in the background with progress the
    first time; None (with the reason or the progress shown) until they are ready."""
    try:
        stamp = insight.checkpoint_stamp(run_dir)
    except OSError:
        st.info("This run has no saved weights (best.pt) yet: it saves them at the end of its first epoch.",
                icon=":material/hourglass_top:")
        return None
    key = ("features", str(run_dir), stamp)
    if insight.features_ready(run_dir, ds):
        forget_job(key)
        return _kept_features(str(run_dir), stamp, ds_key, ds)
    job = job_for(key, lambda progress: insight.run_features(run_dir, ds, progress=progress))
    if job.error is not None:
        failed_ui(key, job, "The last hidden layer of this run's images could not be computed.")
        return None
    if job.finished.is_set():
        return job.result  # a run folder that cannot be written keeps them in memory only
    st.info(f"The closest training images and the map need the last hidden layer of all {len(ds.train_y):,} "
            f"training and {len(ds.test_y):,} test images. They are computed once for this checkpoint and kept "
            "in the run folder; every later lookup is instant.", icon=":material/hourglass_top:")
    progress_ui(key)
    return None


@st.cache_data(show_spinner="Placing the test images by PCA…", max_entries=8)
def _pca(run_dir: str, stamp: tuple, _features) -> np.ndarray:
    return insight.project(_features.test, "pca")


# --------------------------------------------------------------------------- tiles

def tile_caption(row, classes: list[str]) -> str:
    ok = int(row.label) == int(row.pred)
    said = f"{'✓' if ok else '✗'} said **{md(classes[int(row.pred)])}** ({row.p_pred:.0%})"
    return said + ("" if ok else f", true **{md(classes[int(row.label)])}**") + f" · #{int(row.index)}"


def open_closest(index: int) -> None:
    """A callback: show test image ``index``'s closest training images."""
    st.session_state["learned_image"] = int(index)
    st.session_state["learned_view"] = CLOSEST


def tiles_ui(rows: pd.DataFrame, ds, classes: list[str], key: str, *, cams: np.ndarray | None = None,
             caption=tile_caption) -> None:
    """A grid of test-image tiles (with their heatmaps when ``cams`` is given), each with its
    caption and a button to its closest training images."""
    items = list(rows.itertuples(index=False))
    for start in range(0, len(items), COLUMNS):
        for i, (col, row) in enumerate(zip(st.columns(COLUMNS), items[start : start + COLUMNS]), start):
            ok = int(row.label) == int(row.pred)
            x = ds.test_x[int(row.index)]
            tile = predict.tile_image(x, ok, target=128) if cams is None else insight.heat_tile(x, cams[i], ok, target=128)
            col.image(tile, width="stretch")
            col.caption(caption(row, classes))
            col.button("Closest", key=f"{key}:{int(row.index)}", on_click=open_closest, args=(int(row.index),),
                       icon=":material/travel_explore:", width="stretch",
                       help="The training images closest to this one in the last hidden layer (the paper's Figure 4).")


# --------------------------------------------------------------------------- the tabs

def filters_ui(run_id: str, run_dir: Path, ds) -> None:
    colour = ds.channels == 3
    epochs = insight.kernel_epochs(run_dir)
    if not epochs:
        old_run_filters_ui(run_id, ds, colour)
        return
    kernels = {}
    for e in epochs:
        try:
            kernels[e] = insight.load_kernels(run_dir, e)
        except ValueError as exc:
            st.warning(md(exc), icon=":material/broken_image:")
    epochs = list(kernels)
    if not epochs:
        return
    n, c, k, _ = kernels[epochs[-1]].shape
    st.markdown(f"Each tile is one of the first layer's **{n}** filters ({k}x{k}"
                + (", its three input channels as red, green and blue" if colour and c == 3 else ", grey") +
                "): the patterns the network looks for first. Mid-grey is a zero weight; each epoch is drawn on "
                "its own single scale, as the paper's Figure 3. Slide to watch them form.")
    epoch = epochs[-1]
    if len(epochs) > 1:
        epoch = st.select_slider("Epoch (0: the weights it started from)", options=epochs, value=epochs[-1],
                                 key=f"learned_filters:{run_id}")
    st.image(insight.kernel_grid(kernels[epoch], colour=colour), caption=f"conv1 after epoch {epoch}"
             if epoch else "conv1 at the start (random weights)")
    if len(epochs) > 1:
        with st.expander(f"Every epoch side by side (the first {min(n, STRIP_FILTERS)} filters)"):
            st.image([insight.kernel_grid(kernels[e], colour=colour, cell=28, columns=STRIP_FILTERS, count=STRIP_FILTERS)
                      for e in epochs], caption=[f"epoch {e}" for e in epochs])


def old_run_filters_ui(run_id: str, ds, colour: bool) -> None:
    st.info("This run was trained before the lab kept the first layer's filters after every epoch, so only "
            "its start and its last weights can be shown.", icon=":material/history:")
    try:
        start = cached.run_start_model(run_id, ds.num_classes)
        final, _ = cached.run_model(run_id, "last")
    except Exception as exc:
        error_ui("The start and last weights of this run could not be rebuilt.", exc)
        return
    a, b = st.columns(2)
    a.image(insight.kernel_grid(insight.conv1_kernels(start), colour=colour), caption="at the start (rebuilt from its seed)")
    b.image(insight.kernel_grid(insight.conv1_kernels(final), colour=colour), caption="its last weights (last.pt)")


def closest_ui(run_dir: Path, ds, ds_key: tuple, preds: pd.DataFrame, classes: list[str]) -> None:
    n = len(ds.test_y)
    a, b, _ = st.columns([1, 1, 2], vertical_alignment="bottom")
    index = int(a.number_input(f"Test image # (0 to {n - 1:,})", min_value=0, max_value=n - 1, step=1,
                               key="learned_image"))
    st.query_params["image"] = st.session_state["_learned_link"] = str(index)  # a link to what is shown
    wrong = preds["index"][(preds["label"] != preds["pred"]) & (preds["index"] > index)]
    b.button("Next misclassified", on_click=open_closest, args=(int(wrong.min()) if len(wrong) else index,),
             disabled=wrong.empty, icon=":material/skip_next:", width="stretch")
    features = features_ui(run_dir, ds, ds_key)
    if features is None:
        return
    row = preds.set_index("index").loc[index]
    truth, said = classes[int(row["label"])], classes[int(row["pred"])]
    found = features.closest(index, NEIGHBOURS, ds.train_y.numpy())
    left, right = st.columns([1, 4], gap="large")
    left.image(predict.tile_image(ds.test_x[index], truth == said, target=160), width="stretch")
    left.markdown(f"Test image **#{index}**: true **{md(truth)}**, the network said **{md(said)}** "
                  f"({row['p_pred']:.0%}).")
    same = int((found["label"] == int(row["pred"])).sum())
    with right:
        st.markdown(f"Its {len(found)} closest training images in the last hidden layer "
                    f"({features.train.shape[1]:,} values each; distance is Euclidean). "
                    f"**{same}** of them are **{md(said)}**, the class it said."
                    + ("" if truth == said else " That is what it thought this image looked like."))
        for start in range(0, len(found), 4):
            for col, hit in zip(st.columns(4), list(found.itertuples(index=False))[start : start + 4]):
                col.image(predict.tile_image(ds.train_x[int(hit.index)], int(hit.label) == int(row["label"]), target=128),
                          width="stretch")
                col.caption(f"**{md(classes[int(hit.label)])}** · distance {hit.distance:.2f} · training #{int(hit.index)}")
    st.caption(f"From the weights of epoch {features.epoch} (best.pt), computed once in "
               f"{format_duration(features.seconds)} and kept in the run folder. A green frame: the test image's "
               "true class; red: another class.")


def looked_ui(run_id: str, run_dir: Path, preds: pd.DataFrame, ds, classes: list[str]) -> None:
    c1, c2, c3, c4 = st.columns([1, 1.1, 1.9, 1], vertical_alignment="bottom")
    show = c1.toggle("Grad-CAM", value=True, key="learned_cam",
                     help="A heatmap over each image: the last convolution's channels, weighted by how much "
                          "they raise the class's score (Grad-CAM). Red: most.")
    only_wrong = c2.toggle("Wrong only", value=True, key="learned_wrong")
    target = c3.radio("Heatmap for", ["the class it said", "the true class"], horizontal=True, key="learned_target",
                      disabled=not show, help="On a misclassified image: where it saw its wrong answer, or where "
                                             "it looked for the right one.")
    shown = predict.filter_predictions(preds, misclassified=only_wrong, sort_by_loss=True)
    if shown.empty:
        st.success("No misclassified test image at this epoch.", icon=":material/target:")
        return
    pages = -(-len(shown) // PER_PAGE)
    page = c4.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1,
                           key=f"learned_page:{run_id}:{only_wrong}",
                           help=f"{PER_PAGE} images a page, the largest loss first.")
    rows = shown.iloc[(page - 1) * PER_PAGE : page * PER_PAGE]
    cams = None
    if show:
        try:
            both = cached.grad_cams(run_id, rows, ds)
        except Exception as exc:
            error_ui("The heatmaps could not be computed with this run's weights.", exc)
        else:
            cams = both[:, 0 if target == "the class it said" else 1]
    tiles_ui(rows, ds, classes, "learned_looked", cams=cams)


def map_ui(run_dir: Path, ds, ds_key: tuple, preds: pd.DataFrame, classes: list[str]) -> None:
    method = st.radio("Projection", ["PCA", "t-SNE"], horizontal=True, key="learned_projection",
                      help="PCA: the two directions along which the images differ most (instant). t-SNE: keeps "
                           "each image near its nearest neighbours (scikit-learn; about a minute the first time "
                           "for 10,000 images, then kept in the run folder).")
    features = features_ui(run_dir, ds, ds_key)
    if features is None:
        return
    if method == "PCA":
        xy = _pca(str(run_dir), features.stamp, features)
    else:
        key = ("tsne", str(run_dir), features.stamp)
        job = job_for(key, lambda progress: insight.test_map(features, "tsne", progress))
        if job.error is not None:
            failed_ui(key, job, "The t-SNE map could not be computed.")
            return
        if not job.finished.is_set():
            progress_ui(key)
            return
        xy = job.result
    by_index = preds.set_index("index")
    points = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "index": np.arange(len(xy))})
    points = points[points["index"].isin(by_index.index)].join(by_index[["label", "pred"]], on="index")
    st.caption("Each point is a test image, placed by its last hidden layer; colour: its true class, "
               "a black cross: misclassified. Click a point to see the image and its closest training images.")
    st.plotly_chart(map_figure(points, classes), width="stretch", key="learned_map_click", theme=None,
                    on_select="rerun", selection_mode="points")
    for point in ((st.session_state.get("learned_map_click") or {}).get("selection") or {}).get("points") or []:
        custom = point.get("customdata")
        custom = custom[0] if isinstance(custom, (list, tuple)) else custom
        if custom is not None:
            st.button(f"Open test image #{int(custom)} and its closest training images", on_click=open_closest,
                      args=(int(custom),), icon=":material/travel_explore:")
            break


def map_figure(points: pd.DataFrame, classes: list[str]) -> go.Figure:
    scatter = go.Scattergl if len(points) > GL_POINTS else go.Scatter
    names = labels(classes)
    fig = go.Figure()
    for c in sorted(points["label"].unique()):
        part = points[points["label"] == c]
        fig.add_trace(scatter(
            x=part["x"], y=part["y"], mode="markers", name=names[int(c)], customdata=part["index"],
            marker={"size": 6, "color": CLASS_COLOURS[int(c) % len(CLASS_COLOURS)], "opacity": 0.75},
            text=[f"#{i}: true {names[int(t)]}, said {names[int(p)]}" for i, t, p in zip(part["index"], part["label"], part["pred"])],
            hovertemplate="%{text}<extra></extra>",
        ))
    wrong = points[points["label"] != points["pred"]]
    fig.add_trace(scatter(x=wrong["x"], y=wrong["y"], mode="markers", name="misclassified", customdata=wrong["index"],
                          marker={"symbol": "x-thin", "size": 6, "opacity": 0.8, "line": {"width": 1.2, "color": "#111111"}},
                          text=[f"#{i}: true {names[int(t)]}, said {names[int(p)]}" for i, t, p in
                                zip(wrong["index"], wrong["label"], wrong["pred"])],
                          hovertemplate="%{text}<extra></extra>"))
    styled(fig, "The test set by its last hidden layer", "", "", height=560)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def flipped_ui(run_id: str, epochs: list[int], ds, classes: list[str]) -> None:
    if len(epochs) < 2:
        st.info("Only one epoch has predictions yet: what flipped needs two.", icon=":material/hourglass_top:")
        return
    a, b = st.columns(2)
    first = a.selectbox("From epoch", epochs[:-1], key=f"learned_from:{run_id}")
    later = [e for e in epochs if e > first]
    second = b.selectbox("To epoch", later, index=len(later) - 1, key=f"learned_to:{run_id}:{first}")
    worse, better = insight.flipped(cached.predictions(run_id, first), cached.predictions(run_id, second))
    m = st.columns(3)
    m[0].metric("Right → wrong", f"{len(worse):,}")
    m[1].metric("Wrong → right", f"{len(better):,}")
    m[2].metric("Net change", f"{len(better) - len(worse):+,}")

    def was(row, classes):
        said = lambda c: f"**{md(classes[int(c)])}**"  # noqa: E731
        return f"true {said(row.label)}; said {said(row.pred_before)} → {said(row.pred)} · #{int(row.index)}"

    for title, frame, key in ((f"Right at epoch {first}, wrong at epoch {second}", worse, "learned_worse"),
                              (f"Wrong at epoch {first}, right at epoch {second}", better, "learned_better")):
        st.markdown(f"##### {title}: {len(frame):,}" + (f" (the first {PER_PAGE})" if len(frame) > PER_PAGE else ""))
        if frame.empty:
            st.caption("None.")
        tiles_ui(frame.head(PER_PAGE), ds, classes, key, caption=was)


# --------------------------------------------------------------------------- the page

def follow_link(n_test: int) -> None:
    """``?image=N`` from another page: open its closest training images (once per link)."""
    asked = st.query_params.get("image")
    if asked is None or asked == st.session_state.get("_learned_link"):
        return
    st.session_state["_learned_link"] = asked
    try:
        index = int(asked)
    except ValueError:
        index = -1
    if 0 <= index < n_test:
        open_closest(index)
    else:
        st.warning(f"The link asks for test image **{md(asked)}**, which this run's test split does not have "
                   f"(it has {n_test:,}, numbered 0 to {n_test - 1:,}).", icon=":material/link:")


st.title("What it learned")

frame = cached.list_runs()
ids = choice.runs_with_predictions_or_stop(
    frame, cached.has_predictions, "No run has finished an epoch yet. Launch one on the Train page (the quick demo "
    "on Home takes seconds), then come back to see what it learned.")

run_id = choice.pick_run_ui(ids, frame)
try:
    run_dir = runs.run_path(run_id)
    epochs = runs.prediction_epochs(run_id)
    config = cached.run_config(run_id)
    ds = cached.run_dataset(config)
except Exception as exc:
    error_ui(f"Run {run_id} or its dataset cannot be read.", exc)
    st.stop()
status = runs.status(run_id)
if cached.data_changed(config, status.get("test_fingerprint")):
    error_ui(f"The images of {config.dataset} here are not the ones this run was trained and tested on (the data "
             "changed since), so its neighbours and tiles would be other images. Train again on the images as they are now.")
    st.stop()
best_epoch = status.get("best_epoch")
epoch = best_epoch if best_epoch in epochs else epochs[-1]
preds = cached.predictions(run_id, epoch)
if preds.empty or int(preds["index"].max()) >= len(ds.test_y):
    error_ui(f"This run's predictions do not match the test images of {config.dataset} here.")
    st.stop()
classes = [str(c) for c in ds.classes]
st.caption(f"**{md(config.variant)}** on **{md(config.dataset)}**; the predictions and weights of epoch {epoch} "
           f"(its best.pt, chosen on the validation split), of {len(epochs)} saved.")

follow_link(len(ds.test_y))
image = st.session_state.get("learned_image")
if not isinstance(image, int) or not 0 <= image < len(ds.test_y):
    wrong = preds["index"][preds["label"] != preds["pred"]]
    st.session_state["learned_image"] = int(wrong.iloc[0]) if len(wrong) else 0

filters_tab, closest_tab, looked_tab, map_tab, flipped_tab = st.tabs(TABS, key="learned_view", bind="query-params")
ds_key = (config.dataset, config.data_root, config.folder, *sorted(config.stored_photos.items()))
if filters_tab.open:
    with filters_tab:
        filters_ui(run_id, run_dir, ds)
if closest_tab.open:
    with closest_tab:
        closest_ui(run_dir, ds, ds_key, preds, classes)
if looked_tab.open:
    with looked_tab:
        looked_ui(run_id, run_dir, preds, ds, classes)
if map_tab.open:
    with map_tab:
        map_ui(run_dir, ds, ds_key, preds, classes)
if flipped_tab.open:
    with flipped_tab:
        flipped_ui(run_id, epochs, ds, classes)

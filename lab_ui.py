"""Shared Streamlit helpers for AlexNet Lab's pages: the sidebar choice, cached
loaders over ``alexnet_core``, friendly errors and small drawing helpers.

Pages stay thin: they read widgets, call one or two functions here or in
``alexnet_core``, and draw.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from alexnet_core import anatomy, data, paths, predict, runs, training, variants
from alexnet_core.device import DEVICES

import lab_charts
import lab_pacing

HOME = "app_pages/home.py"
MODEL = "app_pages/model.py"
TRAIN = "app_pages/train.py"
PREDICTIONS = "app_pages/predictions.py"
RUNS = "app_pages/runs.py"

ACTIVE_STATES = runs.ACTIVE_STATES
STATE_ICONS = {
    "queued": ":material/hourglass_top:",
    "running": ":material/play_circle:",
    "finished": ":material/check_circle:",
    "failed": ":material/cancel:",
    "stopped": ":material/stop_circle:",
    "interrupted": ":material/warning:",
}

# --------------------------------------------------------------------------
# The sidebar choice (variant, dataset, input size), bound to the URL


@dataclass(frozen=True)
class Selection:
    variant: str
    dataset: str
    input_size: int
    folder: str | None

    @property
    def spec(self):
        return variants.get_spec(self.variant)


def size_range(variant: str) -> tuple[int, int]:
    """Input sizes offered for a variant: its minimum up to about twice its native size
    (larger inputs grow the classifier of the variants without adaptive pooling)."""
    spec = variants.get_spec(variant)
    return variants.min_input_size(variant), max(64, min(2 * spec.input_size, 320))


def _defaults() -> tuple[str, str]:
    """The sidebar's defaults: TrainConfig's own (the small net on the bundled digits)."""
    config = training.TrainConfig()
    return config.variant, config.dataset


def warm_caches() -> None:
    """Do once at server start (app.py) what the default view's first visits would
    otherwise do while a student waits: the Model page's layer table (torchinfo,
    0.3 s cold), the default dataset (Train's estimate, Predictions' tiles), and a
    plotly figure of the kinds the confusion matrix and the upload's top 5 use,
    built and serialised (plotly.py loads its validators on the first one)."""
    variant, dataset = _defaults()
    sel = Selection(variant, dataset, variants.get_spec(variant).input_size, None)
    layer_table(variant, *model_io(sel), sel.input_size)
    # load_dataset's spinner looks for a page to draw in and, finding none at start-up,
    # would print "missing ScriptRunContext!" in the teacher's terminal.
    quiet = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        load_dataset(dataset)
    finally:
        quiet.setLevel(level)
    import plotly.graph_objects as go

    for trace in (go.Heatmap(z=[[1, 0], [0, 1]]), go.Bar(x=[0.9], y=["a"], orientation="h")):
        _layout(go.Figure(trace), "warm-up", "x", "y").to_json()


def _check_link() -> None:
    """On a session's first run, compare the link's values with the registries and
    remember a notice for each one that falls back to the default."""
    if "link_checked" in st.session_state:
        return
    st.session_state["link_checked"] = True
    notices: list[str] = []
    models, datasets = variants.list_models(), data.list_datasets()
    params = st.query_params
    variant, dataset = _defaults()
    asked = params.get("variant")
    if asked is not None:
        if asked in models:
            variant = asked
        else:
            notices.append(
                f"The link asks for the variant **{asked}**, which does not exist; showing "
                f"**{variant}** instead. Variants: {', '.join(models)}."
            )
    asked = params.get("dataset")
    if asked is not None and asked not in datasets:
        notices.append(
            f"The link asks for the dataset **{asked}**, which does not exist; showing "
            f"**{dataset}** instead. Datasets: {', '.join(datasets)}."
        )
    asked = params.get("size")
    if asked is not None:
        lo, hi = size_range(variant)
        native = variants.get_spec(variant).input_size
        try:
            size = int(asked)
        except ValueError:
            size = None
        if size is None or not lo <= size <= hi:
            notices.append(
                f"The link asks for the input size **{asked}**, which {variant} cannot take "
                f"(it takes {lo} to {hi} pixels here); showing its native size **{native}** instead."
            )
    st.session_state["link_notices"] = notices


def _on_variant_change() -> None:
    # Forget the size: the widget starts again at the new variant's native size.
    st.session_state.pop("size", None)


def sidebar_ui() -> Selection:
    """Draw the sidebar choice (kept across pages and in the URL) and return it."""
    _check_link()
    models, datasets = variants.list_models(), data.list_datasets()
    default_variant, default_dataset = _defaults()
    with st.sidebar:
        st.markdown("### Your choice")
        variant = st.selectbox(
            "AlexNet variant",
            models,
            index=models.index(default_variant),
            key="variant",
            bind="query-params",
            on_change=_on_variant_change,
            help="The network to inspect and train. Each one is a named AlexNet from the paper or a blog post.",
        )
        spec = variants.get_spec(variant)
        st.caption(f"{spec.title}: {spec.description}")
        dataset = st.selectbox(
            "Dataset",
            datasets,
            index=datasets.index(default_dataset),
            key="dataset",
            bind="query-params",
            help="The images to train on and look at.",
        )
        folder = None
        if dataset == "folder":
            folder = st.text_input(
                "Image folder (one sub-folder per class)",
                key="folder",
                bind="query-params",
                help="A folder inside the data root, e.g. cats_vs_dogs/train.",
            ).strip() or None
        lo, hi = size_range(variant)
        if "size" in st.session_state and not lo <= st.session_state["size"] <= hi:
            st.session_state.pop("size")
        size = st.number_input(
            "Input size (pixels)",
            min_value=lo,
            max_value=hi,
            value=spec.input_size,
            step=1,
            key="size",
            bind="query-params",
            help=f"Images are resized to this square size. {variant} is built for "
            f"{spec.input_size}x{spec.input_size} and takes at least {lo}x{lo}.",
        )
        ok, where = dataset_availability(dataset, folder)
        if ok:
            st.caption(f":material/check_circle: {data.get_info(dataset).title}: {where}")
        else:
            st.warning(where, icon=":material/download:")
    return Selection(variant=variant, dataset=dataset, input_size=int(size), folder=folder)


def current() -> Selection:
    """The sidebar choice as app.py drew it in this run."""
    return st.session_state["_selection"]


def link_notices_ui() -> None:
    """Show what the link asked for that could not be used (until dismissed)."""
    notices = st.session_state.get("link_notices") or []
    if not notices:
        return
    for notice in notices:
        st.warning(notice, icon=":material/link:")
    if st.button("Dismiss", key="dismiss_link_notices"):
        st.session_state["link_notices"] = []
        st.rerun()


# --------------------------------------------------------------------------
# Errors


def error_ui(message: str, exc: BaseException | None = None) -> None:
    """A sentence a student understands, and the error's own text (never a traceback)."""
    st.error(message, icon=":material/error:")
    if exc is not None and str(exc):
        st.caption(f"Details: {exc}")


# --------------------------------------------------------------------------
# Cached loaders (models and data are shared by every session)


def dataset_availability(name: str, folder: str | None = None) -> tuple[bool, str]:
    try:
        return data.availability(name, folder=folder)
    except Exception as exc:  # a bad folder name, an unreadable root
        return False, str(exc)


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def load_dataset(name: str, root: str | None = None, folder: str | None = None) -> data.Dataset:
    return data.load_dataset(name, root, folder=folder, download=False)


def model_io(sel: Selection) -> tuple[int, int]:
    """(in_channels, num_classes) of the network trained on the selection: the variant's
    native channels (the data is adapted to it, as in training) and the dataset's classes."""
    info = data.get_info(sel.dataset)
    if info.num_classes is not None:
        return sel.spec.in_channels, info.num_classes
    try:
        return sel.spec.in_channels, load_dataset(sel.dataset, None, sel.folder).num_classes
    except Exception:
        return sel.spec.in_channels, 2  # an image folder not chosen yet: show a two-class head


@st.cache_resource(show_spinner="Building the network…", max_entries=8)
def untrained_model(variant: str, in_channels: int, num_classes: int, input_size: int):
    """A freshly initialised network (seed 0), in eval mode; the server's random state
    is left as it was (as training.initial_model leaves it)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return variants.get_model(variant, in_channels, num_classes, input_size).eval()


@st.cache_resource(show_spinner=False, max_entries=6)
def run_start_model(run_id: str, num_classes: int):
    """The weights a run started from, before its first step (training.initial_model)."""
    return training.initial_model(runs.read_config(run_id), num_classes)


@st.cache_resource(show_spinner="Loading the run's weights…", max_entries=6)
def _run_model(run_id: str, which: str, stamp: float):
    model, config = runs.load_model(run_id, which=which)
    return model.eval(), config


def run_model(run_id: str, which: str = "best"):
    """A run's network and config; reloaded when its checkpoint file changes."""
    path = runs.run_path(run_id) / f"{which}.pt"
    stamp = path.stat().st_mtime if path.exists() else 0.0
    return _run_model(run_id, which, stamp)


@st.cache_data(show_spinner="Reading the predictions…", max_entries=16)
def _predictions(run_id: str, epoch: int | None, stamp: float) -> pd.DataFrame:
    return runs.read_predictions(run_id, epoch)


def predictions(run_id: str, epoch: int | None) -> pd.DataFrame:
    folder = runs.run_path(run_id) / "predictions"
    stamp = max((p.stat().st_mtime for p in folder.glob("*")), default=0.0) if folder.exists() else 0.0
    return _predictions(run_id, epoch, stamp)


@st.cache_data(show_spinner=False)
def layer_table(variant: str, in_channels: int, num_classes: int, input_size: int):
    model = untrained_model(variant, in_channels, num_classes, input_size)
    return anatomy.layer_table(model, input_size, in_channels)


@st.cache_data(show_spinner=False)
def shape_trace(variant: str, in_channels: int, num_classes: int, input_size: int) -> pd.DataFrame:
    model = untrained_model(variant, in_channels, num_classes, variants.get_spec(variant).input_size)
    return anatomy.shape_trace(model, input_size)


@st.cache_data(show_spinner="Comparing every variant…")
def _compare_variants(in_channels: int, num_classes: int) -> pd.DataFrame:
    return anatomy.compare_variants(in_channels, num_classes)


def compare_variants(in_channels: int, num_classes: int) -> pd.DataFrame:
    """Every variant at its native input, with the training speed this machine's
    runs measured where one has trained it (``runs.training_speeds``)."""
    frame = _compare_variants(in_channels, num_classes)
    try:
        speeds = runs.training_speeds()
    except Exception:  # an unreadable run store (the Runs page explains it): the comparison still stands
        return frame
    return frame.merge(speeds[["variant", "images_per_s", "input_size", "device"]], on="variant", how="left")


# --------------------------------------------------------------------------
# Runs


def list_runs() -> pd.DataFrame:
    try:
        return runs.list_runs()
    except Exception as exc:
        error_ui("The run store could not be read.", exc)
        return pd.DataFrame(columns=["id", "variant", "dataset", "state"])


def format_duration(seconds) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_count(n) -> str:
    """1234567 -> '1.23 M'."""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def feature_grids_ui(maps: dict, *, columns: int = 2, max_channels: int = 64, cell: int = 40) -> None:
    """Each layer's channels as one grid image."""
    items = list(maps.items())
    for start in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, (name, fmap) in zip(cols, items[start : start + columns]):
            c, h, w = fmap.shape[-3:]
            shown = min(c, max_channels)
            col.image(
                predict.channel_grid(fmap, max_channels=max_channels, cell=cell),
                caption=f"{name}: {c} channels of {h}x{w}" + (f" (first {shown})" if shown < c else ""),
                width="stretch",
            )


def run_dir_exists(run_id: str) -> bool:
    try:
        return Path(runs.run_path(run_id)).is_dir()
    except Exception:
        return False


# --------------------------------------------------------------------------
# Model page


# A page's tables as plain HTML in one element. st.table draws every cell as its own
# Markdown element: the paper net's 22-row layer table was 180 of them, and the
# Model page's first visit spent about 0.3 s of the browser's main thread on them
# (bench/README.md, "Session 8").
_TABLE_CSS = """<style>
.lab-table-box { overflow-x: auto; margin: 0 0 0.5rem 0; }
.lab-table { border-collapse: collapse; width: 100%; font-size: 0.875rem; line-height: 1.45; }
.lab-table th { font-weight: 700; text-align: left; border-bottom: 2px solid var(--st-border-color, #8a94a6); }
.lab-table th, .lab-table td { padding: 0.3rem 0.6rem; vertical-align: top; }
.lab-table.nowrap th, .lab-table.nowrap td, .lab-table .num { white-space: nowrap; }
.lab-table td { border-bottom: 1px solid var(--st-border-color-light, #d5dae3); }
.lab-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.lab-table tr.marked td { background: #ffd7cc; color: #7a1f00; font-weight: 700; }
</style>"""


def _cell_text(cell) -> str:
    """A table cell as plain text: a missing one (None, NaN) empty."""
    return "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell)


def table_html(frame: pd.DataFrame, right: tuple[str, ...] = (), marked: set[int] = frozenset(), wrap: bool = False) -> str:
    """A frame as an HTML table (no index), every cell shown as its escaped text (a
    missing one empty), the ``right`` columns aligned right, the rows at the
    ``marked`` positions highlighted. Unless ``wrap``, a row is one line and a wide
    table scrolls sideways."""

    def cell(tag: str, column, value) -> str:
        text = html.escape(_cell_text(value))
        return f'<{tag} class="num">{text}</{tag}>' if column in right else f"<{tag}>{text}</{tag}>"

    head = "".join(cell("th", c, c) for c in frame.columns)
    rows = "".join(
        ('<tr class="marked">' if i in marked else "<tr>") + "".join(cell("td", c, v) for c, v in zip(frame.columns, r)) + "</tr>"
        for i, r in enumerate(frame.itertuples(index=False))
    )
    return (f'{_TABLE_CSS}<div class="lab-table-box"><table class="lab-table{"" if wrap else " nowrap"}">'
            f"<thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")


def table_ui(frame: pd.DataFrame, right: tuple[str, ...] = (), marked: set[int] = frozenset(), wrap: bool = False) -> None:
    """Draw ``table_html(...)``: a compact table in one element."""
    st.html(table_html(frame, right, marked, wrap))


# Columns of the Model page's tables that hold numbers.
NUMBER_COLUMNS = ("parameters", "mult-adds", "kernel", "stride", "padding", "channels", "native input", "min input",
                  "images/s here")


def format_layer_table(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out["output_shape"] = out["output_shape"].map(lambda s: " x ".join(map(str, s)) if isinstance(s, (tuple, list)) else str(s))
    out["params"] = out["params"].map(lambda n: f"{int(n):,}" if n else "–")
    out["mult_adds"] = out["mult_adds"].map(lambda n: human_count(n) if n else "–")
    return out.rename(
        columns={
            "output_shape": "output (C x H x W)",
            "params": "parameters",
            "mult_adds": "mult-adds",
        }
    )


def _remainder(row) -> int | None:
    """(W - K + 2P) mod S for a conv/pool trace row; None for other rows."""
    try:
        w = int(str(row["in_hw"]).split("x")[0])
        k, s, p = int(row["kernel"]), int(row["stride"]), int(row["padding"])
    except (TypeError, ValueError):
        return None
    return (w - k + 2 * p) % s


def format_trace(trace: pd.DataFrame, short: bool = False) -> pd.DataFrame:
    out = trace.copy()
    remainders = [_remainder(row) for _, row in out.iterrows()]
    out["exact"] = ["" if r is None else ("✔" if r == 0 else f"✘ {r} px dropped") for r in remainders]
    out = out.rename(columns={"in_hw": "in", "out_hw": "out", "out_channels": "channels"})
    cols = ["layer", "type", "in", "out", "channels", "kernel", "stride", "padding", "arithmetic", "exact"]
    if short:
        cols = ["layer", "type", "arithmetic", "exact"]
    return out[[c for c in cols if c in out.columns]]


def inexact_rows(trace: pd.DataFrame) -> set[int]:
    """Positions of a formatted trace's rows whose division is not exact."""
    return {i for i, mark in enumerate(trace.get("exact", [])) if str(mark).startswith("✘")}


def trace_ui(trace: pd.DataFrame, short: bool = False) -> None:
    """A shape trace as a table, the rows that drop pixels marked."""
    shown = format_trace(trace, short=short)
    table_ui(shown, right=NUMBER_COLUMNS, marked=inexact_rows(shown), wrap=True)


@st.cache_data(show_spinner=False)
def exact_sizes(variant: str, lo: int, hi: int) -> list[int]:
    """Input sizes whose every conv/pool division is exact (nothing rounded away)."""
    spec = variants.get_spec(variant)
    model = untrained_model(variant, spec.in_channels, 10, spec.input_size)
    sizes = []
    for size in range(lo, hi + 1):
        trace = anatomy.shape_trace(model, size)
        remainders = [r for r in (_remainder(row) for _, row in trace.iterrows()) if r is not None]
        if all(r == 0 for r in remainders):
            sizes.append(size)
    return sizes


def format_compare(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    if "params" in out:
        out["params"] = out["params"].map(lambda n: f"{int(n):,}")
    if "mult_adds" in out:
        out["mult_adds"] = out["mult_adds"].map(human_count)
    if "images_per_s" in out:
        out["images_per_s"] = [
            _speed(rate, size, native, device)
            for rate, size, native, device in zip(out["images_per_s"], out["input_size"], out["native_input"], out["device"])
        ]
        out = out.drop(columns=["input_size", "device"])
    out = out.rename(
        columns={
            "native_input": "native input",
            "min_input": "min input",
            "params": "parameters",
            "mult_adds": "mult-adds",
            "conv_layers": "convs",
            "images_per_s": "images/s here",
        }
    )
    # the figures first, the words last: at 1280 pixels the long source names scroll
    words = [c for c in ("title", "source") if c in out]
    return out[[c for c in out.columns if c not in words] + words]


def _speed(rate, size, native, device) -> str:
    """'1,290', or '1,290 at 12 px' for a run at another size, '(cuda)' off the CPU."""
    if rate is None or pd.isna(rate):
        return "–"
    text = f"{float(rate):,.0f}"
    if not pd.isna(size) and int(size) != int(native):
        text += f" at {int(size)} px"
    if isinstance(device, str) and device != "cpu":
        text += f" ({device})"
    return text


def runs_with_weights(variant: str | None = None, dataset: str | None = None) -> list[str]:
    """Runs (newest first) that have a best.pt, optionally of one variant and dataset."""
    frame = list_runs()
    if frame.empty:
        return []
    if "created" in frame:
        frame = frame.sort_values("created", ascending=False)
    if variant is not None:
        frame = frame[frame["variant"] == variant]
    if dataset is not None:
        frame = frame[frame["dataset"] == dataset]
    return [rid for rid in frame["id"] if (runs.run_path(rid) / "best.pt").exists()]


def feature_maps_section_ui(sel: Selection, in_channels: int, num_classes: int) -> None:
    """One test image through the untrained net and, when chosen, a run's trained net."""
    import torch

    try:
        ds = load_dataset(sel.dataset, None, sel.folder)
    except Exception as exc:
        error_ui(f"The {sel.dataset} images are not here, so there is no test image to show.", exc)
        return
    candidates = runs_with_weights(sel.variant, sel.dataset)
    c1, c2 = st.columns([1, 2])
    with c1:
        index = st.number_input(
            "Test image (dataset index)", min_value=0, max_value=len(ds.test_y) - 1, value=0, step=1, key="fm_index"
        )
    with c2:
        source = st.selectbox(
            "Trained weights to compare with",
            ["none"] + candidates,
            index=1 if candidates else 0,
            key="fm_run",
            help=f"Runs of {sel.variant} on {sel.dataset} with saved weights (best.pt).",
        )
    size = sel.input_size
    trained = config = None
    if source != "none":
        try:
            trained, config = run_model(source)
            size = config.resolved_input_size
        except Exception as exc:
            error_ui(f"The weights of run {source} could not be loaded.", exc)
            trained = None
    try:
        # With a run: the very weights it started from (its seed), so what differs is what training changed.
        if trained is not None:
            untrained = run_start_model(source, ds.num_classes)
        else:
            untrained = untrained_model(sel.variant, in_channels, ds.num_classes, size)
        x = data.prepare_batch(
            ds.test_x[index : index + 1], in_channels=in_channels, size=size, mean=ds.mean, std=ds.std,
            device=torch.device("cpu"),
        )[0]
        maps_u = anatomy.feature_maps(untrained, x).maps
        maps_t = anatomy.feature_maps(trained, x).maps if trained is not None else None
    except Exception as exc:
        error_ui("The feature maps could not be computed for this image.", exc)
        return
    label = ds.classes[int(ds.test_y[index])]
    pic, text = st.columns([1, 4])
    pic.image(predict.tile_image(ds.test_x[index], None, target=128, border=2), caption=f"#{index}: {label}")
    text.markdown(
        f"Test image **#{index}** (a **{label}**), resized to {size}x{size}. Each square below is one channel "
        "of a conv layer's output after its ReLU: bright where the filter responds. "
        + (
            f"Left: run **{source}** before its first step (random filters, seed {config.seed}). Middle: the "
            "same layer after training. Right: **what training changed**, the difference between the two on "
            "one scale per layer: black where a channel responds as it did."
            if maps_t is not None
            else f"These come from the **untrained** net. Train {sel.variant} on {sel.dataset} to compare with learned filters."
        )
    )
    for name, fmap in maps_u.items():
        c, h, w = fmap.shape
        head = f"**{name}**: {c} channels of {h}x{w}" + (" (first 64 shown)" if c > 64 else "")
        if maps_t is None:
            st.markdown(head)
            st.image(predict.channel_grid(fmap, cell=40), width=min(900, 60 * 8 + 40))
            continue
        after = maps_t[name]
        st.markdown(f"{head} · training changed its response by **{anatomy.response_change(fmap, after):.0%}**")
        a, b, d = st.columns(3)
        a.image(predict.channel_grid(fmap, cell=40), caption="before training", width="stretch")
        b.image(predict.channel_grid(after, cell=40), caption="after training", width="stretch")
        d.image(predict.channel_grid((after - fmap).abs(), cell=40, shared_scale=True), caption="what changed",
                width="stretch")


# --------------------------------------------------------------------------
# Train page


def apply_recipe_to_sidebar(name: str) -> None:
    """Callback: move the sidebar's variant, dataset and size to a recipe's."""
    config = training.get_recipe(name).config
    st.session_state["variant"] = config.variant
    st.session_state["dataset"] = config.dataset
    st.session_state["size"] = config.resolved_input_size


def train_form_ui(recipe, sel: Selection):
    """The TrainConfig fields, prefilled by the recipe; returns the config they make."""
    base = recipe.config
    k = f"{recipe.name}:"  # a new recipe starts from its own values
    st.subheader("Settings")
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Epochs", 1, 500, int(base.epochs), key=k + "epochs")
    c2.number_input("Batch size", 1, 4096, int(base.batch_size), key=k + "batch_size")
    optimizer = c3.selectbox(
        "Optimizer", training.OPTIMIZERS, index=training.OPTIMIZERS.index(base.optimizer), key=k + "optimizer"
    )
    c4.number_input("Learning rate", min_value=0.0, value=float(base.lr), format="%.5f", step=0.001, key=k + "lr")
    c1, c2, c3, c4 = st.columns(4)
    schedule = c1.selectbox(
        "Rate schedule", training.SCHEDULES, index=training.SCHEDULES.index(base.schedule), key=k + "schedule"
    )
    c2.number_input(
        "Momentum (SGD)", 0.0, 0.999, float(base.momentum), step=0.05, key=k + "momentum", disabled=optimizer != "sgd"
    )
    c3.number_input(
        "Weight decay", 0.0, 1.0, float(base.weight_decay), format="%.5f", step=1e-4, key=k + "weight_decay"
    )
    c4.number_input(
        "Validation share", 0.0, 0.9, float(base.val_fraction), step=0.05, key=k + "val_fraction",
        help="Held out of the training split to choose the best epoch; the test split never chooses.",
    )
    with st.expander("More settings: augmentation, schedule, device"):
        c1, c2, c3, c4 = st.columns(4)
        c1.checkbox("Random horizontal flip", bool(base.flip), key=k + "flip")
        c2.number_input("Random crop padding (px)", 0, 64, int(base.crop_padding), key=k + "crop_padding")
        c3.number_input("Random rotation (degrees)", 0.0, 180.0, float(base.rotation), key=k + "rotation")
        c4.number_input(
            "Label smoothing", 0.0, 0.99, float(base.label_smoothing), step=0.05, key=k + "label_smoothing"
        )
        c1, c2, c3, c4 = st.columns(4)
        c1.number_input(
            "Step schedule: every N epochs", 1, 500, int(base.step_size), key=k + "step_size", disabled=schedule != "step"
        )
        c2.number_input(
            "… multiply the rate by", 0.01, 1.0, float(base.gamma), step=0.05, key=k + "gamma", disabled=schedule != "step"
        )
        c3.number_input("Seed", 0, 2**31 - 1, int(base.seed), key=k + "seed")
        c4.selectbox("Device", DEVICES, index=DEVICES.index(base.device), key=k + "device")
        if "groups" in sel.spec.options:
            st.checkbox(
                "Split conv2, conv4 and conv5 in two groups (the paper's two GPUs)",
                bool(base.variant_options.get("groups", 1) == 2),
                key=k + "groups",
            )
    return config_from_state(recipe.name)


FORM_FIELDS = {
    "epochs": int, "batch_size": int, "optimizer": str, "lr": float, "momentum": float, "weight_decay": float,
    "schedule": str, "step_size": int, "gamma": float, "label_smoothing": float, "flip": bool,
    "crop_padding": int, "rotation": float, "val_fraction": float, "seed": int, "device": str,
}


def config_from_state(recipe_name: str) -> "training.TrainConfig":
    """The TrainConfig the sidebar and the Train form hold now (read from session state,
    so the Launch callback sees the values sent with the click, not the last drawn ones)."""
    recipe = training.get_recipe(recipe_name)
    base, state, k = recipe.config, st.session_state, f"{recipe_name}:"
    variant, _ = _defaults()
    variant = state.get("variant", variant)
    dataset = state.get("dataset", _defaults()[1])
    folder = (state.get("folder") or "").strip() or None if dataset == "folder" else None
    values = {name: cast(state.get(k + name, getattr(base, name))) for name, cast in FORM_FIELDS.items()}
    options = {"groups": 2} if state.get(k + "groups") and "groups" in variants.get_spec(variant).options else {}
    return recipe.make_config(
        variant=variant,
        dataset=dataset,
        input_size=int(state.get("size", variants.get_spec(variant).input_size)),
        folder=folder,
        variant_options=options,
        **values,
    )


def _estimate_key(config) -> tuple:
    d = config.to_dict()
    fields = (
        "variant", "dataset", "input_size", "batch_size", "val_fraction", "device", "threads", "channels_last",
        "flip", "crop_padding", "rotation", "folder", "data_root", "optimizer",
    )
    return tuple((f, str(d.get(f))) for f in fields) + (("options", str(sorted(config.variant_options.items()))),)


# Every session's timings, the 64 newest: a new session shows a known one at once
# instead of after its fragment's first tick (st.cache_data cannot be asked what it holds).
_ESTIMATES: dict[tuple, float] = {}
_ESTIMATES_KEPT = 64


def _estimate(key: tuple, config_dict: dict) -> float:
    seconds = _ESTIMATES.get(key)
    if seconds is None:
        config = training.TrainConfig.from_dict(config_dict)
        dataset = load_dataset(config.dataset, config.data_root, config.folder)
        seconds = _ESTIMATES[key] = training.estimate_epoch_seconds(config, dataset=dataset)
        while len(_ESTIMATES) > _ESTIMATES_KEPT:
            _ESTIMATES.pop(next(iter(_ESTIMATES)), None)
    return seconds


SLOW_EPOCH_S = 180


def estimate_ui(config, *, busy: bool = False) -> bool:
    """Validate the settings and show how long an epoch should take; True when they can launch.

    The timing runs a few real training steps, so it is drawn by a parallel
    fragment (the rest of the page does not wait for it). Small inputs are timed
    at once; 227-pixel nets, or any net while another run trains (the timing
    would slow it and be wrong), wait for a click.
    """
    try:
        config.validate()
    except Exception as exc:
        error_ui(f"These settings cannot train yet: {exc}")
        return False
    ok, where = dataset_availability(config.dataset, config.folder)
    if not ok:
        st.warning(f"The {config.dataset} images are not on this computer yet. {where}", icon=":material/download:")
        return False
    auto = config.resolved_input_size < 100 and not busy
    key = _estimate_key(config)
    measured = st.session_state.setdefault("_estimates", {})
    if key not in measured and key in _ESTIMATES:
        measured[key] = _ESTIMATES[key]  # another session timed these settings already
    # The timing is left to the fragment's first timer tick, after the page is drawn;
    # once it is known the fragment stops polling.
    waiting = auto and key not in measured
    st.fragment(_estimate_fragment, run_every=1.0 if waiting else None)(config, auto)
    return True


def _estimate_fragment(config, auto: bool) -> None:
    key = _estimate_key(config)
    measured = st.session_state.setdefault("_estimates", {})
    if key not in measured and auto:
        seen = st.session_state.setdefault("_estimate_seen", set())
        if key not in seen:  # the page's own run: draw it first, time on the next tick
            seen.add(key)
            st.caption(":material/timer: Timing a few training steps to estimate the time per epoch…")
            return
        try:
            measured[key] = _estimate(key, config.to_dict())
        except Exception as exc:
            measured[key] = None
            st.session_state["_estimate_error"] = str(exc)
        # No st.rerun() to stop the timer: it could swallow a click made meanwhile. The
        # next full rerun registers this fragment without a timer; until then a tick
        # only redraws this line.
    if key in measured and measured[key] is None:
        error_ui("The time per epoch could not be measured.", RuntimeError(st.session_state.get("_estimate_error", "")))
        return
    if key not in measured and not auto:
        reason = (
            "A run is training now, so timing would slow it down."
            if config.resolved_input_size < 100
            else f"A {config.resolved_input_size}-pixel {config.variant} net is slow on a CPU."
        )
        st.info(f"{reason} Measure how long an epoch takes (it times a few real training steps).", icon=":material/timer:")
        if not st.button("Measure the time per epoch", icon=":material/timer:", key="measure"):
            return
    if key not in measured:
        try:
            measured[key] = _estimate(key, config.to_dict())
        except Exception as exc:
            error_ui("The time per epoch could not be measured.", exc)
            return
    seconds = measured[key]
    total = seconds * config.epochs
    text = (
        f"About **{format_duration(seconds)} per epoch**, **{format_duration(total)}** for "
        f"{config.epochs} epoch{'s' if config.epochs != 1 else ''} on this computer."
    )
    if seconds > SLOW_EPOCH_S:
        st.warning(
            text + " That is long for a lesson: fewer epochs, a smaller input size or a smaller variant "
            "would be quicker.",
            icon=":material/hourglass_bottom:",
        )
    else:
        st.markdown(":material/timer: " + text)


# A double click sends two clicks; with fastReruns the second one's script thread
# runs its callback while the first thread, told to stop, may no longer write
# st.session_state. So the record of recent launches lives in the server process,
# keyed by session, and a lock makes check-launch-record one step.
RELAUNCH_GUARD_S = 5.0


@st.cache_resource
def _launch_guard() -> tuple[threading.Lock, dict[str, tuple[str, float, str]]]:
    return threading.Lock(), {}


def _session_key() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def launch_once(config: training.TrainConfig) -> tuple[str, bool]:
    """Launch ``config`` unless this browser session launched the same settings in the
    last few seconds. Returns (run id, whether it is a new run). Raises what
    ``runs.launch`` raises."""
    signature = repr(config.to_dict())
    lock, recent = _launch_guard()
    key = _session_key()
    with lock:
        last = recent.get(key)
        now = time.monotonic()
        if last and last[0] == signature and now - last[1] < RELAUNCH_GUARD_S:
            return last[2], False
        run_id = runs.launch(config)
        recent[key] = (signature, now, run_id)
        for other, (_, when, _) in list(recent.items()):  # forget sessions long gone
            if now - when > 3600:
                del recent[other]
    return run_id, True


def launch_callback(recipe_name: str) -> None:
    """The Launch button's callback: it runs before the page is drawn, so the new run
    shows at once. A second click on the same settings within seconds is ignored."""
    config = config_from_state(recipe_name)
    try:
        config.validate(check_data=True)
        run_id, fresh = launch_once(config)
    except Exception as exc:
        st.session_state["_launch_msg"] = ("error", f"The training run could not be started: {exc}")
        return
    watch_next(run_id)
    if fresh:
        st.session_state["_launch_msg"] = ("ok", run_id)
    else:
        st.session_state["_launch_msg"] = ("info", f"Run {run_id} was just started with these settings.")


def watch_next(run_id: str) -> None:
    """After a launch: the Train page picks ``run_id`` next, and keeps its live view
    on top of the form once it ends, so its result and links stay in sight."""
    st.session_state["focus_run"] = run_id
    st.session_state["_watch_next"] = run_id
    st.session_state["launched_here"] = run_id


def launched_here(frame: pd.DataFrame) -> bool:
    """This session launched a run that is in the run store."""
    return not frame.empty and st.session_state.get("launched_here") in set(frame["id"])


def launch_message_ui() -> None:
    kind, text = st.session_state.pop("_launch_msg", (None, None))
    if kind == "error":
        error_ui(text)
    elif kind == "info":
        st.info(text, icon=":material/info:")
    elif kind == "ok":
        st.toast(f"Started run {text}", icon=":material/rocket_launch:")


# --------------------------------------------------------------------------
# The live view of a run


def run_ids_newest_first(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    if "created" in frame:
        frame = frame.sort_values("created", ascending=False, kind="stable")
    return list(frame["id"])


def pick_run_ui(ids: list[str], frame: pd.DataFrame, *, label: str = "Run") -> str:
    """The run picker shared by Train and Predictions, bound to ``?run=`` in the URL.

    Picks, in order: a run just launched, the one picked before, the link's,
    the one last looked at, the newest running one, the newest. A link naming a
    run that does not exist gets a notice.
    """
    asked = st.query_params.get("run")
    if asked is not None and asked not in ids:
        st.warning(f"The link names run **{asked}**, which does not exist (any more); showing another run.", icon=":material/link:")
    launched = st.session_state.pop("_watch_next", None)
    if launched in ids:
        st.session_state["run"] = launched
    elif st.session_state.get("run") not in ids and asked not in ids:
        focus = st.session_state.get("focus_run")
        active = [rid for rid, state in zip(frame["id"], frame["state"]) if state in ACTIVE_STATES]
        st.session_state["run"] = focus if focus in ids else (active[0] if active else ids[0])
    run_id = st.selectbox(
        label,
        ids,
        key="run",
        bind="query-params",
        help="Every run in the run store, newest first.",
    )
    st.session_state["focus_run"] = run_id
    return run_id


class RunMetrics:
    """One run's metrics and charts, shared by every session that watches it.

    A class of twenty watching one run would otherwise each keep the events,
    rebuild the frames and rebuild and serialise two plotly figures (tens of
    ms each) on every refresh. Here the new metric lines are read once per
    refresh, and frames and figures are rebuilt only when asked for and new
    lines arrived. ``version`` counts the changes, so a page can tell whether
    the figures it shows are the newest.
    """

    def __init__(self, run_id: str, runs_dir: str):
        self.run_id, self.runs_dir = run_id, runs_dir
        self.lock = threading.Lock()
        self.offset = 0
        self.rows: list[dict] = []
        self.version = 0
        self.built: tuple | None = None
        self.built_version = -1
        self.audience = lab_pacing.Audience()  # who watches, for the refresh budget

    def _read(self) -> None:
        path = runs.run_path(self.run_id, self.runs_dir) / "metrics.jsonl"
        if path.exists() and path.stat().st_size < self.offset:  # the file was replaced: start over
            self.offset, self.rows = 0, []
            self.version += 1
        new, self.offset = runs.read_metrics(self.run_id, self.offset, self.runs_dir)
        if new:
            self.rows.extend(new)
            self.version += 1

    def refresh(self) -> int:
        """Read the lines added since the last call; returns the version."""
        with self.lock:
            self._read()
            return self.version

    def snapshot(self) -> tuple[pd.DataFrame, pd.DataFrame, lab_charts.Prepared, lab_charts.Prepared]:
        """(steps, epochs, loss chart, accuracy chart), reading only the lines added since the last call."""
        return self.versioned()[1:]

    def versioned(self) -> tuple[int, pd.DataFrame, pd.DataFrame, lab_charts.Prepared, lab_charts.Prepared]:
        """``snapshot()`` with the version it shows."""
        with self.lock:
            self._read()
            if self.built_version != self.version:
                # frames_from_events drops the steps a resume trained again.
                steps, epochs = runs.frames_from_events(self.rows)
                self.built = (
                    steps, epochs, lab_charts.prepare(loss_chart(steps, epochs)), lab_charts.prepare(accuracy_chart(epochs))
                )
                self.built_version = self.version
            return (self.built_version, *self.built)


_METRICS: dict[tuple[str, str], RunMetrics] = {}
_METRICS_LOCK = threading.Lock()
_METRICS_KEPT = 32


def run_metrics(run_id: str) -> RunMetrics:
    """The shared RunMetrics of ``run_id`` in this server's run store; the 32 most
    recently asked for are kept. Read by script runs and by lab_server.LiveApi's
    polls alike, so a plain registry rather than st.cache_resource."""
    key = (run_id, str(paths.runs_root()))
    with _METRICS_LOCK:
        metrics = _METRICS.pop(key, None) or RunMetrics(*key)
        _METRICS[key] = metrics  # newest last
        while len(_METRICS) > _METRICS_KEPT:
            del _METRICS[next(iter(_METRICS))]
        return metrics


def forget_run_metrics(run_id: str) -> None:
    """Drop ``run_id``'s RunMetrics (the run was deleted; a new run may take its id)."""
    with _METRICS_LOCK:
        _METRICS.pop((run_id, str(paths.runs_root())), None)


# The theme's categorical colours (.streamlit/config.toml), large type for a projector.
COLOURS = ["#0b57d0", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"]


# What plotly_white draws, set by hand: the template itself is 7 KB of JSON in every
# chart a live poll sends, and plotly.py validates and copies all of it.
_AXIS = {"automargin": True, "showline": False, "gridcolor": "#d5dae3", "linecolor": "#d5dae3", "zerolinecolor": "#d5dae3",
         "zerolinewidth": 2, "ticks": "", "tickfont": {"size": 15}}


def _layout_of(title: str, xtitle: str, ytitle: str, height: int = 380) -> dict:
    """The lab's chart layout as plotly.js's JSON: large type for a projector."""
    return {
        "template": {}, "paper_bgcolor": "white", "plot_bgcolor": "white", "hovermode": "closest",
        "hoverlabel": {"align": "left"}, "colorway": COLOURS, "height": height,
        "title": {"text": title, "x": 0.05, "font": {"size": 22, "color": "#111111"}},
        "font": {"size": 17, "color": "#111111"},
        # The toolbar that appears on hover stands upright in the right margin: lying
        # across the top it covered the chart's title on a projector.
        "margin": {"l": 10, "r": 44, "t": 60, "b": 10},
        "modebar": {"orientation": "v"},
        "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0, "font": {"size": 16}},
        "xaxis": {**_AXIS, "title": {"text": xtitle, "standoff": 15}},
        "yaxis": {**_AXIS, "title": {"text": ytitle, "standoff": 15}},
    }


def _layout(fig, title: str, xtitle: str, ytitle: str, height: int = 380):
    """Give a plotly.graph_objects figure the lab's layout."""
    fig.update_layout(_layout_of(title, xtitle, ytitle, height))
    return fig


# The Train page's two charts are built as plotly.js's JSON directly: plotly.py's
# graph objects took 55-70 ms of server CPU per pair, and a watched run's charts are
# built again every few seconds while it trains (bench/README.md, "Session 8").


def loss_chart(steps: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    traces = []
    if not steps.empty:
        # a projector shows a few hundred points; more only cost the browser time
        shown = steps if len(steps) <= 500 else steps.iloc[:: len(steps) // 500 + 1]
        traces.append({"type": "scatter", "x": lab_charts.json_numbers(shown["step"]),
                       "y": lab_charts.json_numbers(shown["loss"]), "mode": "lines", "name": "training (per step)",
                       "line": {"width": 2}})
    if not epochs.empty:
        for col, name, dash in (("val_loss", "validation", "dot"), ("test_loss", "test", "dash")):
            if col in epochs and epochs[col].notna().any():
                traces.append({"type": "scatter", "x": lab_charts.json_numbers(epochs["step"]),
                               "y": lab_charts.json_numbers(epochs[col]), "mode": "lines+markers", "name": f"{name} (per epoch)",
                               "line": {"width": 3, "dash": dash}, "marker": {"size": 10}})
    return {"data": traces, "layout": _layout_of("Loss", "step", "cross-entropy loss")}


def accuracy_chart(epochs: pd.DataFrame) -> dict:
    traces = []
    if not epochs.empty:
        for col, name in (("train_acc", "training"), ("val_acc", "validation"), ("test_acc", "test")):
            if col in epochs and epochs[col].notna().any():
                traces.append({"type": "scatter", "x": lab_charts.json_numbers(epochs["epoch"]),
                               "y": lab_charts.json_numbers(epochs[col], 100.0), "mode": "lines+markers", "name": name, "line": {"width": 3}, "marker": {"size": 11}})
    layout = _layout_of("Accuracy per epoch", "epoch", "accuracy (%)")
    layout["xaxis"].update(dtick=1, rangemode="tozero")
    layout["yaxis"].update(range=[0, 101])
    return {"data": traces, "layout": layout}


def _progress(status: dict) -> tuple[float, str]:
    epochs = int(status.get("epochs") or 0)
    per_epoch = int(status.get("steps_per_epoch") or 0)
    step = int(status.get("step") or 0)
    total = epochs * per_epoch
    fraction = min(step / total, 1.0) if total else 0.0
    done = int(status.get("epoch") or 0)
    state = status.get("state")
    parts = []
    if epochs:
        current = min(done + 1, epochs) if state in ACTIVE_STATES else done
        parts.append(f"epoch {current} of {epochs}")
    if total:
        parts.append(f"step {step:,} of {total:,}")
    if status.get("images_per_s") and state in ACTIVE_STATES:
        parts.append(f"{float(status['images_per_s']):,.0f} images/s")
    if state in ACTIVE_STATES:
        eta = status.get("eta_seconds")
        parts.append(f"about {format_duration(eta)} left" if eta is not None else "estimating time left…")
    if state == "finished":
        fraction = 1.0
    return fraction, " · ".join(parts)


def _percent(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.1f}%"


def _watching(run_id: str) -> int:
    """Count this session as watching ``run_id`` now; return how many sessions do."""
    return run_metrics(run_id).audience.seen(_session_key())


def _live(run_id: str, polling: bool, scale: int, version: int) -> lab_charts.Live:
    return lab_charts.Live(
        run_id=run_id, viewer=_session_key(), version=version, active=polling, scale=scale,
        every_s=lab_pacing.POLL_EVERY_S * scale, charts_every_s=lab_pacing.CHARTS_EVERY_S * scale,
        unreachable=_poll_unreachable(),
    )


def _poll_unreachable() -> bool:
    """The page's poll could not reach the server (lab_charts): the fragments refresh it."""
    return st.session_state.get("_poll_unreachable", False)


def live_payload(run_id: str, viewer: str, since: int | None) -> bytes:
    """What a page polling ``run_id`` is answered (lab_server.LiveApi), as JSON: the
    state, the progress line, the audience's pace, and the charts when the page's
    are older than ``since`` says (or the run has ended: the last figures). A poll
    that asks for no charts reads no metric lines: only status.json."""
    status = runs.status(run_id)
    state = status.get("state", "?")
    metrics = run_metrics(run_id)
    viewers = metrics.audience.seen(viewer)
    fraction, text = _progress(status)
    active = state in ACTIVE_STATES
    answer = {
        "state": state, "active": active, "fraction": fraction, "text": text or state,
        "step": int(status.get("step") or 0), "scale": lab_pacing.refresh_scale(viewers),
    }
    if since is not None or not active:
        version, _, _, loss, accuracy = metrics.versioned()
        if not active or since < version:
            answer["version"] = version
            # the figures are serialised once per version, for every viewer: spliced in, not parsed again
            return (json.dumps(answer)[:-1] + f', "charts": {{"loss": {loss.json}, "accuracy": {accuracy.json}}}}}').encode()
    return json.dumps(answer).encode()


def live_view(run_id: str, polling: bool, scale: int = 1) -> None:
    """Status, progress and controls of one run. While it trains, the progress line
    polls the server every second (lab_pacing: ``scale`` times slower with a large
    audience) and reruns this fragment when the run's state or pace changes."""
    try:
        status = runs.status(run_id)
    except Exception as exc:
        error_ui(f"Run {run_id} cannot be read (was it deleted?).", exc)
        return
    state = status.get("state", "?")
    viewers = _watching(run_id) if polling else 0
    if polling != (state in ACTIVE_STATES) or (polling and lab_pacing.refresh_scale(viewers) != scale):
        st.rerun()  # start, stop or re-pace the polling with a full rerun
    icon = STATE_ICONS.get(state, "")
    fraction, text = _progress(status)
    head, controls = st.columns([5, 2])  # wide enough for "See its predictions" at 1280 pixels
    with head:
        st.markdown(f"#### {icon} Run `{run_id}` is **{state}**")
        unreachable = lab_charts.progress(
            fraction, text or state, step=int(status.get("step") or 0), state=state,
            live=_live(run_id, polling, scale, run_metrics(run_id).refresh()), key=f"progress:{run_id}",
        )
    if unreachable is not None and unreachable != _poll_unreachable():
        st.session_state["_poll_unreachable"] = unreachable
        st.rerun(scope="app")  # the fragments' timers are set by the page's full run
    with controls:
        if state in ACTIVE_STATES:
            if st.button("Stop", icon=":material/stop:", key=f"stop:{run_id}", width="stretch", help="Stops after the current step and saves a checkpoint."):
                try:
                    runs.stop(run_id)
                    st.toast("Stop requested: the run stops after the current step.", icon=":material/stop:")
                except Exception as exc:
                    error_ui("The run could not be stopped.", exc)
        elif state in ("stopped", "interrupted", "failed"):
            if st.button("Resume", icon=":material/play_arrow:", key=f"resume:{run_id}", type="primary", width="stretch", help="Continues from the last checkpoint."):
                try:
                    runs.resume(run_id)
                except Exception as exc:
                    error_ui("The run could not be resumed.", exc)
                else:
                    st.rerun()
        elif state == "finished":
            # A link, not st.switch_page: a fragment cannot switch pages. The
            # Predictions page opens on focus_run, the run watched here.
            st.page_link(PREDICTIONS, label="See its predictions", icon=":material/image_search:")
    if scale > 1:
        st.caption(
            f":material/groups: {viewers} pages are watching this run, so each refreshes its progress every "
            f"{lab_pacing.POLL_EVERY_S * scale:g} s and its charts every {lab_pacing.CHARTS_EVERY_S * scale:g} s "
            "to leave the CPU to training."
        )
    if state == "failed":
        error_ui(f"The run failed. {status.get('error') or 'The log below may say why.'}")
    elif state == "interrupted":
        st.warning("The training process stopped unexpectedly (the computer slept or the process was killed). Resume continues from the last checkpoint.", icon=":material/warning:")
    elif state == "finished":
        st.success(
            f"Finished: best validation accuracy {_percent(status.get('best_val_acc'))}"
            f" (epoch {status.get('best_epoch') or '–'}), test accuracy {_percent(status.get('test_acc'))}.",
            icon=":material/check_circle:",
        )


def live_charts(run_id: str, active: bool, scale: int = 1) -> None:
    """Loss and accuracy charts and the log of one run. While it trains, the charts
    are kept up to date by the progress line's poll, from the new metric lines only."""
    try:
        version, steps, epochs, loss_fig, accuracy_fig = run_metrics(run_id).versioned()
    except Exception as exc:
        error_ui("The run's metrics could not be read.", exc)
        return
    if steps.empty and epochs.empty and not active:
        st.info("This run recorded no metrics.", icon=":material/hourglass_top:")
    else:
        live = _live(run_id, active, scale, version)
        a, b = st.columns(2)
        with a:
            lab_charts.chart(loss_fig, key=f"loss:{run_id}", live=live, part="loss")
        with b:
            lab_charts.chart(accuracy_fig, key=f"acc:{run_id}", live=live, part="accuracy")
    # Drawn only while open: st.code brings the browser a 1.5 MB syntax highlighter
    # to parse, and the tail would travel with every chart refresh.
    log = st.expander("Log (last 40 lines)", key=f"log:{run_id}", on_change="rerun")
    if log.open:
        with log:
            try:
                st.code(runs.log_tail(run_id, 40) or "(empty)", language=None)
            except Exception as exc:
                st.caption(f"No log: {exc}")


def watch_ui(frame: pd.DataFrame) -> None:
    """Pick a run and show it live (polling only while it is queued or running)."""
    ids = run_ids_newest_first(frame)
    st.subheader("Watch a run")
    if not ids:
        st.info("No runs yet. Launch one above, or start the quick demo on Home.", icon=":material/lightbulb:")
        return
    run_id = pick_run_ui(ids, frame)
    polling = dict(zip(frame["id"], frame["state"])).get(run_id) in ACTIVE_STATES
    scale = lab_pacing.refresh_scale(_watching(run_id)) if polling else 1
    # The poll refreshes the view and reruns the fragment when the run's state changes:
    # the fragment's own timer is a safety net, and the charts have none. Where the poll
    # cannot reach the server, the fragments do the refreshing themselves (lab_pacing.py).
    unreachable = polling and _poll_unreachable()
    every = lab_pacing.UNREACHABLE_RERUN_EVERY_S * scale if unreachable else lab_pacing.RERUN_EVERY_S
    st.fragment(live_view, run_every=every if polling else None)(run_id, polling, scale)
    st.fragment(live_charts, run_every=lab_pacing.CHARTS_EVERY_S * scale if unreachable else None)(run_id, polling, scale)


# --------------------------------------------------------------------------
# Predictions page


def has_predictions(run_id: str) -> bool:
    try:
        return bool(runs.prediction_epochs(run_id))
    except Exception:
        return False


PREDICTIONS_TABS = ["Test images", "Confusion matrix", "Your own image"]
ANY = -1


def _class_options(classes: list[str]) -> tuple[list[int], callable]:
    return [ANY, *range(len(classes))], (lambda i: "any class" if i == ANY else f"{i}: {classes[i]}")


def show_cell(true_index: int, pred_index: int) -> None:
    """Filter the grid to one confusion-matrix cell and switch to it (a callback)."""
    st.session_state["true_class"] = int(true_index)
    st.session_state["pred_class"] = int(pred_index)
    st.session_state["only_wrong"] = int(true_index) != int(pred_index)
    st.session_state["grid_page"] = 1
    st.session_state["pred_view"] = PREDICTIONS_TABS[0]


def _clear_filters() -> None:
    st.session_state["true_class"] = ANY
    st.session_state["pred_class"] = ANY
    st.session_state["grid_page"] = 1


GRID_COLUMNS = 6
# Two rows a page: a class talks over a few mistakes at a time, and each tile costs the
# browser ~12 ms to draw (24 tiles kept a first visit to Predictions 0.14 s longer).
PER_PAGE_OPTIONS = [12, 24, 48, 96]
PER_PAGE = PER_PAGE_OPTIONS[0]


def prediction_grid_ui(preds: pd.DataFrame, ds, classes: list[str]) -> None:
    """Filters, a pager over every matching test image, and the tiles."""
    options, label = _class_options(classes)
    for key, default in (("only_wrong", True), ("by_loss", True), ("true_class", ANY), ("pred_class", ANY), ("grid_page", 1)):
        st.session_state.setdefault(key, default)
    for key in ("true_class", "pred_class"):
        if st.session_state[key] not in options:
            st.session_state[key] = ANY
    # two rows: at 1280 pixels (a projector) one row cut the toggles' labels short
    c1, c2 = st.columns(2)
    only_wrong = c1.toggle("Misclassified only", key="only_wrong")
    by_loss = c2.toggle("Top losses first", key="by_loss", help="Sort by loss, largest first; off: by dataset index.")
    c3, c4, c5 = st.columns([2, 2, 1], vertical_alignment="bottom")
    true_class = c3.selectbox("True class", options, format_func=label, key="true_class")
    pred_class = c4.selectbox("Predicted class", options, format_func=label, key="pred_class")
    c5.button("Clear", on_click=_clear_filters, help="Show every class again.", width="stretch")
    shown = predict.filter_predictions(
        preds,
        misclassified=only_wrong,
        true_class=None if true_class == ANY else true_class,
        pred_class=None if pred_class == ANY else pred_class,
        sort_by_loss=by_loss,
    )
    if shown.empty:
        st.info("No test image matches these filters.", icon=":material/search_off:")
        return
    per_page = st.session_state.get("per_page", PER_PAGE)
    pages = max(1, math.ceil(len(shown) / per_page))
    if not 1 <= st.session_state["grid_page"] <= pages:
        st.session_state["grid_page"] = 1
    p1, p2, p3, p4 = st.columns([1, 1, 1, 3])
    page = p1.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key="grid_page")
    p2.selectbox("Per page", PER_PAGE_OPTIONS, key="per_page")  # the first option, PER_PAGE, by default
    first, last = (page - 1) * per_page, min(page * per_page, len(shown))
    p4.markdown(f"<br>Images **{first + 1}–{last}** of **{len(shown):,}** matching", unsafe_allow_html=True)
    rows = list(shown.iloc[first:last].itertuples(index=False))
    for start in range(0, len(rows), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, row in zip(cols, rows[start : start + GRID_COLUMNS]):
            ok = int(row.label) == int(row.pred)
            with col:
                st.image(predict.tile_image(ds.test_x[int(row.index)], ok, target=128), width="stretch")
                st.markdown(_tile_text(row, classes, ok), unsafe_allow_html=True)


def _tile_text(row, classes: list[str], ok: bool) -> str:
    colour = "#006b4f" if ok else "#a83a00"
    mark = "✓" if ok else "✗"
    return (
        f"<div style='line-height:1.3;font-size:0.95rem;margin-top:-0.6rem'>"
        f"<b style='color:{colour}'>{mark}</b> predicted <b style='color:{colour}'>{html.escape(classes[int(row.pred)])}</b> ({row.p_pred:.0%})<br>"
        f"true: <b>{html.escape(classes[int(row.label)])}</b> ({row.p_true:.0%})<br>"
        # a near-certain right answer's loss can be -0.0 or -1e-7 in float32: not "-0.00"
        f"loss {max(0.0, float(row.loss)):.2f} · #{int(row.index)}</div>"
    )


def _on_matrix_click() -> None:
    event = st.session_state.get("matrix_click") or {}
    points = (event.get("selection") or {}).get("points") or []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, dict):  # the browser may send the pair as {"0": t, "1": p}
            custom = [custom[k] for k in sorted(custom, key=int)]
        try:
            show_cell(int(custom[0]), int(custom[1]))
        except (TypeError, ValueError, KeyError, IndexError):
            continue  # a point of the heatmap itself: nothing to filter by
        return


def confusion_figure(matrix, classes: list[str]):
    import numpy as np
    import plotly.graph_objects as go

    n = len(classes)
    ti, pi = np.meshgrid(range(n), range(n), indexing="ij")
    custom = np.stack([ti, pi], axis=-1)
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(classes),
            y=list(classes),
            customdata=custom,
            colorscale="Blues",
            text=np.where(matrix > 0, matrix.astype(str), "") if n <= 20 else None,
            texttemplate="%{text}" if n <= 20 else None,
            textfont=dict(size=18),
            hovertemplate="true %{y}, predicted %{x}: %{z} images<extra></extra>",
            showscale=False,
        )
    )
    # Heatmap cells cannot be selected by a click; an invisible marker on each cell can.
    fig.add_trace(
        go.Scatter(
            x=[classes[p] for p in pi.ravel()],
            y=[classes[t] for t in ti.ravel()],
            customdata=custom.reshape(-1, 2),
            mode="markers",
            marker=dict(symbol="square", size=max(8, min(40, 440 // max(n, 1))), opacity=0.01, color="#000000"),
            hovertemplate="true %{y}, predicted %{x}: click to see these images<extra></extra>",
            showlegend=False,
        )
    )
    size = min(720, 120 + 48 * n)
    fig = _layout(fig, "Confusion matrix", "predicted class", "true class", height=size)
    fig.update_layout(clickmode="event+select")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def confusion_ui(preds: pd.DataFrame, classes: list[str]) -> None:
    import plotly.express as px

    matrix = predict.confusion_matrix(preds, len(classes))
    left, right = st.columns([3, 2], gap="large")
    with left:
        # the hint, not the chart's title: at 1280 pixels a longer title was cut off
        st.caption("Rows: the true class; columns: what the network said. Click a cell to see its images.")
        st.plotly_chart(
            confusion_figure(matrix, classes),
            width="stretch",
            key="matrix_click",
            theme=None,
            on_select=_on_matrix_click,
            selection_mode="points",
        )
    with right:
        st.markdown("##### Most confused pairs")
        st.caption("True class → predicted class. Click one to see its images.")
        pairs = predict.most_confused(preds, classes, k=8)
        if pairs.empty:
            st.success("No mistakes at this epoch.", icon=":material/target:")
        else:
            cols = st.columns(2)
            for i, row in enumerate(pairs.itertuples(index=False)):
                cols[i % 2].button(
                    f"{row.true} → {row.predicted}: {row.count}",
                    key=f"pair:{row.true_index}:{row.pred_index}",
                    on_click=show_cell,
                    args=(row.true_index, row.pred_index),
                    width="stretch",
                )
        acc = predict.per_class_accuracy(preds, classes)
        acc["accuracy (%)"] = acc["accuracy"] * 100
        fig = px.bar(
            acc.sort_values("accuracy"),
            x="accuracy (%)",
            y="class",
            orientation="h",
            text=acc.sort_values("accuracy")["accuracy (%)"].map(lambda v: f"{v:.0f}%"),
            hover_data=["correct", "total"],
            color_discrete_sequence=COLOURS,
        )
        fig.update_yaxes(type="category")
        fig.update_xaxes(range=[0, 105])
        height = min(900, 120 + 32 * len(classes))
        st.plotly_chart(_layout(fig, "Per-class accuracy", "accuracy (%)", "", height=height), width="stretch", key="per_class", theme=None)


UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]


def upload_ui(run_id: str, ds, config) -> None:
    """Classify an uploaded picture with the run's best weights; show its top 5 and feature maps."""
    st.markdown(
        f"Upload a picture and see what run **{run_id}** thinks it is. It is turned into a "
        f"{ds.channels}-channel {ds.image_size}x{ds.image_size} image like the {config.dataset} ones, "
        f"then resized to {config.resolved_input_size}x{config.resolved_input_size}."
    )
    upload = st.file_uploader("Picture (PNG, JPEG, GIF, BMP, WebP, TIFF)", type=UPLOAD_TYPES, key="upload")
    if upload is None:
        return
    try:
        image = predict.load_image(upload.getvalue())
    except predict.ImageError as exc:
        error_ui(str(exc))
        return
    try:
        model, run_config = run_model(run_id)
    except Exception as exc:
        error_ui(f"The weights of run {run_id} could not be loaded.", exc)
        return
    invert = st.checkbox(
        "Invert the colours (a dark drawing on light paper, for a net trained on light-on-dark images)",
        value=predict.suggest_invert(image, ds.mean),
        key=f"invert:{upload.file_id}",
    )
    try:
        stored = predict.image_to_uint8(image, channels=ds.channels, image_size=ds.image_size, invert=invert)
        x = predict.prepare_image(
            image,
            channels=ds.channels,
            image_size=ds.image_size,
            in_channels=predict.model_in_channels(model),
            input_size=run_config.resolved_input_size,
            mean=ds.mean,
            std=ds.std,
            invert=invert,
        )
        top = predict.top_k(model, x, list(ds.classes), k=5)
        maps = anatomy.feature_maps(model, x[0]).maps
    except Exception as exc:
        error_ui("This picture could not be classified.", exc)
        return
    a, b, c = st.columns([1, 1, 2], gap="large")
    a.image(image, caption=f"your picture ({image.width}x{image.height})", width="stretch")
    b.image(predict.tile_image(stored[0], None, target=192, border=2), caption="as the network sees it", width="stretch")
    with c:
        import plotly.express as px

        shown = top.assign(percent=top["probability"] * 100)
        fig = px.bar(
            shown[::-1], x="percent", y="class", orientation="h", text=shown[::-1]["percent"].map(lambda v: f"{v:.1f}%"),
            color_discrete_sequence=COLOURS,
        )
        fig.update_yaxes(type="category")
        fig.update_xaxes(range=[0, 105])
        lab_charts.chart(_layout(fig, f"Best guess: {top['class'].iloc[0]} ({100 * top['probability'].iloc[0]:.0f}%)", "probability (%)", "", height=330), key="top5")
    st.markdown("##### Its feature maps (each conv layer's channels after ReLU)")
    feature_grids_ui(maps)


# --------------------------------------------------------------------------
# Runs page


def format_runs(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    if "created" in out:
        out = out.sort_values("created", ascending=False, kind="stable")
    if "epoch" in out and "epochs" in out:
        out["epochs"] = [f"{int(e or 0)} / {int(n or 0)}" for e, n in zip(out["epoch"].fillna(0), out["epochs"].fillna(0))]
        out = out.drop(columns="epoch")
    for col in ("best_val_acc", "test_acc"):
        if col in out:
            out[col] = out[col].map(_percent)
    if "duration_s" in out:
        out["duration_s"] = out["duration_s"].map(format_duration)
    # Short headers and no "created" column (the id starts with it): at 1280 pixels the
    # duration was cut off on a projector.
    out = out.rename(columns={"best_val_acc": "best val.", "test_acc": "test", "duration_s": "duration"})
    keep = ["id", "variant", "dataset", "state", "epochs", "best val.", "test", "duration"]
    return out[[c for c in keep if c in out.columns]]


# Up to this many runs show as a plain table; more as a scrolling, sortable grid.
TABLE_ROWS = 15


_MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]<>|$~]")


def markdown_table(frame: pd.DataFrame, right: tuple[str, ...] = ()) -> str:
    """A frame as a Markdown table, every cell shown as its plain text (a missing one
    empty), the ``right`` columns aligned right.

    Streamlit draws it in its Markdown type, larger and roomier than ``st.table``'s,
    and without Arrow's reader, which a first visit fetches and runs before the
    page is complete (Runs' first render 0.07 s sooner; bench/README.md)."""
    def row(cells) -> str:
        return "| " + " | ".join(_MARKDOWN_SPECIAL.sub(r"\\\g<0>", _cell_text(c)).replace("\n", " ") for c in cells) + " |"

    lines = [row(frame.columns), "|" + "".join(" ---: |" if c in right else " --- |" for c in frame.columns)]
    lines += [row(r) for r in frame.itertuples(index=False)]
    return "\n".join(lines)


def runs_table_ui(frame: pd.DataFrame) -> None:
    """Every run. While the list is short, a Markdown table (large type on a
    projector; the grid's 1.2 MB of code kept a first visit to Runs 0.2 s longer)."""
    shown = format_runs(frame)
    if len(shown) <= TABLE_ROWS:
        st.markdown(markdown_table(shown, right=("epochs", "best val.", "test", "duration")))
    else:
        st.dataframe(shown, hide_index=True, width="stretch")


@st.cache_data(show_spinner=False, max_entries=64)
def _frames(run_id: str, stamp: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    return runs.metrics_frames(run_id)


def metrics_frames(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = runs.run_path(run_id) / "metrics.jsonl"
    stamp = path.stat().st_mtime if path.exists() else 0.0
    return _frames(run_id, stamp)


CURVES = {
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_acc": "training accuracy (%)",
    "val_loss": "validation loss",
    "test_loss": "test loss",
    "train_loss": "training loss",
}


def compare_runs_ui(frame: pd.DataFrame, ids: list[str]) -> None:
    c1, c2 = st.columns([3, 1])
    chosen = c1.multiselect("Runs to overlay", ids, default=ids[: min(4, len(ids))], key="compare_runs")
    metric = c2.selectbox("Curve", list(CURVES), format_func=CURVES.get, key="compare_metric")
    if not chosen:
        st.caption("Pick one or more runs to overlay their curves.")
        return
    percent = metric.endswith("_acc")
    series = []
    for run_id in chosen:
        try:
            _, epochs = metrics_frames(run_id)
        except Exception as exc:
            error_ui(f"The metrics of run {run_id} could not be read.", exc)
            continue
        if epochs.empty or metric not in epochs or epochs[metric].isna().all():
            continue
        y = epochs[metric] * (100 if percent else 1)
        series.append(lab_charts.Line(run_id, epochs["epoch"].tolist(), y.tolist()))
    if not series:
        st.info("None of these runs has finished an epoch yet.", icon=":material/hourglass_top:")
        return
    # Plain SVG, not plotly: this chart is in the page's first screen, and plotly.js
    # kept a first visit to Runs waiting about 0.3 s longer (bench/README.md, "Session 8").
    lab_charts.lines(
        series, key="compare_chart", title=CURVES[metric] + " by epoch", x_title="epoch", y_title=CURVES[metric],
        colours=COLOURS, y_range=(0, 101) if percent else None, x_integer=True, y_suffix="%" if percent else "",
    )


def _file_reader(path: Path):
    return lambda: path.read_bytes()


def _csv_reader(run_id: str, which: str):
    """The run's metrics per step or per epoch as CSV, read when asked for."""
    def read() -> bytes:
        steps, epochs = metrics_frames(run_id)
        return (steps if which == "steps" else epochs).to_csv(index=False).encode()
    return read


def _delete(run_id: str) -> None:
    try:
        runs.delete_run(run_id)
    except Exception as exc:
        st.session_state["_delete_error"] = f"Run {run_id} could not be deleted: {exc}"
    else:
        forget_run_metrics(run_id)
        st.session_state["_deleted"] = run_id
    st.session_state.pop("confirm_delete", None)


def run_files_ui(ids: list[str]) -> None:
    if err := st.session_state.pop("_delete_error", None):
        error_ui(err)
    if gone := st.session_state.pop("_deleted", None):
        st.success(f"Run {gone} was deleted.", icon=":material/delete:")
    focus = st.session_state.get("focus_run")
    if st.session_state.get("files_run") not in ids:
        st.session_state["files_run"] = focus if focus in ids else ids[0]
    run_id = st.selectbox("Run", ids, key="files_run")
    folder = runs.run_path(run_id)
    try:
        status = runs.status(run_id)
    except Exception as exc:
        error_ui(f"Run {run_id} cannot be read.", exc)
        return
    # Every file is read when its button is clicked, not on each rerun: the page stays
    # light, and the browser fetches nothing it was not asked for.
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button(
        "config.json", icon=":material/download:",
        data=_file_reader(folder / "config.json"),
        file_name=f"{run_id}-config.json",
        mime="application/json",
        key="dl_config",
        width="stretch",
    )
    # Labels named like the files: "metrics per epoch (CSV)" was cut short at 1280 pixels.
    c2.download_button(
        "epochs.csv", icon=":material/download:", data=_csv_reader(run_id, "epochs"),
        file_name=f"{run_id}-epochs.csv", mime="text/csv", key="dl_epochs", width="stretch",
        help="The metrics of every epoch: losses, accuracies, learning rate and times.",
    )
    c3.download_button(
        "steps.csv", icon=":material/download:", data=_csv_reader(run_id, "steps"),
        file_name=f"{run_id}-steps.csv", mime="text/csv", key="dl_steps", width="stretch",
        help="The metrics of every logged training step: loss, learning rate and images/s.",
    )
    best = folder / "best.pt"
    if best.exists():
        c4.download_button(
            icon=":material/download:", label=f"best.pt ({best.stat().st_size / 2**20:.1f} MB)",
            data=_file_reader(best),
            file_name=f"{run_id}-best.pt",
            mime="application/octet-stream",
            key="dl_best",
            width="stretch",
        )
    else:
        c4.caption("No best.pt yet: it is written after the first epoch.")

    active = status.get("state") in ACTIVE_STATES
    if st.session_state.get("confirm_delete") != run_id:
        st.button(
            "Delete this run…", icon=":material/delete:",
            key="ask_delete",
            disabled=active,
            help="Stop the run first." if active else "Deletes the run's folder: weights, metrics and predictions.",
            on_click=lambda: st.session_state.__setitem__("confirm_delete", run_id),
        )
        if active:
            st.caption("A run that is training cannot be deleted: stop it on the Train page first.")
        return
    st.warning(f"Delete run **{run_id}** with its weights, metrics and predictions? This cannot be undone.", icon=":material/warning:")
    y, n, _ = st.columns([1, 1, 4])
    y.button("Yes, delete it", type="primary", key="yes_delete", on_click=_delete, args=(run_id,), width="stretch")
    n.button("Cancel", key="no_delete", on_click=lambda: st.session_state.pop("confirm_delete", None), width="stretch")

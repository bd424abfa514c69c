"""Calls into ``alexnet_core`` that every session shares: datasets, networks, a
run's weights and predictions, tables, time estimates, and launching a run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from alexnet_core import anatomy, datasets, insight, paths, predict, runs, training, variants
from alexnet_core.config import ConfigError, TrainConfig
from ui.choice import Selection, defaults, session_id
from ui.classroom import launch_refusal, owner_id
from ui.formatting import error_ui


@st.cache_resource(show_spinner=False, max_entries=4)
def _load_dataset(name: str, root: str | None, folder: str | None, image_size: int | None = None,
                  squash: bool = False) -> datasets.Dataset:
    return datasets.load_dataset(name, root, folder=folder, download=False, image_size=image_size, squash=squash)


def load_dataset(name: str, root: str | None = None, folder: str | None = None, image_size: int | None = None,
                 squash: bool = False) -> datasets.Dataset:
    """A dataset, loaded once for every session (a spinner if that takes a while); a run's photos
    as it stored them with ``**config.stored_photos``."""
    with st.spinner("Loading the dataset…"):
        return _load_dataset(name, root, folder, image_size, squash)


@st.cache_resource(show_spinner=False, max_entries=4)
def test_fingerprint(name: str, root: str | None = None, folder: str | None = None, image_size: int | None = None,
                     squash: bool = False) -> str:
    """predict.test_fingerprint of the dataset ``load_dataset`` gives for the same arguments."""
    return predict.test_fingerprint(load_dataset(name, root, folder, image_size, squash))


def run_dataset(config: TrainConfig) -> datasets.Dataset:
    """The dataset a run trains or trained on, its photos stored as the run stores them."""
    return load_dataset(config.dataset, config.data_root, config.folder, **config.stored_photos)


def data_changed(config: TrainConfig, recorded: str | None) -> bool:
    """Whether the test images here differ from the ones a run recorded (its status's
    ``test_fingerprint``; runs made before it was recorded have none)."""
    return bool(recorded) and recorded != test_fingerprint(config.dataset, config.data_root, config.folder,
                                                           **config.stored_photos)


def model_io(sel: Selection) -> tuple[int, int]:
    """(in_channels, num_classes) of the network trained on the selection: the variant's
    native channels (the data is adapted to it, as in training) and the dataset's classes."""
    info = datasets.get_info(sel.dataset)
    if info.num_classes is not None:
        return sel.spec.in_channels, info.num_classes
    try:
        return sel.spec.in_channels, load_dataset(sel.dataset, None, sel.folder).num_classes
    except Exception:
        return sel.spec.in_channels, 2  # an image folder not chosen yet: show a two-class head


@st.cache_resource(show_spinner="Building the network…", max_entries=8)
def untrained_model(variant: str, in_channels: int, num_classes: int, input_size: int):
    """A freshly initialised network (seed 0), in eval mode; the server's random state
    is left as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return variants.get_model(variant, in_channels, num_classes, input_size).eval()


@st.cache_resource(show_spinner=False, max_entries=6)
def run_start_model(run_id: str, num_classes: int):
    """The weights a run started from, before its first step."""
    return training.initial_model(run_config(run_id), num_classes)


@st.cache_resource(show_spinner="Loading the run's weights…", max_entries=6)
def _run_model(run_id: str, which: str, stamp: float):
    model, config = runs.load_model(run_id, which=which)
    return model.eval(), config


def _stamp(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def run_model(run_id: str, which: str = "best"):
    """A run's network and config; loaded again when its checkpoint file changes."""
    return _run_model(run_id, which, _stamp(runs.run_path(run_id) / f"{which}.pt"))


@st.cache_data(show_spinner=False, max_entries=32)
def _grad_cams(run_id: str, stamp: float, indices: tuple, targets: tuple, _ds):
    import torch

    model, _ = run_model(run_id)
    x = insight.model_input(model, _ds.test_x[list(indices)], mean=_ds.mean, std=_ds.std)
    return insight.grad_cam(model, x, torch.tensor(targets))


def grad_cams(run_id: str, rows: pd.DataFrame, ds):
    """Grad-CAM maps of the test images in ``rows`` (index, pred, label) with the run's best
    weights: (N, 2, h, w), for the class it said and the true class."""
    return _grad_cams(run_id, _stamp(runs.run_path(run_id) / "best.pt"), tuple(int(i) for i in rows["index"]),
                      tuple((int(p), int(t)) for p, t in zip(rows["pred"], rows["label"])), ds)


@st.cache_data(show_spinner="Reading the predictions…", max_entries=16)
def _predictions(run_id: str, epoch: int | None, stamp: float) -> pd.DataFrame:
    return runs.read_predictions(run_id, epoch)


def predictions(run_id: str, epoch: int | None) -> pd.DataFrame:
    folder = runs.run_path(run_id) / "predictions"
    stamp = max((p.stat().st_mtime for p in folder.glob("*")), default=0.0) if folder.exists() else 0.0
    return _predictions(run_id, epoch, stamp)


def run_config(run_id: str) -> TrainConfig:
    """A run's config.json, each field checked as strictly as the form's, its data root
    inside the lab's: a hand-edited file is refused with a sentence, never shown."""
    config = runs.read_config(run_id).check_fields()
    if config.data_root is not None and not paths.is_within(config.data_root, paths.data_root()):
        raise ConfigError(f"Its config.json names the data folder {config.data_root}, outside the lab's data root "
                          f"{paths.data_root()}; the lab reads images only from there.")
    return config


def has_predictions(run_id: str) -> bool:
    try:
        return bool(runs.prediction_epochs(run_id))
    except Exception:
        return False


@st.cache_data(show_spinner=False, max_entries=64)
def _frames(run_id: str, stamp: float, steps: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    return runs.metrics_frames(run_id, steps=steps)


def metrics_frames(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(steps, epochs) of a run; read again when its metrics file changes."""
    return _frames(run_id, _stamp(runs.run_path(run_id) / "metrics.jsonl"), True)


def epoch_frame(run_id: str) -> pd.DataFrame:
    """The epochs of a run alone: its step lines, most of a long run's file, are not parsed."""
    return _frames(run_id, _stamp(runs.run_path(run_id) / "metrics.jsonl"), False)[1]


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


def list_runs() -> pd.DataFrame:
    """Every run in the store; an empty frame, with the reason shown, if it cannot be read."""
    try:
        return runs.list_runs()
    except Exception as exc:
        error_ui("The run store could not be read.", exc)
        return pd.DataFrame(columns=["id", "variant", "dataset", "state"])


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


# --------------------------------------------------------------------------- memory and time per epoch

# The timing runs in the server: at most this batch, so that it takes little memory
# (the paper net at 227 with the form's 4,096 would want tens of GB). The time per
# image barely depends on the batch on a CPU.
ESTIMATE_BATCH = 32
# A training run may plan on this share of the memory free now.
MEMORY_SHARE = 0.8


def training_memory_mb(config: TrainConfig, batch_size: int | None = None) -> float:
    """About the memory a training step of ``config`` takes (anatomy.training_memory_mb)."""
    info = datasets.get_info(config.dataset)
    spec = variants.get_spec(config.variant)
    size = config.resolved_input_size
    _, totals = layer_table(config.variant, spec.in_channels, info.num_classes or 2, size)
    states = 2 if config.optimizer in ("adam", "adamw") else int(config.momentum > 0)
    return anatomy.training_memory_mb(totals, batch_size or config.batch_size, states)


def largest_batch(config: TrainConfig, memory_mb: float) -> int:
    """The largest batch whose training step fits in ``memory_mb``."""
    one, two = training_memory_mb(config, 1), training_memory_mb(config, 2)
    per_image, fixed = two - one, 2 * one - two
    return max(0, int((memory_mb - fixed) // per_image))


def estimate_key(config: TrainConfig) -> str:
    """What an epoch's time depends on: every setting but the number of epochs."""
    return json.dumps({k: v for k, v in config.to_dict().items() if k not in ("epochs", "recipe")}, sort_keys=True)


@st.cache_resource
def _estimates() -> dict[str, tuple[float, float]]:
    # A plain dict rather than st.cache_data: a page asks whether a timing is known
    # without timing it (a new session shows another's timing at once).
    # {key: (seconds per epoch, time.monotonic() when it was timed)}
    return {}


_ESTIMATES_KEPT = 64
# A timing is the machine's speed when it was taken, and a laptop's load changes from
# minute to minute: older than this, it is timed again rather than shown.
ESTIMATE_FRESH_S = 60.0


def _fresh(entry: tuple[float, float] | None) -> float | None:
    if entry is None or time.monotonic() - entry[1] > ESTIMATE_FRESH_S:
        return None
    return entry[0]


def known_estimate(key: str) -> float | None:
    """The seconds per epoch timed for ``key`` in the last ESTIMATE_FRESH_S, else None."""
    return _fresh(_estimates().get(key))


def estimate(config: TrainConfig) -> float:
    """Seconds per epoch of ``config`` on this machine as busy as it is now, from a few
    real training steps timed now (or in the last ESTIMATE_FRESH_S)."""
    known = _estimates()
    key = estimate_key(config)
    seconds = _fresh(known.get(key))
    if seconds is None:
        dataset = run_dataset(config)
        timed = config.replace(batch_size=min(config.batch_size, ESTIMATE_BATCH))
        seconds = training.estimate_epoch_seconds(timed, dataset=dataset)
        known.pop(key, None)  # re-inserted last: the oldest timings are the first dropped
        known[key] = (seconds, time.monotonic())
        while len(known) > _ESTIMATES_KEPT:
            known.pop(next(iter(known)), None)
    return seconds


# --------------------------------------------------------------------------- launching

# A double click sends two clicks; with fastReruns the second one's script thread
# runs its callback while the first thread, told to stop, may no longer write
# st.session_state. So the record of recent launches lives in the server process,
# keyed by session, and a lock makes check-launch-record one step.
RELAUNCH_GUARD_S = 5.0


@st.cache_resource
def _launch_guard() -> tuple[threading.Lock, dict[str, tuple[str, float, str]]]:
    return threading.Lock(), {}


def launch_once(config: TrainConfig) -> tuple[str, bool]:
    """Launch ``config`` unless this browser session launched the same settings in the
    last few seconds. Returns (run id, whether it is a new run). Raises what
    ``runs.launch`` raises (a ConfigError for settings that cannot train), and
    ``runs.RunError`` when classroom mode refuses this person another run."""
    signature = repr(config.to_dict())
    lock, recent = _launch_guard()
    key = session_id()
    with lock:
        last = recent.get(key)
        now = time.monotonic()
        if last and last[0] == signature and now - last[1] < RELAUNCH_GUARD_S:
            return last[2], False
        if refusal := launch_refusal():
            raise runs.RunError(refusal)
        run_id = runs.launch(config, owner=owner_id())
        recent[key] = (signature, now, run_id)
        for other, (_, when, _) in list(recent.items()):  # forget sessions long gone
            if now - when > 3600:
                del recent[other]
    return run_id, True


# --------------------------------------------------------------------------- start-up


def warm_caches() -> None:
    """Do once at server start (app.py) what the default view's first visits would
    otherwise do while a student waits: the Model page's layer table (torchinfo)
    and the default dataset (Train's estimate, Predictions' tiles)."""
    variant, dataset = defaults()
    sel = Selection(variant, dataset, variants.get_spec(variant).input_size, None)
    layer_table(variant, *model_io(sel), sel.input_size)
    _load_dataset(dataset, None, None)  # without the spinner: there is no page to draw it in

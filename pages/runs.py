"""Runs: every run, their curves side by side, downloads, and tidying up."""

from pathlib import Path

import pandas as pd
import streamlit as st

from alexnet_core import runs, variants
from alexnet_core.runfiles import ACTIVE_STATES
from ui import cached, choice, classroom
from ui.charts import lines_figure
from ui.formatting import error_ui, format_duration, md, percent, table_ui
from ui.live import forget_run_metrics

# Up to this many runs show as a plain table; more as a scrolling, sortable grid.
TABLE_ROWS = 15
CURVES = {
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_acc": "training accuracy (%)",
    "val_loss": "validation loss",
    "test_loss": "test loss",
    "train_loss": "training loss",
}


def format_runs(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    if "created" in out:
        out = out.sort_values("created", ascending=False, kind="stable")
    if "epoch" in out and "epochs" in out:
        out["epochs"] = [f"{int(e or 0)} / {int(n or 0)}" for e, n in zip(out["epoch"].fillna(0), out["epochs"].fillna(0))]
    for col in ("best_val_acc", "test_acc"):
        if col in out:
            out[col] = out[col].map(percent)
    if "duration_s" in out:
        out["duration_s"] = out["duration_s"].map(format_duration)
    if "lr" in out:
        out["lr"] = out["lr"].map(lambda lr: "" if pd.isna(lr) else f"{lr:g}")
    if "input_size" in out:
        out["input_size"] = [input_side(v, s) for v, s in zip(out["variant"], out["input_size"])]
    if "batch_size" in out:
        out["batch_size"] = out["batch_size"].map(lambda b: "" if pd.isna(b) else f"{int(b)}")
    # Short headers, no "created" column (the id starts with it), and the run's short name
    # first: at 1280 pixels the duration was cut off on a projector. What the name already
    # says (variant, dataset) and the full id follow, a sideways scroll away.
    out = out.rename(columns={"best_val_acc": "best val.", "test_acc": "test", "duration_s": "duration",
                              "batch_size": "batch", "input_size": "size", "name": "run"})
    settings = ["size", "batch", "lr", "state", "epochs", "best val.", "test", "duration"]
    # The recipe tells a post's setup as written from ours, both "mnist · fashion-mnist".
    keep = (["run", *settings, "recipe", "variant", "dataset", "device", "id"] if "run" in out.columns
            else ["id", "variant", "dataset", *settings, "recipe"])
    return out[[c for c in keep if c in out.columns]]


def input_side(variant, size) -> str:
    """The side a run trained at: its input size, else its variant's own ("" when unknown)."""
    if not pd.isna(size):
        return f"{int(size)}"
    try:
        return f"{variants.get_spec(variant).input_size}"
    except (ValueError, TypeError):
        return ""


def compare_ui(ids: list[str], names: dict[str, str]) -> None:
    c1, c2 = st.columns([3, 1])
    chosen = c1.multiselect("Runs to overlay", ids, default=ids[: min(4, len(ids))], key="compare_runs",
                            format_func=lambda rid: names.get(rid, rid))
    metric = c2.selectbox("Curve", list(CURVES), format_func=CURVES.get, key="compare_metric")
    if not chosen:
        st.caption("Pick one or more runs to overlay their curves.")
        return
    scale = 100 if metric.endswith("_acc") else 1
    series = {}
    for run_id in chosen:
        try:
            epochs = cached.epoch_frame(run_id)
        except Exception as exc:
            error_ui(f"The metrics of run {run_id} could not be read.", exc)
            continue
        if not epochs.empty and metric in epochs and epochs[metric].notna().any():
            series[names.get(run_id, run_id)] = (epochs["epoch"].tolist(), (epochs[metric] * scale).tolist())
    if not series:
        st.info("None of these runs has finished an epoch yet.", icon=":material/hourglass_top:")
        return
    st.plotly_chart(lines_figure(series, CURVES[metric] + " by epoch", "epoch", CURVES[metric], percent=scale == 100),
                    key="compare_chart", theme=None, width="stretch")


def file_reader(path: Path):
    return lambda: path.read_bytes()


def csv_reader(run_id: str, which: str):
    """The run's metrics per step or per epoch as CSV, read when asked for."""
    def read() -> bytes:
        steps, epochs = cached.metrics_frames(run_id)
        return (steps if which == "steps" else epochs).to_csv(index=False).encode()
    return read


def delete(run_id: str) -> None:
    try:
        if not classroom.may_manage(runs.status(run_id).get("owner")):
            raise runs.RunError(classroom.not_yours("delete"))
        runs.delete_run(run_id)
    except Exception as exc:
        st.session_state["_delete_error"] = f"Run {run_id} could not be deleted: {exc}"
    else:
        forget_run_metrics(run_id)
        st.session_state["_deleted"] = run_id
    st.session_state.pop("confirm_delete", None)


def files_ui(ids: list[str], names: dict[str, str]) -> None:
    if err := st.session_state.pop("_delete_error", None):
        error_ui(err)
    if gone := st.session_state.pop("_deleted", None):
        st.success(f"Run {md(gone)} was deleted.", icon=":material/delete:")
    focus = st.session_state.get("focus_run")
    if st.session_state.get("files_run") not in ids:
        st.session_state["files_run"] = focus if focus in ids else ids[0]
    run_id = st.selectbox("Run", ids, key="files_run", format_func=lambda rid: f"{names.get(rid, rid)} ({rid})")
    folder = runs.run_path(run_id)
    try:
        status = runs.status(run_id)
    except Exception as exc:
        error_ui(f"Run {run_id} cannot be read.", exc)
        return
    if status.get("state") == "damaged":  # nothing in it can be trusted: only deleting it is offered
        error_ui(status.get("error") or "This run is damaged.")
        delete_ui(run_id, active=False, owner=status.get("owner"))
        return
    # Every file is read when its button is clicked, not on each rerun. A click does not rerun
    # the page: the rerun could revoke the file the click asked for before it was served.
    c1, c2, c3, c4 = st.columns(4)
    common = dict(icon=":material/download:", width="stretch", on_click="ignore")
    c1.download_button("config.json", data=file_reader(folder / "config.json"), file_name=f"{run_id}-config.json",
                       mime="application/json", key="dl_config", **common)
    # Labels named like the files: "metrics per epoch (CSV)" was cut short at 1280 pixels.
    c2.download_button("epochs.csv", data=csv_reader(run_id, "epochs"), file_name=f"{run_id}-epochs.csv",
                       mime="text/csv", key="dl_epochs", **common,
                       help="The metrics of every epoch: losses, accuracies, learning rate and times.")
    c3.download_button("steps.csv", data=csv_reader(run_id, "steps"), file_name=f"{run_id}-steps.csv",
                       mime="text/csv", key="dl_steps", **common,
                       help="The metrics of every logged training step: loss, learning rate and images/s.")
    best = folder / "best.pt"
    if best.exists():
        c4.download_button(f"best.pt ({best.stat().st_size / 2**20:.1f} MB)", data=file_reader(best),
                           file_name=f"{run_id}-best.pt", mime="application/octet-stream", key="dl_best", **common)
    else:
        c4.caption("No best.pt yet: it is written after the first epoch.")

    delete_ui(run_id, active=status.get("state") in ACTIVE_STATES, owner=status.get("owner"))


def delete_ui(run_id: str, *, active: bool, owner) -> None:
    """Delete, after a confirmation; not while the run trains, and in classroom mode only
    by whoever launched it or the teacher."""
    if not classroom.may_manage(owner):
        st.caption(classroom.not_yours("delete"))
        return
    if st.session_state.get("confirm_delete") != run_id:
        st.button("Delete this run…", icon=":material/delete:", key="ask_delete", disabled=active,
                  help="Stop the run first." if active else "Deletes the run's folder: weights, metrics and predictions.",
                  on_click=lambda: st.session_state.__setitem__("confirm_delete", run_id))
        if active:
            st.caption("A run that is training cannot be deleted: stop it on the Train page first.")
        return
    st.warning(f"Delete run **{md(run_id)}** with its weights, metrics and predictions? This cannot be undone.",
               icon=":material/warning:")
    y, n, _ = st.columns([2, 1, 2])  # "Yes, delete it" was cut short at 1280 pixels
    y.button("Yes, delete it", type="primary", key="yes_delete", on_click=delete, args=(run_id,), width="stretch")
    n.button("Cancel", key="no_delete", on_click=lambda: st.session_state.pop("confirm_delete", None), width="stretch")


st.title("Runs")
with st.sidebar:
    classroom.teacher_ui()

frame = cached.list_runs()
ids = choice.run_ids_newest_first(frame)
if not ids:
    st.info("No runs yet. Launch one on the Train page, or start the quick demo on Home.", icon=":material/lightbulb:")
    st.page_link(choice.TRAIN, label="Go to Train", icon=":material/model_training:")
    st.stop()

shown = format_runs(frame)
if len(shown) <= TABLE_ROWS:
    table_ui(shown, right=("size", "batch", "lr", "epochs", "best val.", "test", "duration"))
else:
    st.dataframe(shown, hide_index=True, width="stretch")
if "error" in frame:
    for run_id, reason in zip(frame["id"][frame["state"] == "damaged"], frame["error"][frame["state"] == "damaged"]):
        st.warning(f"**{md(run_id)}**: {md(reason or 'damaged')}", icon=":material/broken_image:")

st.subheader("Compare curves")
states = dict(zip(frame["id"], frame["state"]))
names = choice.run_names(frame)
compare_ui([rid for rid in ids if states.get(rid) != "damaged"], names)  # a damaged run's metrics cannot be trusted

# Drawn only while open: the buttons stay out of the page's first load.
files = st.expander("Download or delete a run", icon=":material/folder_open:", key="run_files", on_change="rerun")
if files.open:
    with files:
        files_ui(ids, names)

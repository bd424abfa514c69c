"""What the visitor is looking at: the pages, the sidebar choice (variant, dataset,
input size; kept across pages and in the URL) and the run picker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from alexnet_core import datasets, variants
from alexnet_core.config import TrainConfig
from alexnet_core.recipes import get_recipe
from alexnet_core.runfiles import ACTIVE_STATES
from ui.formatting import md

# Absolute paths: st.Page, st.switch_page and st.page_link resolve relative ones
# against the navigation script's folder (ui/), not the repository.
_PAGES = Path(__file__).resolve().parent.parent / "pages"
HOME = str(_PAGES / "home.py")
MODEL = str(_PAGES / "model.py")
TRAIN = str(_PAGES / "train.py")
PREDICTIONS = str(_PAGES / "predictions.py")
LEARNED = str(_PAGES / "learned.py")
RUNS = str(_PAGES / "runs.py")


@dataclass(frozen=True)
class Selection:
    variant: str
    dataset: str
    input_size: int
    folder: str | None

    @property
    def spec(self):
        return variants.get_spec(self.variant)


def defaults() -> tuple[str, str]:
    """The sidebar's defaults: TrainConfig's own (the small net on the bundled digits)."""
    config = TrainConfig()
    return config.variant, config.dataset


def size_range(variant: str) -> tuple[int, int]:
    """Input sizes offered for a variant: its minimum up to about twice its native size
    (larger inputs grow the classifier of the variants without adaptive pooling)."""
    spec = variants.get_spec(variant)
    return variants.min_input_size(variant), max(64, min(2 * spec.input_size, 320))


def dataset_availability(name: str, folder: str | None = None) -> tuple[bool, str]:
    """(whether the dataset's files are here, where they are or how to get them)."""
    try:
        return datasets.availability(name, folder=folder)
    except Exception as exc:  # a bad folder name, an unreadable root
        return False, str(exc)


def _check_link() -> None:
    """On a session's first run, compare the link's values with the registries and
    remember a notice for each one that falls back to the default."""
    if "link_checked" in st.session_state:
        return
    st.session_state["link_checked"] = True
    notices: list[str] = []
    params = st.query_params
    variant, dataset = defaults()
    asked = params.get("variant")
    if asked is not None:
        if asked in variants.list_models():
            variant = asked
        else:
            notices.append(
                f"The link asks for the variant **{md(asked)}**, which does not exist; showing "
                f"**{variant}** instead. Variants: {', '.join(variants.list_models())}."
            )
    asked = params.get("dataset")
    if asked is not None and asked not in datasets.list_datasets():
        notices.append(
            f"The link asks for the dataset **{md(asked)}**, which does not exist; showing "
            f"**{dataset}** instead. Datasets: {', '.join(datasets.list_datasets())}."
        )
    asked = params.get("size")
    if asked is not None:
        lo, hi = size_range(variant)
        try:
            size = int(asked)
        except ValueError:
            size = None
        if size is None or not lo <= size <= hi:
            notices.append(
                f"The link asks for the input size **{md(asked)}**, which {variant} cannot take "
                f"(it takes {lo} to {hi} pixels here); showing its native size "
                f"**{variants.get_spec(variant).input_size}** instead."
            )
    st.session_state["link_notices"] = notices


def _on_variant_change() -> None:
    # The new variant's native size, set, not forgotten: a forgotten value came back from
    # the browser (28 stayed in the box, in red, after mnist -> paper).
    st.session_state["size"] = variants.get_spec(st.session_state["variant"]).input_size


def sidebar_ui() -> Selection:
    """Draw the sidebar choice (kept across pages and in the URL) and return it."""
    _check_link()
    models, names = variants.list_models(), datasets.list_datasets()
    default_variant, default_dataset = defaults()
    with st.sidebar:
        st.markdown("### Your choice")
        variant = st.selectbox(
            "AlexNet variant", models, index=models.index(default_variant), key="variant", bind="query-params",
            on_change=_on_variant_change,
            help="The network to inspect and train. Each one is a named AlexNet from the paper or a blog post.",
        )
        spec = variants.get_spec(variant)
        st.caption(f"{spec.title}: {md(spec.description)}")  # text, not Markdown: "256*2*2" lost its stars
        dataset = st.selectbox(
            "Dataset", names, index=names.index(default_dataset), key="dataset", bind="query-params",
            help="The images to train on and look at.",
        )
        folder = None
        if dataset == "folder":
            folder = st.text_input(
                "Image folder (one sub-folder per class)", key="folder", bind="query-params",
                help="A folder inside the data root, e.g. cats_vs_dogs/train.",
            ).strip() or None
        lo, hi = size_range(variant)
        if "size" in st.session_state and not lo <= st.session_state["size"] <= hi:
            st.session_state.pop("size")
        size = st.number_input(
            "Input size (pixels)", min_value=lo, max_value=hi, value=spec.input_size, step=1, key="size",
            bind="query-params",
            help=f"Images are resized to this square size. {variant} is built for "
            f"{spec.input_size}x{spec.input_size} and takes at least {lo}x{lo}.",
        )
        ok, where = dataset_availability(dataset, folder)
        if ok:
            st.caption(f":material/check_circle: {datasets.get_info(dataset).title}: {md(where)}")
        else:
            st.warning(md(where), icon=":material/download:")
    return Selection(variant=variant, dataset=dataset, input_size=int(size), folder=folder)


def current() -> Selection:
    """The sidebar choice as the frame drew it in this run."""
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


def apply_recipe_to_sidebar(name: str) -> None:
    """Callback: move the sidebar's variant, dataset and size to a recipe's."""
    config = get_recipe(name).config
    st.session_state["variant"] = config.variant
    st.session_state["dataset"] = config.dataset
    st.session_state["size"] = config.resolved_input_size


def session_id() -> str:
    """An id of this browser tab's session, made on its first run (Streamlit's own is
    not public)."""
    if "_session_id" not in st.session_state:
        st.session_state["_session_id"] = uuid.uuid4().hex
    return st.session_state["_session_id"]


def run_ids_newest_first(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    if "created" in frame:
        frame = frame.sort_values("created", ascending=False, kind="stable")
    return list(frame["id"])


def runs_with_predictions_or_stop(frame: pd.DataFrame, has_predictions, why: str) -> list[str]:
    """The runs that saved predictions, newest first; with none, ``why`` and a link to
    Train, and the page stops there."""
    ids = [rid for rid in run_ids_newest_first(frame) if has_predictions(rid)]
    if not ids:
        st.info(why, icon=":material/lightbulb:")
        st.page_link(TRAIN, label="Go to Train", icon=":material/model_training:")
        st.stop()
    return ids


def run_names(frame: pd.DataFrame) -> dict[str, str]:
    """Run id -> short readable name (``mnist · digits #3``)."""
    if frame.empty or "name" not in frame:
        return {}
    return dict(zip(frame["id"], frame["name"]))


def watch_next(run_id: str) -> None:
    """After a launch: the Train page picks ``run_id`` next, and keeps its live view
    on top of the form once it ends, so its result and links stay in sight."""
    st.session_state["focus_run"] = run_id
    st.session_state["_watch_next"] = run_id
    st.session_state["launched_here"] = run_id


def pick_run_ui(ids: list[str], frame: pd.DataFrame, *, label: str = "Run") -> str:
    """The run picker shared by Train and Predictions, kept in ``?run=`` in the URL.

    The picker shows short names, the URL holds the id (a widget bound to the
    URL would write the shown name there). Picks, in order: a run just
    launched, a link's run the session has not seen in its URL yet, the one
    picked before, the one last looked at, the newest running one, the newest.
    A link naming a run that does not exist gets a notice.
    """
    state = st.session_state
    asked = st.query_params.get("run")
    if asked is not None and asked not in ids:
        st.warning(f"The link names run **{md(asked)}**, which does not exist (any more); showing another run.",
                   icon=":material/link:")
    launched = state.pop("_watch_next", None)
    if launched in ids:
        state["run"] = launched
    elif asked in ids and asked != state.get("_run_in_url"):
        state["run"] = asked
    elif state.get("run") not in ids:
        focus = state.get("focus_run")
        active = [rid for rid, run_state in zip(frame["id"], frame["state"]) if run_state in ACTIVE_STATES]
        state["run"] = focus if focus in ids else (active[0] if active else ids[0])
    names = run_names(frame)
    run_id = st.selectbox(label, ids, key="run", format_func=lambda rid: names.get(rid, rid),
                          help="Every run in the run store, newest first, by its short name: the variant, the dataset "
                               "and its number among their runs. Its full id is in the URL and on the Runs page.")
    st.query_params["run"] = state["_run_in_url"] = state["focus_run"] = run_id
    return run_id

"""Predictions: what a run gets right and wrong, image by image."""

import streamlit as st

import lab_ui
from alexnet_core import predict, runs

st.title("Predictions")

frame = lab_ui.list_runs()
ids = [rid for rid in lab_ui.run_ids_newest_first(frame) if lab_ui.has_predictions(rid)]
if not ids:
    st.info(
        "No run has predictions yet: a run saves them at the end of every epoch. "
        "Launch one on the Train page (the quick demo on Home takes seconds).",
        icon=":material/lightbulb:",
    )
    st.page_link(lab_ui.TRAIN, label="Go to Train", icon=":material/model_training:")
    st.stop()

top = st.columns([3, 1])
with top[0]:
    run_id = lab_ui.pick_run_ui(ids, frame)
try:
    epochs = runs.prediction_epochs(run_id)
    config = runs.read_config(run_id)
except Exception as exc:
    lab_ui.error_ui(f"Run {run_id} cannot be read.", exc)
    st.stop()
with top[1]:
    epoch = st.selectbox(
        "Epoch", epochs[::-1], key=f"epoch:{run_id}", help="Predictions are saved after every epoch; the newest is first."
    )

try:
    preds = lab_ui.predictions(run_id, epoch)
    ds = lab_ui.load_dataset(config.dataset, config.data_root, config.folder)
except Exception as exc:
    lab_ui.error_ui(
        f"The test images of {config.dataset} are needed to show this run's predictions, and they could not be loaded.",
        exc,
    )
    st.stop()
if len(preds) and int(preds["index"].max()) >= len(ds.test_y):
    lab_ui.error_ui(
        f"These predictions name test images that {config.dataset} does not have here "
        "(the dataset changed since the run). Train again to see its images."
    )
    st.stop()

classes = list(ds.classes)
wrong = int((preds["label"] != preds["pred"]).sum())
m = st.columns([1, 1, 2])
m[0].metric("Test accuracy", f"{100 * predict.accuracy(preds):.1f}%")
m[1].metric("Misclassified", f"{wrong:,} of {len(preds):,}")
m[2].markdown(
    f"<br>**{config.variant}** on **{config.dataset}** at {config.resolved_input_size}x{config.resolved_input_size}, "
    f"after epoch {epoch} of {config.epochs}",
    unsafe_allow_html=True,
)

images_tab, matrix_tab, upload_tab = st.tabs(lab_ui.PREDICTIONS_TABS, key="pred_view", bind="query-params")
if images_tab.open:
    with images_tab:
        lab_ui.prediction_grid_ui(preds, ds, classes)
if matrix_tab.open:
    with matrix_tab:
        lab_ui.confusion_ui(preds, classes)
if upload_tab.open:
    with upload_tab:
        lab_ui.upload_ui(run_id, ds, config)

"""Runs: every run, their curves side by side, downloads, and tidying up."""

import streamlit as st

import lab_ui

st.title("Runs")

frame = lab_ui.list_runs()
ids = lab_ui.run_ids_newest_first(frame)
if not ids:
    st.info("No runs yet. Launch one on the Train page, or start the quick demo on Home.", icon=":material/lightbulb:")
    st.page_link(lab_ui.TRAIN, label="Go to Train", icon=":material/model_training:")
    st.stop()

lab_ui.runs_table_ui(frame)

st.subheader("Compare curves")
lab_ui.compare_runs_ui(frame, ids)

# Drawn only while open: the buttons' code stays out of the page's first load (0.2 s).
files = st.expander("Download or delete a run", icon=":material/folder_open:", key="run_files", on_change="rerun")
if files.open:
    with files:
        lab_ui.run_files_ui(ids)

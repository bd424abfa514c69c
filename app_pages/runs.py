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

st.subheader("One run: download or delete")
lab_ui.run_files_ui(ids)

"""AlexNet Lab's dashboard, served by `streamlit run app.py` (see app.py).

This script draws the frame shared by every page: the navigation and the
sidebar choice of variant, dataset and input size. Widgets created here keep
their values on every page and are bound to the URL, so a link opens the same view.
"""

import streamlit as st

import lab_ui

st.set_page_config(page_title="AlexNet Lab", page_icon=":material/neurology:", layout="wide")

pages = [
    st.Page(lab_ui.HOME, title="Home", icon=":material/home:", default=True),
    st.Page(lab_ui.MODEL, title="Model", icon=":material/account_tree:", url_path="model"),
    st.Page(lab_ui.TRAIN, title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(lab_ui.PREDICTIONS, title="Predictions", icon=":material/image_search:", url_path="predictions"),
    st.Page(lab_ui.RUNS, title="Runs", icon=":material/history:", url_path="runs"),
]
page = st.navigation(pages)
st.session_state["_selection"] = lab_ui.sidebar_ui()
lab_ui.link_notices_ui()
page.run()

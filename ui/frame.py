"""The frame every page shares, run by ``st.App`` (app.py) on every script run:
the navigation and the sidebar choice, then the page.

It lives in ui/, not beside pages/: a pages/ folder beside the script Streamlit
runs puts a server in its legacy multipage mode, and a deep link opened first
after a start would get no shared sidebar.
"""

import streamlit as st

from ui import choice

st.set_page_config(page_title="AlexNet Lab", page_icon="🧠", layout="wide")

page = st.navigation([
    st.Page(choice.HOME, title="Home", icon=":material/home:", default=True),
    st.Page(choice.MODEL, title="Model", icon=":material/account_tree:", url_path="model"),
    st.Page(choice.TRAIN, title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(choice.PREDICTIONS, title="Predictions", icon=":material/image_search:", url_path="predictions"),
    st.Page(choice.LEARNED, title="What it learned", icon=":material/psychology:", url_path="learned"),
    st.Page(choice.RUNS, title="Runs", icon=":material/history:", url_path="runs"),
])
st.session_state["_selection"] = choice.sidebar_ui()
choice.link_notices_ui()
page.run()

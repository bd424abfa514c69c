"""The ui section's floor: the least a page of this dashboard can cost.

``streamlit run bench/floor_app.py`` from the repository root serves
floor_page.py (a title and one line) with the lab's settings
(.streamlit/config.toml, read from the working directory), as an ``st.App``
like app.py, but no PyTorch, no sidebar and no page content. Its first render
is what Streamlit's frontend alone costs on this machine.
"""

import streamlit as st

app = st.App("floor_page.py")

"""The ui section's floor: the least a page of this dashboard can cost.

``streamlit run bench/floor_app.py`` from the repository root serves
floor_page.py (a title and one line) with the lab's settings
(.streamlit/config.toml, read from the working directory) and the same
connection tuning as app.py, but no PyTorch, no sidebar and no page content.
Its first render is what Streamlit's frontend alone costs on this machine.
"""

import sys
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import lab_server  # noqa: E402


@asynccontextmanager
async def lifespan(app):
    lab_server.nodelay_on_listening_sockets()
    yield


app = st.App("floor_page.py", lifespan=lifespan)

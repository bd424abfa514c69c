"""The page of bench/floor_app.py: a title and one line of text."""

import streamlit as st

st.title("AlexNet Lab")
st.markdown("A title and one line: what Streamlit's frontend alone costs.")

"""Streamlit code that several pages share. ``alexnet_core`` never imports it.

- ``frame``: the script ``st.App`` runs: navigation and the sidebar, then the page
- ``choice``: the pages' files, the sidebar choice and the run picker
- ``cached``: calls into ``alexnet_core`` cached for every session, launches
- ``formatting``: errors, numbers, durations and HTML tables as text
- ``charts``: the lab's plotly layout and the live loss and accuracy figures
- ``live``: the live view of a run and the pace its audience shares
"""

"""Home: what AlexNet Lab is, which datasets are here, and the quick demo."""

import streamlit as st

from alexnet_core import datasets, variants
from alexnet_core.recipes import get_recipe
from ui import choice
from ui.cached import launch_once
from ui.formatting import error_ui, md

st.title("AlexNet Lab")
st.markdown(
    "AlexNet Lab lets you take apart **AlexNet**, the network that won ImageNet in 2012, "
    f"in {len(variants.list_models())} named variants from the paper, torchvision and well-known blog posts. "
    "Pick a variant and a dataset in the sidebar, read every layer's shape and size, "
    "and train it in the background while the loss and accuracy curves update live. "
    "Then look at the test images it gets wrong, one by one."
)


def launch_demo() -> None:
    try:
        run_id, _ = launch_once(get_recipe("quick").make_config())
    except Exception as exc:
        st.session_state["demo_error"] = str(exc)
        return
    choice.watch_next(run_id)
    st.session_state["demo_launched"] = run_id
    choice.apply_recipe_to_sidebar("quick")  # show the demo's variant and dataset in the sidebar too


left, right = st.columns([3, 2], gap="large")
with right:
    st.subheader("Quick demo")
    quick = get_recipe("quick")
    st.markdown(f"**{quick.title}.** {quick.description}")
    # No figure here: a time measured on a quiet machine is a promise a busy laptop breaks.
    st.caption(":material/timer: How long it takes depends on this computer and on what else it is doing: once it "
               "starts, the Train page counts the time left from the run's own speed.")
    st.button("Start the quick demo", icon=":material/play_arrow:", type="primary", on_click=launch_demo,
              key="quick_demo", width="stretch")
    if err := st.session_state.pop("demo_error", None):
        error_ui("The quick demo could not start.", RuntimeError(err))
    if st.session_state.pop("demo_launched", None):
        # query_params={}: a plain switch_page refuses to clear the sidebar's URL-bound params.
        st.switch_page(choice.TRAIN, query_params={})
    st.markdown(
        "**Where to go next**\n"
        "- **Model**: every layer, its output shape and the arithmetic behind it.\n"
        "- **Train**: pick a recipe, launch, watch the curves.\n"
        "- **Predictions**: what the model gets wrong.\n"
        "- **Runs**: compare, download and tidy up runs."
    )

with left:
    st.subheader("Datasets")
    here, missing = [], []
    for name in datasets.list_datasets():
        ok, where = choice.dataset_availability(name)
        (here if ok else missing).append((datasets.get_info(name), where))
    # One Markdown element per list: each element is a render of its own on a first visit.
    for heading, icon, found in (("Ready on this computer", "check_circle", here), ("Not here yet", "download", missing)):
        if found:
            st.markdown("\n\n".join([f"**{heading}**"] + [
                f":material/{icon}: **{info.title}** (`{info.name}`): {info.description}" for info, _ in found
            ]))
    if missing:
        with st.expander("How to get the others"):
            st.markdown(
                "Online, the torchvision datasets download by themselves the first time a run uses them. "
                "Offline, put their files in the data root in torchvision's layout:\n\n"
                + "\n".join(f"- **{info.title}**: {md(where)}" for info, where in missing)
            )

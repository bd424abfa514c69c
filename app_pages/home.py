"""Home: what AlexNet Lab is, which datasets are here, and the quick demo."""

import streamlit as st

import lab_ui
from alexnet_core import data, training

st.title("AlexNet Lab")
st.markdown(
    "AlexNet Lab lets you take apart **AlexNet**, the network that won ImageNet in 2012, "
    "in six named variants from the paper, torchvision and well-known blog posts. "
    "Pick a variant and a dataset in the sidebar, read every layer's shape and size, "
    "and train it in the background while the loss and accuracy curves update live. "
    "Then look at the test images it gets wrong, one by one."
)


def _launch_demo() -> None:
    recipe = training.get_recipe("quick")
    config = recipe.make_config()
    try:
        config.validate()
        run_id, _ = lab_ui.launch_once(config)
    except Exception as exc:
        st.session_state["demo_error"] = str(exc)
        return
    lab_ui.watch_next(run_id)
    st.session_state["demo_launched"] = run_id
    lab_ui.apply_recipe_to_sidebar(recipe.name)  # show the demo's variant and dataset in the sidebar too


left, right = st.columns([3, 2], gap="large")
with right:
    st.subheader("Quick demo")
    try:
        quick = training.get_recipe("quick")
    except Exception as exc:
        lab_ui.error_ui("The quick demo recipe is missing.", exc)
    else:
        st.markdown(f"**{quick.title}.** {quick.description}")
        st.button(
            "Start the quick demo",
            icon=":material/play_arrow:",
            type="primary",
            on_click=_launch_demo,
            key="quick_demo",
            width="stretch",
        )
    if err := st.session_state.pop("demo_error", None):
        lab_ui.error_ui("The quick demo could not start.", RuntimeError(err))
    if st.session_state.pop("demo_launched", None):
        # query_params={} : a plain switch_page refuses to clear the sidebar's URL-bound params.
        st.switch_page(lab_ui.TRAIN, query_params={})
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
    for name in data.list_datasets():
        info = data.get_info(name)
        ok, where = lab_ui.dataset_availability(name)
        (here if ok else missing).append((info, where))
    # One Markdown element per list: each element costs a first visit's browser a render of its own.
    for heading, icon, found in (("Ready on this computer", "check_circle", here), ("Not here yet", "download", missing)):
        if found:
            st.markdown("\n\n".join([f"**{heading}**"] + [
                f":material/{icon}: **{info.title}** (`{info.name}`): {info.description}" for info, where in found
            ]))
    if missing:
        with st.expander("How to get the others"):
            st.markdown(
                "Online, the torchvision datasets download by themselves the first time a run uses them. "
                "Offline, put their files in the data root in torchvision's layout:"
            )
            for info, where in missing:
                st.markdown(f"- **{info.title}**: {where}")

"""Train: a recipe-prefilled form, launch, and the live view of a run.

While a run trains, or once a run this session launched has ended, the live
view comes first and the form folds away below it.
"""

import streamlit as st

import lab_ui
from alexnet_core import training

sel = lab_ui.current()
st.title("Train")


def settings_ui(busy: bool) -> None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        recipe_name = st.selectbox(
            "Recipe",
            training.list_recipes(),
            key="recipe",
            format_func=lambda name: training.get_recipe(name).title,
            on_change=lambda: lab_ui.apply_recipe_to_sidebar(st.session_state["recipe"]),
            help="A preset that reproduces a reference setup; it fills in the settings below.",
        )
        recipe = training.get_recipe(recipe_name)
        st.caption(recipe.description)
    with right:
        st.markdown(
            f"Trains **{sel.variant}** on **{sel.dataset}** at **{sel.input_size}x{sel.input_size}** "
            "(the sidebar's choice)."
        )
        base = recipe.config
        if (base.variant, base.dataset, base.resolved_input_size) != (sel.variant, sel.dataset, sel.input_size):
            st.markdown(
                f"The recipe uses **{base.variant}** on **{base.dataset}** at "
                f"**{base.resolved_input_size}x{base.resolved_input_size}**."
            )
            st.button(
                "Use the recipe's choice",  # short: the column is narrow on a 1280-pixel projector
                on_click=lab_ui.apply_recipe_to_sidebar,
                args=(recipe_name,),
                key="use_recipe_choice",
            )
    config = lab_ui.train_form_ui(recipe, sel)
    can_launch = lab_ui.estimate_ui(config, busy=busy)
    st.button(
        "Launch training",
        icon=":material/rocket_launch:",
        type="primary",
        disabled=not can_launch,
        key="launch",
        on_click=lab_ui.launch_callback,
        args=(recipe.name,),
    )
    lab_ui.launch_message_ui()


frame = lab_ui.list_runs()
busy = bool(frame["state"].isin(lab_ui.ACTIVE_STATES).any()) if not frame.empty else False
if busy or lab_ui.launched_here(frame):
    lab_ui.watch_ui(frame)
    st.divider()
    with st.expander("Start another run", icon=":material/add:"):
        settings_ui(busy)
else:
    settings_ui(busy)
    st.divider()
    lab_ui.watch_ui(frame)

"""Train: a recipe-prefilled form, launch, and the live view of a run.

The form is generated from TrainConfig's declarations (alexnet_core.config.SETTINGS).
While a run trains, or once a run this session launched has ended, the live
view comes first and the form folds away below it.
"""

import streamlit as st

from alexnet_core import datasets, variants
from alexnet_core.config import SETTINGS, ConfigError, TrainConfig, split_sizes
from alexnet_core.device import available_memory_mb, resolve_device
from alexnet_core.recipes import Recipe, get_recipe, list_recipes, made_for
from alexnet_core.runfiles import ACTIVE_STATES
from ui import cached, choice, classroom
from ui.formatting import error_ui, format_duration, md
from ui.live import watch_ui

COLUMNS = 4
SLOW_EPOCH_S = 180


def widget_ui(col, setting, base: TrainConfig, key: str, drawn: dict):
    """One setting's widget, prefilled from ``base``; returns its value."""
    value = getattr(base, setting.name)
    disabled = False
    if setting.active_when:
        other, allowed = setting.active_when
        disabled = drawn.get(other, getattr(base, other)) not in allowed
    common = dict(key=key, help=setting.help, disabled=disabled)
    if setting.kind is bool:
        return col.checkbox(setting.label, bool(value), **common)
    if setting.choices is not None:
        options = list(setting.choice_list())
        return col.selectbox(setting.label, options, index=options.index(value), **common)
    kind = setting.kind
    bound = (lambda b: None if b is None else kind(b))
    return col.number_input(setting.label, min_value=bound(setting.minimum), max_value=bound(setting.maximum),
                            value=kind(value), step=kind(setting.step or 1), format=setting.format, **common)


def settings_grid_ui(section: str, base: TrainConfig, prefix: str, drawn: dict) -> None:
    shown = [s for s in SETTINGS if s.section == section]
    for start in range(0, len(shown), COLUMNS):
        for col, setting in zip(st.columns(COLUMNS), shown[start: start + COLUMNS]):
            drawn[setting.name] = widget_ui(col, setting, base, prefix + setting.name, drawn)


RECIPES_CHOICE, SIDEBARS_CHOICE = "recipe", "sidebar"


def describe(whose: str, chosen: tuple[str, str, int]) -> str:
    variant, dataset, size = chosen
    return f"the {whose}'s: {variant} on {dataset} at {size}x{size}"


def trained_choice(recipe: Recipe) -> tuple[str, str, int]:
    """(variant, dataset, input size) the form trains: the recipe's unless the visitor
    chose the sidebar's."""
    state = st.session_state
    if state.get(f"{recipe.name}:what", RECIPES_CHOICE) == RECIPES_CHOICE:
        return recipe.config.variant, recipe.config.dataset, recipe.config.resolved_input_size
    variant = state.get("variant", choice.defaults()[0])
    return variant, state.get("dataset", choice.defaults()[1]), int(state.get("size", variants.get_spec(variant).input_size))


def config_from_state(recipe_name: str) -> TrainConfig:
    """The TrainConfig the form holds now, read from session state, so the Launch
    callback sees the values sent with the click, not the last drawn ones."""
    recipe, state = get_recipe(recipe_name), st.session_state
    prefix = f"{recipe_name}:"
    variant, dataset, size = trained_choice(recipe)
    values = {s.name: s.kind(state.get(prefix + s.name, getattr(recipe.config, s.name)))
              for s in SETTINGS if s.section}
    allowed = variants.get_spec(variant).options
    # The recipe's own network options (a post's dropout or initialisation), then the groups box's.
    options = {k: v for k, v in recipe.config.variant_options.items() if k in allowed and k != "groups"}
    if state.get(prefix + "groups") and "groups" in allowed:
        options["groups"] = 2
    return recipe.make_config(
        variant=variant, dataset=dataset, input_size=size,
        folder=(state.get("folder") or "").strip() or None if dataset == "folder" else None,
        variant_options=options, **values,
    )


def form_ui(recipe: Recipe, sel: choice.Selection) -> TrainConfig:
    """The settings, prefilled by the recipe (a new recipe starts from its own values)."""
    prefix, drawn = f"{recipe.name}:", {}
    st.subheader("Settings")
    settings_grid_ui("main", recipe.config, prefix, drawn)
    with st.expander("More settings: augmentation, schedule, device"):
        settings_grid_ui("more", recipe.config, prefix, drawn)
        if "groups" in sel.spec.options:
            st.checkbox("Split conv2, conv4 and conv5 in two groups (the paper's two GPUs)",
                        recipe.config.variant_options.get("groups", 1) == 2, key=prefix + "groups")
    return config_from_state(recipe.name)


def estimate_ui(config: TrainConfig, *, busy: bool) -> bool:
    """Check the settings and that the data is here, and show how long an epoch should take; True when it can launch.

    The timing runs a few real training steps, so it is drawn by a fragment after
    the page (its first timer tick). Small inputs are timed at once; 227-pixel
    nets, or any net while another run trains (the timing would slow it and be
    wrong), wait for a click.
    """
    try:
        config.validate()  # the same check the launch makes, shown while the form is edited
    except ConfigError as exc:
        error_ui(f"These settings cannot train yet: {exc}")
        return False
    ok, where = choice.dataset_availability(config.dataset, config.folder)
    if not ok and config.dataset != "folder" and datasets.obtainable(config.dataset)[0]:
        # torchvision downloads it on the run's first load: the launch is not refused before that is tried
        st.info(f"The {config.dataset} images are not on this computer yet: the run downloads them first, "
                f"which needs the internet. {md(where)}", icon=":material/download:")
        return True
    if not ok:
        st.warning(f"The {config.dataset} images are not on this computer yet. {md(where)}", icon=":material/download:")
        return False
    where_trained = resolve_device(config.device)  # validate() has refused a device that is not here
    on_gpu = where_trained.type == "cuda"
    free = available_memory_mb(where_trained)
    if free is not None and cached.training_memory_mb(config) > cached.MEMORY_SHARE * free:
        need = cached.training_memory_mb(config)
        fits = cached.largest_batch(config, cached.MEMORY_SHARE * free)
        error_ui(f"A batch of {config.batch_size} needs about {need / 1024:.1f} GB for each training step, and this "
                 f"{'GPU' if on_gpu else 'computer'} has {free / 1024:.1f} GB free. "
                 f"Choose a batch size of at most {fits}.")
        return False
    if on_gpu and free is not None:  # a GPU is busiest with the largest batch that fits
        fits = cached.largest_batch(config, cached.MEMORY_SHARE * free)
        if fits > 2 * config.batch_size:
            st.caption(f":material/memory: A batch of up to about {fits:,} fits in this GPU's "
                       f"{free / 1024:.0f} GB free; a larger batch keeps it busier (scale the learning rate with it).")
    try:  # the files are here: can they be trained on (an empty test split, a batch above the split)?
        split_sizes(config, len(cached.load_dataset(config.dataset, config.data_root, config.folder).train_y))
    except Exception as exc:
        error_ui(f"These images cannot train yet: {exc}")
        return False
    auto = config.resolved_input_size < 100 and not busy
    waiting = auto and cached.known_estimate(cached.estimate_key(config)) is None
    # Timed again each minute while the page is open: "just now" stays true as the load changes.
    every = 1.0 if waiting else cached.ESTIMATE_FRESH_S if auto else None
    st.fragment(estimate_fragment, run_every=every)(config, auto)
    return True


def estimate_fragment(config: TrainConfig, auto: bool) -> None:
    key = cached.estimate_key(config)
    seconds = cached.known_estimate(key)
    if seconds is None and auto:
        seen = st.session_state.setdefault("_estimate_seen", set())
        if key not in seen:  # the page's own run: draw it first, time on the next tick
            seen.add(key)
            st.caption(":material/timer: Timing a few training steps to estimate the time per epoch…")
            return
    if seconds is None and not auto:
        reason = ("A run is training now, so timing would slow it down." if config.resolved_input_size < 100
                  else f"A {config.resolved_input_size}-pixel {config.variant} net is slow on a CPU.")
        st.info(f"{reason} Measure how long an epoch takes (it times a few real training steps).", icon=":material/timer:")
        if not st.button("Measure the time per epoch", icon=":material/timer:", key="measure"):
            return
    try:
        seconds = cached.estimate(config)
    except Exception as exc:
        error_ui("The time per epoch could not be measured.", exc)
        return
    # No st.rerun() to stop the timer: it could swallow a click made meanwhile. The next
    # full rerun registers this fragment without a timer; until then a tick redraws this line.
    total = seconds * config.epochs
    # Said as what it is: one reading of this computer's speed, which changes with its load.
    text = (f"Estimate from a few training steps timed just now on this computer: about "
            f"**{format_duration(seconds)} per epoch**, **{format_duration(total)}** for {config.epochs} "
            f"epoch{'s' if config.epochs != 1 else ''}, plus the run's start-up. Once the run starts, "
            f"the time left comes from its own steps.")
    if seconds > SLOW_EPOCH_S:
        st.warning(text + " That is long for a lesson: fewer epochs, a smaller input size or a smaller variant "
                   "would be quicker.", icon=":material/hourglass_bottom:")
    else:
        st.markdown(":material/timer: " + text)


def launch(recipe_name: str) -> None:
    """The Launch button's callback: it runs before the page is drawn, so the new run
    shows at once. A second click on the same settings within seconds is ignored."""
    try:
        run_id, fresh = cached.launch_once(config_from_state(recipe_name))
    except Exception as exc:  # the run store validates the settings and the data: its sentence is shown
        st.session_state["_launch_msg"] = ("error", f"The training run could not be started: {exc}")
        return
    choice.watch_next(run_id)
    st.session_state["_launch_msg"] = ("ok", run_id) if fresh else (
        "info", f"Run {run_id} was just started with these settings.")


def launch_message_ui() -> None:
    kind, text = st.session_state.pop("_launch_msg", (None, None))
    if kind == "error":
        error_ui(text)
    elif kind == "info":
        st.info(md(text), icon=":material/info:")
    elif kind == "ok":
        st.toast(f"Started run {md(text)}", icon=":material/rocket_launch:")


def recipe_text_ui(recipe: Recipe) -> None:
    """The recipe's description, the figure its post reported, and each way it differs from the post, with why."""
    st.caption(md(recipe.description))
    if recipe.reported:
        post = recipe.reference[:1].upper() + recipe.reference[1:]
        st.caption(f":material/flag: {md(post)} reported {md(recipe.reported.text)}.")
    if recipe.differences:
        with st.expander(f"How it differs from {md(recipe.reference)}, and why ({len(recipe.differences)})"):
            st.caption("\n".join(f"- **{md(d.what)}**: {md(d.why)}." for d in recipe.differences))


def normalisation_ui(config: TrainConfig) -> None:
    """Where the inputs' mean and std come from, with their values once the images are here."""
    values = "mean and std"
    if choice.dataset_availability(config.dataset, config.folder)[0]:
        try:
            data = cached.load_dataset(config.dataset, config.data_root, config.folder)
            numbers = lambda values: ", ".join(f"{v:.3f}" for v in values)  # noqa: E731
            values = f"mean {numbers(data.mean)} and std {numbers(data.std)}"
        except Exception:  # a folder that cannot train: the check below the form says why
            pass
    st.caption(f":material/tune: Inputs are normalised with the training split's own {values}, "
               "computed when the images load and saved in the run's checkpoints.")


def settings_ui(sel: choice.Selection, busy: bool) -> None:
    left, right = st.columns([3, 2], gap="large")
    if "recipe" not in st.session_state:  # a pair chosen in the sidebar starts from our recipe for it
        st.session_state["recipe"] = made_for(sel.variant, sel.dataset) or list_recipes()[0]
    with left:
        recipe_name = st.selectbox(
            "Recipe", list_recipes(), key="recipe", format_func=lambda name: get_recipe(name).title,
            help="A preset that reproduces a reference setup; it fills in the settings below.",
        )
        recipe = get_recipe(recipe_name)
        recipe_text_ui(recipe)
    with right:
        base = recipe.config
        ours = (base.variant, base.dataset, base.resolved_input_size)
        theirs = (sel.variant, sel.dataset, sel.input_size)
        if ours != theirs:
            # What a launch trains is always on the page: the recipe's by default, the sidebar's on request.
            st.radio("Train", [RECIPES_CHOICE, SIDEBARS_CHOICE], key=f"{recipe_name}:what",
                     format_func=lambda what: describe(what, ours if what == RECIPES_CHOICE else theirs))
        variant, dataset, size = trained_choice(recipe)
        st.markdown(f"Trains **{variant}** on **{dataset}** at **{size}x{size}**.")
        chosen = config_from_state(recipe_name)
        if held := datasets.storage_plan(chosen.dataset, chosen.data_root, chosen.folder, chosen.image_size):
            st.caption(f":material/memory: {md(held[1])}")  # photos: in memory or streamed, and why
        normalisation_ui(chosen)
    config = form_ui(recipe, sel)
    can_launch = estimate_ui(config, busy=busy)
    if refusal := classroom.launch_refusal():  # one person's share of the single training slot
        st.warning(refusal, icon=":material/groups:")
        can_launch = False
    st.button("Launch training", icon=":material/rocket_launch:", type="primary", disabled=not can_launch,
              key="launch", on_click=launch, args=(recipe.name,))
    launch_message_ui()


sel = choice.current()
st.title("Train")
frame = cached.list_runs()
busy = bool(frame["state"].isin(ACTIVE_STATES).any()) if not frame.empty else False
launched_here = not frame.empty and st.session_state.get("launched_here") in set(frame["id"])
if busy or launched_here:
    watch_ui(frame)
    st.divider()
    with st.expander("Start another run", icon=":material/add:"):
        settings_ui(sel, busy)
else:
    settings_ui(sel, busy)
    st.divider()
    watch_ui(frame)

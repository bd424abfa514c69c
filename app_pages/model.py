"""Model: the layer table, the shape arithmetic, every variant compared, feature maps."""

import streamlit as st

import lab_ui
from alexnet_core import variants

sel = lab_ui.current()
spec = sel.spec
in_channels, num_classes = lab_ui.model_io(sel)

st.title(spec.title)
st.markdown(f"{spec.description}  \n*Source: {spec.source}.*")

try:
    table, totals = lab_ui.layer_table(sel.variant, in_channels, num_classes, sel.input_size)
except Exception as exc:
    lab_ui.error_ui(
        f"{sel.variant} cannot be built for a {sel.input_size}x{sel.input_size} input. "
        "Pick another input size in the sidebar.",
        exc,
    )
    st.stop()

cols = st.columns(4)
# "58,322,314" is cut short in a quarter of the page at 1280 pixels: the exact count is in the help.
cols[0].metric(
    "Parameters",
    lab_ui.human_count(totals["params"]),
    help=f"{totals['params']:,} parameters, {totals['trainable_params']:,} trainable",
)
cols[1].metric("Mult-adds per image", lab_ui.human_count(totals["mult_adds"]))
cols[2].metric("Weights", f"{totals['weights_mb']:.1f} MB", help="float32")
cols[3].metric("Activations per image", f"{totals['activations_mb_per_image']:.2f} MB", help="every layer's output, float32")
st.caption(
    f"For {sel.dataset}: {in_channels} input channel(s), {num_classes} classes, "
    f"{sel.input_size}x{sel.input_size} input (native {spec.input_size}x{spec.input_size})."
)

layers_tab, shapes_tab, q_tab, all_tab, maps_tab = st.tabs(
    ["Layers", "Shapes", "224 or 227", "All variants", "Feature maps"], key="model_view", bind="query-params"
)

if layers_tab.open:
    with layers_tab:
        lab_ui.table_ui(lab_ui.format_layer_table(table), right=lab_ui.NUMBER_COLUMNS)

if shapes_tab.open:
    with shapes_tab:
        lo, hi = lab_ui.size_range(sel.variant)
        st.markdown(
            f"Each conv and pool layer's output side is **floor((W − K + 2P) / S) + 1**. "
            f"**{sel.variant}** takes any input from **{variants.min_input_size(sel.variant)}x"
            f"{variants.min_input_size(sel.variant)}** up (smaller inputs shrink to nothing before the "
            "classifier); change the size in the sidebar to watch the trace change."
        )
        try:
            trace = lab_ui.shape_trace(sel.variant, in_channels, num_classes, sel.input_size)
        except Exception as exc:
            lab_ui.error_ui("The shape trace could not be computed for this size.", exc)
        else:
            lab_ui.trace_ui(trace)
        exact = lab_ui.exact_sizes(sel.variant, lo, hi)
        if exact:
            st.markdown(
                f"Sizes from {lo} to {hi} where every division is exact (no pixels dropped): "
                + ", ".join(f"**{s}**" if s == spec.input_size else str(s) for s in exact)
            )

if q_tab.open:
    with q_tab:
        q_variant = sel.variant if spec.input_size >= 200 else "paper"
        st.markdown(
            "The 2012 paper says its images are **224x224**, but with an 11x11 kernel and stride 4 the "
            "first layer only fits exactly at **227**: (227 − 11) / 4 + 1 = 55. At 224 the division "
            f"leaves a remainder that is rounded away. Both traces for **{q_variant}**; red rows drop pixels."
        )
        left, right = st.columns(2, gap="large")
        for col, size in ((left, 224), (right, 227)):
            with col:
                st.subheader(f"{size} x {size}")
                try:
                    trace = lab_ui.shape_trace(q_variant, variants.get_spec(q_variant).in_channels, num_classes, size)
                except Exception as exc:
                    lab_ui.error_ui(f"{q_variant} cannot take {size}x{size}.", exc)
                    continue
                lab_ui.trace_ui(trace, short=True)

if all_tab.open:
    with all_tab:
        try:
            compared = lab_ui.compare_variants(3, num_classes)
        except Exception as exc:
            lab_ui.error_ui("The variants could not be compared.", exc)
        else:
            lab_ui.table_ui(lab_ui.format_compare(compared), right=lab_ui.NUMBER_COLUMNS)
            st.caption(
                f"Each at its native input size, 3 channels and {num_classes} classes. **images/s here**: the "
                "training speed of this computer's newest run of the variant (at its native size when one was), "
                "from the Runs page's store; – where no run has trained it yet."
            )

if maps_tab.open:
    with maps_tab:
        lab_ui.feature_maps_section_ui(sel, in_channels, num_classes)

"""Model: the layer table, the shape arithmetic, every variant compared, feature maps."""

import pandas as pd
import streamlit as st

from alexnet_core import anatomy, batches, predict, variants
from ui import cached, choice
from ui.formatting import error_ui, human_count, md, table_ui

# Columns of this page's tables that hold numbers.
NUMBER_COLUMNS = ("parameters", "mult-adds", "channels", "native input", "min input", "images/s here")

# How the layer names read, under every table that shows them.
NAMES_NOTE = ("Layers are named the way AlexNet is written about: **conv1**, **conv2**… and the "
              "fully-connected **fc6**, **fc7**… counting on from the convs; a ReLU, an LRN (**norm**), a BatchNorm "
              "(**bn**) or a pool carries the number of the layer before it, a dropout (**drop**) the number of the "
              "layer it feeds. **module**: the layer's name in PyTorch.")


def format_layer_table(table: pd.DataFrame) -> pd.DataFrame:
    """The layer table in the paper's names (conv1, pool1, fc6), the module path last."""
    out = table[table["type"] != "Identity"].copy()  # the paper net's placeholder for torchvision's avgpool
    out["output_shape"] = out["output_shape"].map(lambda s: "×".join(map(str, s)) if isinstance(s, (tuple, list))
                                                  else str(s))
    out["params"] = out["params"].map(lambda n: f"{int(n):,}" if n else "–")
    out["mult_adds"] = out["mult_adds"].map(lambda n: human_count(n) if n else "–")
    # one column for the three: at 1280 pixels nine columns leave no room for the module path
    out["kernel / stride / padding"] = [" / ".join(map(str, ksp)) if ksp[0] else "" for ksp in
                                        zip(out["kernel"], out["stride"], out["padding"])]
    out = out.rename(columns={"layer": "module", "name": "layer", "output_shape": "output",
                              "params": "parameters", "mult_adds": "mult-adds"})
    return out[["layer", "kind", "output", "parameters", "mult-adds", "kernel / stride / padding", "module"]]


def remainder(row) -> int | None:
    """(W - K + 2P) mod S for a conv/pool trace row; None for other rows."""
    try:
        w = int(str(row["in_hw"]).split("x")[0])
        k, s, p = int(row["kernel"]), int(row["stride"]), int(row["padding"])
    except (TypeError, ValueError):
        return None
    return (w - k + 2 * p) % s


def exactness(r: int | None) -> str:
    return "" if r is None else ("✔" if r == 0 else f"✘ {r} px dropped")


def trace_ui(trace: pd.DataFrame) -> None:
    """A shape trace as a table, the rows whose division drops pixels marked."""
    remainders = [remainder(row) for _, row in trace.iterrows()]
    out = trace.assign(exact=[exactness(r) for r in remainders])
    out = out.rename(columns={"layer": "module", "name": "layer", "out_channels": "channels"})
    # the sides, kernel, stride and padding are all in the arithmetic: room for the module path
    cols = ["layer", "kind", "channels", "arithmetic", "exact", "module"]
    table_ui(out[cols], right=NUMBER_COLUMNS, marked={i for i, r in enumerate(remainders) if r}, wrap=True)


def size_comparison(traces: list[pd.DataFrame], fits: list[anatomy.ClassifierInput]) -> tuple[pd.DataFrame, set[int]]:
    """One row per conv and pool with its formula and what each size gives, then what the
    classifier is built for at each size; the positions of rows where a size drops pixels."""
    first, sizes = traces[0], [f"{fit.size} x {fit.size}" for fit in fits]
    rows, marked = [], set()
    for i, row in first.iterrows():
        if row["type"] in ("Conv2d", "MaxPool2d"):
            formula = f"floor((W − {row['kernel']} + 2×{row['padding']}) / {row['stride']}) + 1"
            cells = []
            for trace in traces:
                step, r = trace.loc[i], remainder(trace.loc[i])
                cells.append(f"{str(step['in_hw']).split('x')[0]} → {step['out_side']} {exactness(r)}")
                if r:
                    marked.add(len(rows))
        elif row["type"] == "AdaptiveAvgPool2d":
            formula = "adaptive: any W → " + str(row["out_side"])
            cells = [f"{str(t.loc[i, 'in_hw']).split('x')[0]} → {t.loc[i, 'out_side']}" for t in traces]
        else:  # LRN and BatchNorm keep the size: nothing to compare
            continue
        rows.append([row["name"], formula, *cells, row["layer"]])
    hidden = fits[0].fc_params // (fits[0].inputs + 1)
    flat = [f"{f.channels} × {f.side} × {f.side} = {f.inputs:,}" for f in fits]
    rows.append(["flatten", "maps × side × side", *flat, "flatten"])
    rows.append([fits[0].fc, f"(inputs + 1) × {hidden:,}", *(f"{f.fc_params:,} parameters" for f in fits),
                 fits[0].fc_path])
    rows.append(["all layers", "sum", *(f"{f.params:,} parameters" for f in fits), ""])
    return pd.DataFrame(rows, columns=["layer", "formula (W: side in)", *sizes, "module"]), marked


def consequence(variant: str, small: anatomy.ClassifierInput, large: anatomy.ClassifierInput) -> str:
    """What the smaller input does to the classifier, in a sentence."""
    if small.inputs == large.inputs:
        return (f"**What it changes:** not the classifier. **{variant}** ends in an adaptive average pool that makes "
                f"{small.side}x{small.side} maps of any size, so its classifier takes **{small.inputs:,}** inputs at "
                f"both sizes and the network keeps its {small.params:,} parameters: the sizes differ only in the "
                "pixels the red rows round away.")
    fewer = large.params - small.params
    return (f"**What it changes:** at {small.size} the last pool leaves {small.channels} maps of "
            f"{small.side}x{small.side}, so **{variant}**'s first fully-connected layer ({small.fc}) is rebuilt for "
            f"{small.channels} × {small.side} × {small.side} = **{small.inputs:,}** inputs instead of "
            f"**{large.inputs:,}** at {large.size}: **{fewer:,} fewer parameters** ({small.params:,} instead of "
            f"{large.params:,}, {fewer / large.params:.0%} of the network), and weights trained at one size do not "
            "fit the other.")


@st.cache_data(show_spinner=False)
def exact_sizes(variant: str, lo: int, hi: int) -> list[int]:
    """Input sizes whose every conv/pool division is exact (nothing rounded away)."""
    spec = variants.get_spec(variant)
    model = cached.untrained_model(variant, spec.in_channels, 10, spec.input_size)
    return [size for size in range(lo, hi + 1)
            if not any(remainder(row) for _, row in anatomy.shape_trace(model, size).iterrows())]


def speed(rate, size, native, device) -> str:
    """'1,290', or '1,290 at 12 px' for a run at another size, '(cuda)' off the CPU."""
    if rate is None or pd.isna(rate):
        return "–"
    text = f"{float(rate):,.0f}"
    if not pd.isna(size) and int(size) != int(native):
        text += f" at {int(size)} px"
    if isinstance(device, str) and device != "cpu":
        text += f" ({device})"
    return text


def format_compare(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["params"] = out["params"].map(lambda n: f"{int(n):,}")
    out["mult_adds"] = out["mult_adds"].map(human_count)
    if "images_per_s" in out:
        out["images_per_s"] = [speed(*row) for row in
                               zip(out["images_per_s"], out["input_size"], out["native_input"], out["device"])]
        out = out.drop(columns=["input_size", "device"])
    out = out.rename(columns={"native_input": "native input", "min_input": "min input", "params": "parameters",
                              "mult_adds": "mult-adds", "conv_layers": "convs", "images_per_s": "images/s here"})
    # the figures first, the words last: at 1280 pixels the long source names scroll
    words = [c for c in ("title", "source") if c in out]
    return out[[c for c in out.columns if c not in words] + words]


def feature_maps_ui(sel: choice.Selection, in_channels: int) -> None:
    """One test image through the untrained net and, when chosen, a run's trained net."""
    import torch

    try:
        ds = cached.load_dataset(sel.dataset, None, sel.folder)
    except Exception as exc:
        error_ui(f"The {sel.dataset} images are not here, so there is no test image to show.", exc)
        return
    if len(ds.test_y) == 0:
        st.info(f"{md(sel.dataset)} has no test images here, so there is no image to follow through the network.",
                icon=":material/search_off:")
        return
    candidates = cached.runs_with_weights(sel.variant, sel.dataset)
    c1, c2 = st.columns([1, 2])
    index = c1.number_input("Test image (dataset index)", min_value=0, max_value=len(ds.test_y) - 1, value=0, step=1,
                            key="fm_index")
    source = c2.selectbox("Trained weights to compare with", ["none"] + candidates, index=1 if candidates else 0,
                          key="fm_run", help=f"Runs of {sel.variant} on {sel.dataset} with saved weights (best.pt).")
    size = sel.input_size
    trained = config = None
    if source != "none":
        try:
            trained, config = cached.run_model(source)
            size = config.resolved_input_size
        except Exception as exc:
            error_ui(f"The weights of run {source} could not be loaded.", exc)
            trained = None
    try:
        # With a run: the very weights it started from (its seed), so what differs is what training changed.
        if trained is not None:
            untrained = cached.run_start_model(source, ds.num_classes)
        else:
            untrained = cached.untrained_model(sel.variant, in_channels, ds.num_classes, size)
        x = batches.prepare_batch(ds.test_x[index: index + 1], in_channels=in_channels, size=size, mean=ds.mean,
                                  std=ds.std, device=torch.device("cpu"))[0]
        maps_u = anatomy.feature_maps(untrained, x).maps
        maps_t = anatomy.feature_maps(trained, x).maps if trained is not None else None
    except Exception as exc:
        error_ui("The feature maps could not be computed for this image.", exc)
        return
    label = md(ds.classes[int(ds.test_y[index])])
    pic, text = st.columns([1, 4])
    pic.image(predict.tile_image(ds.test_x[index], None, target=128, border=2), caption=f"#{index}: {label}")
    text.markdown(
        f"Test image **#{index}** (a **{label}**), resized to {size}x{size}. Each square below is one channel "
        "of a conv layer's output after its ReLU: bright where the filter responds. "
        + (
            f"Left: run **{md(source)}** before its first step (random filters, seed {config.seed}). Middle: the "
            "same layer after training. Right: **what training changed**, the difference between the two on "
            "one scale per layer: black where a channel responds as it did. The percentage compares the size "
            "of that change with the response before training: 0% means training left the layer's response "
            "as it was, 100% a change as large as the response itself."
            if maps_t is not None
            else f"These come from the **untrained** net. Train {sel.variant} on {sel.dataset} to compare with learned filters."
        )
    )
    names = anatomy.layer_names(untrained)
    for path, fmap in maps_u.items():
        c, h, w = fmap.shape
        # each map is a ReLU's output, and relu3 follows conv3 (anatomy.layer_names)
        conv = "conv" + names[path].removeprefix("relu")
        head = (f"**{conv}** after its ReLU ({md(path)}): {c} channels of {h}x{w}"
                + (" (first 64 shown)" if c > 64 else ""))
        if maps_t is None:
            st.markdown(head)
            st.image(predict.channel_grid(fmap, cell=40), width=min(900, 60 * 8 + 40))
            continue
        after = maps_t[path]
        st.markdown(f"{head} · what changed is **{anatomy.response_change(fmap, after):.0%}** as large as the "
                    "response before training")
        a, b, d = st.columns(3)
        a.image(predict.channel_grid(fmap, cell=40), caption="before training", width="stretch")
        b.image(predict.channel_grid(after, cell=40), caption="after training", width="stretch")
        d.image(predict.channel_grid((after - fmap).abs(), cell=40, shared_scale=True), caption="what changed",
                width="stretch")


sel = choice.current()
spec = sel.spec
in_channels, num_classes = cached.model_io(sel)

st.title(spec.title)
st.markdown(f"{md(spec.description)}  \n*Source: {md(spec.source)}.*")

try:
    table, totals = cached.layer_table(sel.variant, in_channels, num_classes, sel.input_size)
except Exception as exc:
    error_ui(f"{sel.variant} cannot be built for a {sel.input_size}x{sel.input_size} input. "
             "Pick another input size in the sidebar.", exc)
    st.stop()

cols = st.columns(4)
# "58,322,314" is cut short in a quarter of the page at 1280 pixels: the exact count is in the help.
cols[0].metric("Parameters", human_count(totals["params"]),
               help=f"{totals['params']:,} parameters, {totals['trainable_params']:,} trainable")
cols[1].metric("Mult-adds per image", human_count(totals["mult_adds"]))
cols[2].metric("Weights", f"{totals['weights_mb']:.1f} MB", help="float32")
cols[3].metric("Activations per image", f"{totals['activations_mb_per_image']:.2f} MB",
               help="every layer's output, float32")
st.caption(f"For {sel.dataset}: {in_channels} input channel(s), {num_classes} classes, "
           f"{sel.input_size}x{sel.input_size} input (native {spec.input_size}x{spec.input_size}).")

layers_tab, shapes_tab, q_tab, all_tab, maps_tab = st.tabs(
    ["Layers", "Shapes", "224 or 227", "All variants", "Feature maps"], key="model_view", bind="query-params"
)

if layers_tab.open:
    with layers_tab:
        table_ui(format_layer_table(table), right=NUMBER_COLUMNS, wrap=True)
        st.caption(NAMES_NOTE + " **output**: channels×height×width of what the layer passes on.")

if shapes_tab.open:
    with shapes_tab:
        lo, hi = choice.size_range(sel.variant)
        smallest = variants.min_input_size(sel.variant)
        st.markdown(
            f"Each conv and pool layer's output side is **floor((W − K + 2P) / S) + 1**. "
            f"**{sel.variant}** takes any input from **{smallest}x{smallest}** up (smaller inputs shrink to "
            "nothing before the classifier); change the size in the sidebar to watch the trace change."
        )
        try:
            trace_ui(cached.shape_trace(sel.variant, in_channels, num_classes, sel.input_size))
            st.caption(NAMES_NOTE)
        except Exception as exc:
            error_ui("The shape trace could not be computed for this size.", exc)
        exact = exact_sizes(sel.variant, lo, hi)
        if exact:
            st.markdown(f"Sizes from {lo} to {hi} where every division is exact (no pixels dropped): "
                        + ", ".join(f"**{s}**" if s == spec.input_size else str(s) for s in exact))

if q_tab.open:
    with q_tab:
        q_variant = sel.variant if spec.input_size >= 200 else "paper"
        q_channels = variants.get_spec(q_variant).in_channels
        st.markdown(
            "The 2012 paper says its images are **224x224**, but with an 11x11 kernel and stride 4 the "
            "first layer only fits exactly at **227**: (227 − 11) / 4 + 1 = 55. At 224 the division "
            f"leaves a remainder that is rounded away. Both sizes for **{q_variant}**, layer by layer below; red "
            "rows drop pixels at one of them."
        )
        try:
            q_traces = [cached.shape_trace(q_variant, q_channels, num_classes, size) for size in (224, 227)]
            q_fits = [anatomy.classifier_input(q_variant, size, q_channels, num_classes) for size in (224, 227)]
        except Exception as exc:
            error_ui(f"{q_variant} cannot be traced at 224 and 227.", exc)
        else:
            compared, marked = size_comparison(q_traces, q_fits)
            st.markdown(consequence(q_variant, *q_fits))
            table_ui(compared, marked=marked, wrap=True)

if all_tab.open:
    with all_tab:
        try:
            compared = cached.compare_variants(3, num_classes)
        except Exception as exc:
            error_ui("The variants could not be compared.", exc)
        else:
            table_ui(format_compare(compared), right=NUMBER_COLUMNS)
            st.caption(
                f"Each at its native input size, 3 channels and {num_classes} classes. **images/s here**: the "
                "training speed of this computer's newest run of the variant (at its native size when one was), "
                "from the Runs page's store; – where no run has trained it yet."
            )

if maps_tab.open:
    with maps_tab:
        feature_maps_ui(sel, in_channels)

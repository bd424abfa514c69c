"""The lab's plotly charts: large type for a projector, the theme's colours, and the
Train page's live loss and accuracy figures."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# The theme's categorical colours (.streamlit/config.toml).
COLOURS = ["#0b57d0", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442"]

_AXIS = {"automargin": True, "showline": False, "gridcolor": "#d5dae3", "zerolinecolor": "#d5dae3",
         "zerolinewidth": 2, "tickfont": {"size": 15}}

# A projector shows a few hundred points of a curve; more only cost the browser time.
MAX_POINTS = 500


def styled(fig: go.Figure, title: str, xtitle: str, ytitle: str, height: int = 380) -> go.Figure:
    """Give a figure the lab's layout (drawn with ``st.plotly_chart(..., theme=None)``)."""
    fig.update_layout(
        template="plotly_white", colorway=COLOURS, height=height, hovermode="closest",
        title={"text": title, "x": 0.05, "font": {"size": 22, "color": "#111111"}},
        font={"size": 17, "color": "#111111"},
        # The toolbar that appears on hover stands upright in the right margin: lying
        # across the top it covered the chart's title on a projector.
        margin={"l": 10, "r": 44, "t": 60, "b": 10}, modebar={"orientation": "v"},
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0, "font": {"size": 16}},
        xaxis={**_AXIS, "title": {"text": xtitle, "standoff": 15}},
        yaxis={**_AXIS, "title": {"text": ytitle, "standoff": 15}},
    )
    return fig


def thinned(frame: pd.DataFrame) -> pd.DataFrame:
    """At most about ``MAX_POINTS`` rows, evenly spaced, the first kept."""
    return frame if len(frame) <= MAX_POINTS else frame.iloc[:: len(frame) // MAX_POINTS + 1]


def loss_figure(steps: pd.DataFrame, epochs: pd.DataFrame) -> go.Figure:
    """Training loss per step; validation and test loss per epoch, at the step each epoch ended."""
    fig = go.Figure()
    if not steps.empty:
        shown = thinned(steps)
        fig.add_scatter(x=shown["step"], y=shown["loss"], mode="lines", name="training (per step)", line={"width": 2})
    for col, name, dash in (("val_loss", "validation", "dot"), ("test_loss", "test", "dash")):
        if not epochs.empty and col in epochs and epochs[col].notna().any():
            fig.add_scatter(x=epochs["step"], y=epochs[col], mode="lines+markers", name=f"{name} (per epoch)",
                            line={"width": 3, "dash": dash}, marker={"size": 10})
    styled(fig, "Loss", "step", "cross-entropy loss")
    if steps.empty and epochs.empty:  # plotly's empty axes read -1..4: say what is coming instead
        waiting(fig, "The first steps are on their way")
    return fig


def waiting(fig: go.Figure, text: str) -> None:
    """An empty chart: plain axes from 0 and a line saying what will appear."""
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 18})
    fig.update_xaxes(range=[0, 1], showticklabels=False)
    fig.update_yaxes(range=[0, 1], showticklabels=False)


def accuracy_figure(epochs: pd.DataFrame) -> go.Figure:
    """Training, validation and test accuracy per epoch, in percent."""
    fig = go.Figure()
    for col, name in (("train_acc", "training"), ("val_acc", "validation"), ("test_acc", "test")):
        if not epochs.empty and col in epochs and epochs[col].notna().any():
            fig.add_scatter(x=epochs["epoch"], y=epochs[col] * 100, mode="lines+markers", name=name,
                            line={"width": 3}, marker={"size": 11})
    styled(fig, "Accuracy per epoch", "epoch", "accuracy (%)")
    fig.update_xaxes(dtick=1, rangemode="tozero")
    fig.update_yaxes(range=[0, 101])
    if not fig.data:  # an x axis of 0-6 for a 1-epoch run, before its end: say what is coming instead
        waiting(fig, "The first points come when epoch 1 ends")
    return fig


def lines_figure(series: dict[str, tuple[list, list]], title: str, xtitle: str, ytitle: str, *,
                 percent: bool = False) -> go.Figure:
    """A few named curves, ``{name: (x, y)}``, on one chart; in percent from 0 to 100 if ``percent``."""
    fig = go.Figure()
    for name, (x, y) in series.items():
        fig.add_scatter(x=x, y=y, mode="lines+markers", name=labels([name])[0], line={"width": 3}, marker={"size": 9},
                        hovertemplate="epoch %{x}: %{y:.1f}" + ("%" if percent else "") + "<extra>%{fullData.name}</extra>")
    styled(fig, title, xtitle, ytitle)
    if max((len(x) for x, _ in series.values()), default=0) <= 20:  # past that, one tick per epoch is a blur
        fig.update_xaxes(dtick=1)
    if percent:
        fig.update_yaxes(range=[0, 101])
    return fig


def labels(names) -> list[str]:
    """Class names as plotly shows them: plotly reads a subset of HTML (links too) in
    its text, so a folder's class name is escaped."""
    return [html.escape(str(name)) for name in names]


def bars_figure(frame: pd.DataFrame, x: str, y: str, title: str, xtitle: str, *, height: int, hover=None) -> go.Figure:
    """Horizontal bars of ``frame[x]`` (a percentage) per ``frame[y]``, labelled with their value."""
    fig = go.Figure(go.Bar(x=frame[x], y=labels(frame[y]), orientation="h", marker_color=COLOURS[0],
                           text=[f"{v:.1f}%" for v in frame[x]], customdata=hover,
                           hovertemplate="%{y}: %{x:.1f}%" + ("<br>%{customdata}" if hover is not None else "") + "<extra></extra>"))
    styled(fig, title, xtitle, "", height=height)
    fig.update_yaxes(type="category")
    fig.update_xaxes(range=[0, 105])
    return fig


# Above this many classes the matrix shows the classes with the most mistakes: a
# cell per pair grows as the square (1,000 classes made a 28 MB figure), and a
# projector shows a few dozen rows at most.
CONFUSION_CLASSES = 30


def confusion_classes(matrix: np.ndarray, most: int = CONFUSION_CLASSES) -> list[int]:
    """Every class, or the ``most`` classes with the most mistakes (as the true or the
    predicted class), in class order."""
    if len(matrix) <= most:
        return list(range(len(matrix)))
    wrong = matrix - np.diag(np.diag(matrix))
    mistakes = wrong.sum(axis=0) + wrong.sum(axis=1)
    return sorted(np.argsort(-mistakes, kind="stable")[:most].tolist())


# The matrix's plot area on a 1280x800 projector with the sidebar open: two thirds of
# the page less the class names, in pixels. Counts and names are sized to fit it.
MATRIX_PLOT_PX = 340
# Tick labels longer than this are cut (the hover keeps the whole name): Flowers102's
# "hard-leaved pocket orchid" took a third of the matrix's width.
TICK_CHARS = 18


def count_font_size(n: int, largest: int) -> int | None:
    """The font size (px) at which the largest count fits a cell of an ``n``-class matrix
    at ``MATRIX_PLOT_PX``, or None: too small to read, the counts are on hover only."""
    digits = len(str(max(int(largest), 0)))
    size = min(18, int(MATRIX_PLOT_PX / max(n, 1) / (0.62 * digits + 0.5)))
    return size if size >= 11 else None


def tick_label(name: str) -> str:
    """A class name for an axis: escaped (plotly reads HTML), cut to ``TICK_CHARS``."""
    name = str(name)
    return html.escape(name if len(name) <= TICK_CHARS else name[: TICK_CHARS - 1].rstrip() + "…")


def confusion_figure(matrix: np.ndarray, classes: list[str], shown: list[int]) -> go.Figure:
    """The confusion matrix over the ``shown`` classes, counts in the cells while they
    fit and on hover always; each cell carries (true, predicted) class indices for a click."""
    n = len(shown)
    names = labels(classes[i] for i in shown)
    ticks = [tick_label(classes[i]) for i in shown]
    sub = matrix[np.ix_(shown, shown)]
    index = np.asarray(shown)
    ti, pi = np.meshgrid(index, index, indexing="ij")
    custom = np.stack([ti, pi], axis=-1)
    font = count_font_size(n, sub.max(initial=0))
    fig = go.Figure(go.Heatmap(
        z=sub, x=names, y=names, customdata=custom, colorscale="Blues", showscale=False, xgap=1, ygap=1,
        text=np.where(sub > 0, sub.astype(str), "") if font else None,
        texttemplate="%{text}" if font else None, textfont={"size": font or 12},
        hovertemplate="true %{y}, predicted %{x}: %{z} images<extra></extra>",
    ))
    # Heatmap cells cannot be selected by a click; an invisible marker on each cell can.
    rows, cols = np.meshgrid(range(n), range(n), indexing="ij")
    # It lies over the cell, so its hover is the one shown: the count too.
    fig.add_scatter(
        x=[names[c] for c in cols.ravel()], y=[names[r] for r in rows.ravel()], customdata=custom.reshape(-1, 2),
        text=sub.ravel().astype(str), mode="markers", showlegend=False,
        marker={"symbol": "square", "size": max(8, MATRIX_PLOT_PX // max(n, 1)), "opacity": 0.01, "color": "#000000"},
        hovertemplate="true %{y}, predicted %{x}: %{text} images; click to see them<extra></extra>",
    )
    tick_size = 15 if n <= 12 else 13 if n <= 20 else 11
    row_px = max(14, min(34, 480 // max(n, 1)))
    # names slanted over a dozen columns or fewer; upright over more, where slanted ones
    # of narrow columns run into each other
    angle = -45 if n <= 12 else -90
    names_px = max((len(t) for t in ticks), default=0) * 0.55 * tick_size * (0.71 if angle == -45 else 1)
    # No title: the tab and the caption above say what it is, and a projector needs the rows.
    styled(fig, "", "predicted class", "true class", height=int(60 + names_px + row_px * n))
    fig.update_layout(clickmode="event+select", margin={"l": 10, "r": 10, "t": 10, "b": 10}, font={"size": 15})
    axis = {"type": "category", "showgrid": False, "zeroline": False, "tickfont": {"size": tick_size},
            "tickvals": names, "ticktext": ticks, "title": {"font": {"size": 15}, "standoff": 8}}
    fig.update_xaxes(**axis, tickangle=angle)
    fig.update_yaxes(**axis, autorange="reversed")
    return fig

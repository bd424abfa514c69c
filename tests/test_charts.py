"""lab_charts: plotly figures drawn by plotly.js's basic bundle (see lab_charts.py for why)."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs_version
from streamlit.testing.v1 import AppTest

import lab_charts


def test_the_bundle_is_the_plotly_js_of_the_installed_plotly():
    # After upgrading plotly: npm pack plotly.js-basic-dist-min@<get_plotlyjs_version()>
    assert lab_charts.plotly_js_version() == get_plotlyjs_version()
    assert lab_charts.PLOTLY_JS == f"plotly-basic-{get_plotlyjs_version()}.min.js"


def test_the_app_serves_the_bundle():
    import tomllib

    config = tomllib.loads((lab_charts.STATIC.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableStaticServing"] is True
    assert (lab_charts.STATIC / lab_charts.PLOTLY_JS).stat().st_size > 500_000


def _page():
    # AppTest runs this function's body as the script: it imports what it uses.
    import plotly.graph_objects as go

    import lab_charts

    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[0.9, 0.5, 0.2], name="loss"))
    fig.update_layout(title=dict(text="Loss"), height=321)
    lab_charts.chart(fig, key="a")
    lab_charts.chart(lab_charts.prepare(fig), key="b")


def test_a_chart_sends_the_figure_its_height_and_where_plotly_js_is():
    at = AppTest.from_function(_page).run()
    assert not at.exception
    mounted = [c for c in at.get("bidi_component") if c.proto.component_name == "alexnet_lab.chart"]
    assert len(mounted) == 2
    for c in mounted:
        data = json.loads(c.proto.json)
        figure = json.loads(data["figure"])
        assert figure["layout"]["title"]["text"] == "Loss"
        assert figure["data"][0]["name"] == "loss"
        assert data["height"] == 321
        assert data["src"] == "/app/static/" + lab_charts.PLOTLY_JS


def test_prepare_keeps_plotly_json_and_defaults_the_height():
    prepared = lab_charts.prepare(go.Figure(go.Bar(x=["a"], y=[1])))
    assert json.loads(prepared.json)["data"][0]["type"] == "bar"
    assert prepared.height == lab_charts.DEFAULT_HEIGHT


def test_a_trace_the_basic_bundle_cannot_draw_is_refused():
    # plotly.js would skip it silently and leave an empty chart
    with pytest.raises(ValueError, match="heatmap"):
        lab_charts.prepare(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))


def _lines_page():
    import numpy as np

    import lab_charts

    lab_charts.lines(
        [lab_charts.Line("run a", [1, 2, 3], [10.0, float("nan"), 30.0]), lab_charts.Line("run b", [1], [np.float32(5)])],
        key="c", title="Accuracy", x_title="epoch", y_title="accuracy (%)", colours=["#111111", "#222222"],
        y_range=(0, 101), x_integer=True, y_suffix="%",
    )


def test_lines_send_plain_json_with_the_gaps_as_null():
    at = AppTest.from_function(_lines_page).run()
    assert not at.exception
    (mounted,) = [c for c in at.get("bidi_component") if c.proto.component_name == "alexnet_lab.chart"]
    data = json.loads(mounted.proto.json)  # strict JSON: a NaN would not parse in the browser
    assert data["kind"] == "lines" and data["title"] == "Accuracy" and data["y_range"] == [0, 101]
    assert data["series"] == [{"name": "run a", "x": [1.0, 2.0, 3.0], "y": [10.0, None, 30.0]},
                              {"name": "run b", "x": [1.0], "y": [5.0]}]
    assert mounted.proto.json.count("NaN") == 0


def test_the_train_charts_are_plotly_json_that_plotly_accepts_with_gaps_as_null():
    import pandas as pd

    import lab_ui

    steps = pd.DataFrame({"step": [1, 2, 3], "loss": [2.3, float("nan"), 1.9]})
    epochs = pd.DataFrame({"epoch": [1], "step": [3], "val_loss": [2.0], "test_loss": [None],
                           "train_acc": [0.5], "val_acc": [0.25], "test_acc": [float("nan")]})
    loss, accuracy = lab_ui.loss_chart(steps, epochs), lab_ui.accuracy_chart(epochs)
    for figure in (loss, accuracy):
        go.Figure(figure)  # plotly.py's own validation: a property plotly.js does not know raises
        assert json.loads(lab_charts.prepare(figure).json) == figure  # strict JSON, nothing lost
    assert [t["name"] for t in loss["data"]] == ["training (per step)", "validation (per epoch)"]  # no empty test line
    assert loss["data"][0]["y"] == [2.3, None, 1.9]
    assert [t["name"] for t in accuracy["data"]] == ["training", "validation"]
    assert accuracy["data"][1]["y"] == [25.0] and accuracy["layout"]["yaxis"]["range"] == [0, 101]

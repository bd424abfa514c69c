"""Plotly figures drawn by plotly.js's basic bundle instead of Streamlit's full one.

``st.plotly_chart`` draws with the full plotly.js that Streamlit bundles: a
4.7 MB module that Chromium on the 2-core machine spends about 0.9 s of its
main thread evaluating before the first chart appears, on every first visit
(bench/README.md, "Session 5"). The Train page's two live charts and the Runs
page's overlay need only lines, markers and bars: plotly.js's basic bundle
(scatter, bar, pie; 1.2 MB) evaluates in about 0.25 s. ``chart()`` draws a
plotly figure with it through a Streamlit v2 component: the figure is built in
Python with ``plotly.graph_objects`` as before, sent as plotly's own JSON, and
drawn by ``Plotly.react``, which updates a chart in place on every refresh.
A chart below the first screen (the Train page's charts of a finished run,
under the form) is drawn when it scrolls into view or once the page has been
idle for 2 s, so the first screen does not wait for plotly.js.

The bundle is served from ``static/`` (``server.enableStaticServing``) and
loaded once per page, on the first chart. It is plotly.js's own file,
unchanged: ``npm pack plotly.js-basic-dist-min@<version>``, the version that
``plotly.offline.get_plotlyjs_version()`` names, so figures from the installed
plotly.py mean the same to it (a test checks the two versions agree).

The confusion matrix stays on ``st.plotly_chart``: a heatmap is not in the
basic bundle, and its cell clicks use Streamlit's selection events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

STATIC = Path(__file__).resolve().parent / "static"
PLOTLY_JS = "plotly-basic-4.1.1.min.js"
BASIC_TRACES = {"scatter", "bar", "pie"}  # what the basic bundle can draw
DEFAULT_HEIGHT = 450  # plotly's own default

# Runs in the page (a v2 component, no iframe). ``data.figure`` is plotly's JSON.
_JS = """
const CONFIG = { responsive: true, displaylogo: false };
const IDLE_AFTER_MS = 2000;

function loadPlotly(src) {
  // one copy of plotly.js for the whole page, loaded by the first chart drawn
  if (!window.__alexnetLabPlotly) {
    window.__alexnetLabPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        window.__alexnetLabPlotly = undefined;  // a later chart tries again
        reject(new Error(src));
      };
      document.head.appendChild(script);
    });
  }
  return window.__alexnetLabPlotly;
}

function draw(box) {
  loadPlotly(box.labSrc)
    .then((Plotly) => {
      box.querySelector(":scope > .lab-chart-wait")?.remove();
      if (!box.labResize) {
        // the column narrows or widens without the window resizing (the sidebar folds away)
        box.labResize = new ResizeObserver(() => box.isConnected && Plotly.Plots.resize(box));
        box.labResize.observe(box);
      }
      return Plotly.react(box, box.labFigure.data, box.labFigure.layout, CONFIG);
    })
    .catch((error) => {
      box.textContent = "The chart could not be drawn: " + error.message + " did not load.";
    });
}

export default function ({ parentElement, data }) {
  let box = parentElement.querySelector(":scope > div.lab-chart");
  if (!box) {
    box = document.createElement("div");
    box.className = "lab-chart";
    const wait = document.createElement("p");
    wait.className = "lab-chart-wait";
    wait.textContent = "Drawing the chart…";
    wait.style.cssText = "color: #5c6370; padding: 1rem 0 0 0.5rem; margin: 0;";
    box.appendChild(wait);
    parentElement.appendChild(box);
  }
  box.style.height = data.height + "px";
  box.labFigure = JSON.parse(data.figure);
  box.labSrc = data.src;
  // Streamlit calls the cleanup this returns when the element goes, and also
  // when a render was overtaken by a newer one: only a detached box is torn down.
  const cleanup = () => {
    if (box.isConnected) return;
    box.labObserver?.disconnect();
    box.labResize?.disconnect();
    clearTimeout(box.labTimer);
    if (box.labDrawn && window.Plotly) window.Plotly.purge(box);
  };
  if (box.labDrawn) {
    draw(box);  // a refresh: Plotly.react updates the chart in place
    return cleanup;
  }
  if (box.labObserver) return cleanup;  // waiting already: the newest figure is drawn when it ends
  // A chart below the first screen waits until it scrolls into view, or until the
  // page has been idle a while: the page's first screen does not wait for it.
  const start = () => {
    if (box.labDrawn) return;
    box.labDrawn = true;
    box.labObserver.disconnect();
    clearTimeout(box.labTimer);
    draw(box);
  };
  box.labObserver = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && start());
  box.labObserver.observe(box);
  box.labTimer = setTimeout(() => requestIdleCallback(start, { timeout: IDLE_AFTER_MS }), IDLE_AFTER_MS);
  return cleanup;
}
"""

_component = st.components.v2.component("alexnet_lab.chart", js=_JS, isolate_styles=False)


def plotly_js_version() -> str:
    """The plotly.js version of the bundle in static/, read from its banner."""
    with open(STATIC / PLOTLY_JS, encoding="utf-8") as f:
        head = f.read(200)
    found = re.search(r"plotly\.js \(basic - minified\) v(\S+)", head)
    if not found:
        raise ValueError(f"{PLOTLY_JS} has no plotly.js banner")
    return found.group(1)


def _src() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return ("/" + base if base else "") + "/app/static/" + PLOTLY_JS


@dataclass(frozen=True)
class Prepared:
    """A figure serialised once, for pages that draw the same figure in many sessions."""

    json: str
    height: int


def prepare(figure) -> Prepared:
    """Serialise a plotly figure of scatter, bar or pie traces (its layout sets the height)."""
    other = {trace.type for trace in figure.data} - BASIC_TRACES
    if other:
        raise ValueError(f"plotly.js's basic bundle cannot draw {sorted(other)}: use st.plotly_chart for these")
    return Prepared(figure.to_json(), int(figure.layout.height or DEFAULT_HEIGHT))


# Every chart's element key starts with this; Streamlit puts the key in the element's
# class (``st-key-chart-...``) as soon as the element arrives, before its code has
# loaded, so the benchmark and the tests can tell which charts a page has.
KEY_PREFIX = "chart-"


def chart(figure, *, key: str) -> None:
    """Draw a plotly figure, or a ``prepare``d one, as wide as its column."""
    drawn = figure if isinstance(figure, Prepared) else prepare(figure)
    _component(
        key=KEY_PREFIX + key, data={"figure": drawn.json, "height": drawn.height, "src": _src()}, height=drawn.height
    )

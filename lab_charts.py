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

A watched run's charts and its progress line are fed by one poll per run and
page (``Live``): every second the page asks ``_lab/live/<run>`` (lab_server.py)
for the run's progress, and every few seconds for its charts too, and updates
them in place. The Streamlit fragment around them reruns far less often
(lab_pacing.py): a fragment rerun costs the browser a React render of the page
(about 70 ms on the 2-core machine), a poll a few DOM writes. When the poll sees
the run's state change, it tells the fragment to rerun (a trigger), so Stop,
Resume and the final messages follow at once.

The confusion matrix stays on ``st.plotly_chart``: a heatmap is not in the
basic bundle, and its cell clicks use Streamlit's selection events.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import lab_server

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

function chart(parentElement, data) {
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
  box.labSrc = data.src;
  // A rerun's figure is drawn unless the poll has drawn a newer one already.
  const fresh = !data.live || !(box.labVersion >= data.live.version);
  if (fresh) {
    box.labFigure = JSON.parse(data.figure);
    box.labVersion = data.live?.version;
  }
  box.labUnsubscribe?.();
  box.labUnsubscribe = data.live ? subscribe(data.live, (news) => {
    const figure = news.charts?.[data.live.part];
    if (!figure || !(news.version > box.labVersion)) return;
    box.labFigure = figure;
    box.labVersion = news.version;
    if (box.labDrawn) draw(box);
  }) : undefined;
  // Streamlit calls the cleanup this returns when the element goes, and also
  // when a render was overtaken by a newer one: only a detached box is torn down.
  const cleanup = () => {
    if (box.isConnected) return;
    box.labUnsubscribe?.();
    box.labObserver?.disconnect();
    box.labResize?.disconnect();
    clearTimeout(box.labTimer);
    if (box.labDrawn && window.Plotly) window.Plotly.purge(box);
  };
  if (box.labDrawn) {
    if (fresh) draw(box);  // a refresh: Plotly.react updates the chart in place
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

// One poll per run and page, shared by the run's progress line and its charts.
function feedOf(live) {
  const feeds = (window.__alexnetLabFeeds ??= new Map());
  let feed = feeds.get(live.url);
  if (!feed) {
    feed = { subscribers: new Set(), timer: 0, chartsVersion: live.version, chartsAt: performance.now() };
    feeds.set(live.url, feed);
  }
  feed.live = live;  // the newest pace and viewer
  return feed;
}

function subscribe(live, listener) {
  const feed = feedOf(live);
  feed.subscribers.add(listener);
  if (!feed.timer && live.active) feed.timer = setTimeout(() => poll(feed), live.every_ms);
  return () => {
    feed.subscribers.delete(listener);
    if (!feed.subscribers.size) {
      clearTimeout(feed.timer);
      feed.timer = 0;
      window.__alexnetLabFeeds.delete(live.url);
    }
  };
}

async function poll(feed) {
  const live = feed.live;
  const url = new URL(live.url, window.location.href);
  url.searchParams.set("viewer", live.viewer);
  // charts every few seconds, and not while the tab is hidden
  if (!document.hidden && performance.now() - feed.chartsAt >= live.charts_every_ms) {
    url.searchParams.set("since", feed.chartsVersion);
  }
  let active = true;
  try {
    const answer = await fetch(url, { cache: "no-store" });
    if (answer.ok) {
      const news = await answer.json();
      if (news.charts) {
        feed.chartsVersion = news.version;
        feed.chartsAt = performance.now();
      }
      active = news.active;
      for (const listener of [...feed.subscribers]) listener(news);
    }
  } catch (error) {
    // Unreachable (a proxy that knows no such path): the fragment's reruns still refresh the view.
  }
  feed.timer = active && feed.subscribers.size ? setTimeout(() => poll(feed), feed.live.every_ms) : 0;
}

function progress(parentElement, data, setTriggerValue) {
  let line = parentElement.querySelector(":scope > div.lab-progress");
  if (!line) {
    line = document.createElement("div");
    line.className = "lab-progress";
    line.innerHTML = '<p class="lab-progress-text"></p><div class="lab-progress-track"><div class="lab-progress-bar"></div></div>';
    parentElement.appendChild(line);
  }
  const show = (news, rerun) => {
    // An answer older than the one shown is dropped; a rerun's status is taken as it
    // is (a resumed run starts again from its last checkpoint's step).
    if (!rerun && news.step < line.labStep) return;
    line.labStep = news.step;
    line.querySelector(".lab-progress-text").textContent = news.text;
    line.querySelector(".lab-progress-bar").style.width = (100 * news.fraction).toFixed(2) + "%";
  };
  show(data, true);
  line.labAsked = undefined;
  line.labUnsubscribe?.();
  line.labUnsubscribe = data.live ? subscribe(data.live, (news) => {
    show(news);
    // The run started, stopped or finished, or the audience changed the pace: the
    // fragment reruns now (asked once; its rerun draws this line again).
    const change = news.state + ":" + news.scale;
    if (change !== data.state + ":" + data.live.scale && change !== line.labAsked) {
      line.labAsked = change;
      setTriggerValue("changed", change);
    }
  }) : undefined;
  return () => {
    if (!line.isConnected) line.labUnsubscribe?.();
  };
}

export default function ({ parentElement, data, setTriggerValue }) {
  return data.kind === "progress" ? progress(parentElement, data, setTriggerValue) : chart(parentElement, data);
}
"""

# st.progress's look: the text above a thin bar in the theme's primary colour.
_CSS = """
.lab-progress-text { margin: 0 0 0.35rem 0; font-size: 1rem; line-height: 1.5; }
.lab-progress-track { height: 0.5rem; border-radius: 0.25rem; background: var(--st-secondary-background-color, #eef2f7); overflow: hidden; }
.lab-progress-bar { height: 100%; width: 0; border-radius: 0.25rem; background: var(--st-primary-color, #0b57d0); }
"""

_component = st.components.v2.component("alexnet_lab.chart", js=_JS, css=_CSS, isolate_styles=False)


def plotly_js_version() -> str:
    """The plotly.js version of the bundle in static/, read from its banner."""
    with open(STATIC / PLOTLY_JS, encoding="utf-8") as f:
        head = f.read(200)
    found = re.search(r"plotly\.js \(basic - minified\) v(\S+)", head)
    if not found:
        raise ValueError(f"{PLOTLY_JS} has no plotly.js banner")
    return found.group(1)


def _base() -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return "/" + base if base else ""


def _src() -> str:
    return _base() + "/app/static/" + PLOTLY_JS


@dataclass(frozen=True)
class Live:
    """Where and how often a page polls a run (lab_server.LiveApi), and what it has."""

    run_id: str
    viewer: str  # the session, counted in the run's audience (lab_pacing)
    version: int  # of the metrics the page was sent (lab_ui.RunMetrics.version)
    active: bool  # polling: the run is queued or running
    scale: int  # lab_pacing.refresh_scale of the audience when the page was drawn
    every_s: float
    charts_every_s: float

    def data(self, part: str | None = None) -> dict:
        return {
            "url": _base() + "/" + lab_server.LIVE_PATH + self.run_id, "viewer": self.viewer, "version": self.version,
            "active": self.active, "scale": self.scale, "every_ms": round(1000 * self.every_s),
            "charts_every_ms": round(1000 * self.charts_every_s), "part": part,
        }


def _changed() -> None:
    """Nothing to do: the trigger's own rerun is the point."""


def progress(fraction: float, text: str, *, step: int, state: str, live: Live, key: str) -> None:
    """A progress line like st.progress's, which the page keeps up to date by polling
    while ``live.active``. When the poll sees the run's state or its audience's pace
    change, the script reruns (inside a fragment, the fragment)."""
    _component(
        key=key,
        data={"kind": "progress", "fraction": min(max(float(fraction), 0.0), 1.0), "text": text, "step": int(step),
              "state": state, "live": live.data()},
        on_changed_change=_changed,
    )


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


def chart(figure, *, key: str, live: Live | None = None, part: str | None = None) -> None:
    """Draw a plotly figure, or a ``prepare``d one, as wide as its column. With
    ``live``, the poll's newer figure of ``part`` replaces it in place."""
    drawn = figure if isinstance(figure, Prepared) else prepare(figure)
    data = {"kind": "chart", "figure": drawn.json, "height": drawn.height, "src": _src()}
    if live is not None:
        data["live"] = live.data(part)
    _component(key=KEY_PREFIX + key, data=data, height=drawn.height)

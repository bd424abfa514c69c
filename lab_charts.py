"""Plotly figures drawn by plotly.js's basic bundle instead of Streamlit's full one.

``st.plotly_chart`` draws with the full plotly.js that Streamlit bundles: a
4.7 MB module that Chromium on the 2-core machine spends about 0.9 s of its
main thread evaluating before the first chart appears, on every first visit
(bench/README.md, "Session 5"). The Train page's two live charts and the
upload's top 5 need only lines, markers and bars: plotly.js's basic bundle
(scatter, bar, pie; 1.2 MB) evaluates in about 0.25 s. ``chart()`` draws a
plotly figure with it through a Streamlit v2 component: the figure is built in
Python (with ``plotly.graph_objects``, or as plotly's JSON in a dict where it is
rebuilt every few seconds), sent as plotly's own JSON, and drawn by
``Plotly.react``, which updates a chart in place on every refresh.
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

``lines()`` draws a few curves as plain SVG in the page, with the values at the
nearest x on hover: the Runs page's overlay, in its first screen, where even
the basic bundle kept a first visit waiting about 0.3 s.
"""

from __future__ import annotations

import json
import math
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
    box.labText = JSON.stringify(box.labFigure);
    box.labVersion = data.live?.version;
  }
  box.labUnsubscribe?.();
  box.labUnsubscribe = data.live ? subscribe(data.live, (news) => {
    const figure = news.charts?.[data.live.part];
    if (!figure || !(news.version > box.labVersion)) return;
    box.labVersion = news.version;
    // The accuracy chart only changes when an epoch ends: between two, a redraw
    // would be 40-60 ms of plotly.js for the same picture.
    const text = JSON.stringify(figure);
    if (text === box.labText) return;
    box.labFigure = figure;
    box.labText = text;
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
  let active = true, answered = false;
  try {
    const answer = await fetch(url, { cache: "no-store" });
    if (answer.ok) {
      const news = await answer.json();
      answered = true;
      if (news.charts) {
        feed.chartsVersion = news.version;
        feed.chartsAt = performance.now();
      }
      active = news.active;
      for (const listener of [...feed.subscribers]) listener(news);
    }
  } catch (error) {
    // no answer, or not the lab's: counted below
  }
  // Unreachable three times running (a proxy that does not forward _lab/): the page is
  // told once, and its fragments take over the refreshing (lab_pacing.py).
  feed.failures = answered ? 0 : (feed.failures || 0) + 1;
  if (feed.failures === 3) for (const listener of [...feed.subscribers]) listener({ unreachable: true });
  const every = feed.failures >= 3 ? 10 * feed.live.every_ms : feed.live.every_ms;  // and asks less often
  feed.timer = active && feed.subscribers.size ? setTimeout(() => poll(feed), every) : 0;
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
    // The poll stopped reaching the server, or reaches it again: the page switches
    // who refreshes it (asked once each way).
    const reach = !news.unreachable === !data.live.unreachable ? undefined : news.unreachable ? "unreachable" : "reachable";
    if (reach && line.labAsked !== reach) {
      line.labAsked = reach;
      setTriggerValue("changed", reach);
    }
    if (news.unreachable) return;
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

// ---- lines(): a few curves as plain SVG, drawn at once (no plotly.js to load)

const SVG = "http://www.w3.org/2000/svg";
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");

function ticksOf(lo, hi, wanted, integer) {
  // 1, 2, 2.5 or 5 times a power of ten, about ``wanted`` of them
  const raw = (hi - lo) / wanted;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toFixed(10));
  return ticks;
}

function extent(values, pad) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!(hi > lo)) [lo, hi] = [lo - 1, hi + 1];
  const margin = (hi - lo) * pad;
  return [lo - margin, hi + margin];
}

function drawLines(box) {
  const data = box.labData;
  const width = Math.max(box.clientWidth, 240);
  const height = data.height;
  const m = { left: 76, right: 24, top: 58, bottom: 62 };
  const series = data.series.map((s, i) => ({
    ...s, colour: data.colours[i % data.colours.length],
    points: s.x.map((x, j) => [x, s.y[j]]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)),
  }));
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = data.x_integer && xs.length ? [xs[0] - 0.3, xs[xs.length - 1] + 0.3] : extent(xs.length ? xs : [0], 0.03);
  const [y0, y1] = data.y_range || extent(ys.length ? ys : [0], 0.06);
  const X = (v) => m.left + ((v - x0) / (x1 - x0)) * (width - m.left - m.right);
  const Y = (v) => height - m.bottom - ((v - y0) / (y1 - y0)) * (height - m.top - m.bottom);
  const fmt = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));  // 100.0%, not 100%
  const parts = [];
  for (const t of ticksOf(y0, y1, 5, false)) {
    parts.push(`<line x1="${m.left}" x2="${width - m.right}" y1="${Y(t)}" y2="${Y(t)}" stroke="#d5dae3"/>`,
      `<text x="${m.left - 8}" y="${Y(t)}" text-anchor="end" dominant-baseline="middle" font-size="15">${+t.toFixed(6)}</text>`);
  }
  for (const t of ticksOf(x0, x1, Math.min(10, Math.max(2, Math.floor((width - m.left) / 70))), data.x_integer)) {
    parts.push(`<line x1="${X(t)}" x2="${X(t)}" y1="${m.top}" y2="${height - m.bottom}" stroke="#d5dae3"/>`,
      `<text x="${X(t)}" y="${height - m.bottom + 22}" text-anchor="middle" font-size="15">${+t.toFixed(6)}</text>`);
  }
  parts.push(`<text x="${m.left}" y="30" font-size="22" font-weight="700">${esc(data.title)}</text>`,
    `<text x="${(m.left + width - m.right) / 2}" y="${height - 12}" text-anchor="middle" font-size="17">${esc(data.x_title)}</text>`,
    `<text transform="translate(20 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="17">${esc(data.y_title)}</text>`);
  for (const s of series) {
    const path = s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
    parts.push(`<polyline class="lab-line" points="${path}" fill="none" stroke="${s.colour}" stroke-width="3" stroke-linejoin="round"/>`);
    for (const [x, y] of s.points) parts.push(`<circle cx="${X(x)}" cy="${Y(y)}" r="4.5" fill="${s.colour}"/>`);
  }
  parts.push(`<line class="lab-lines-guide" y1="${m.top}" y2="${height - m.bottom}" stroke="#5c6370" stroke-dasharray="4 3" visibility="hidden"/>`);
  const legend = series.map((s) => `<span><i style="background:${s.colour}"></i>${esc(s.name)}</span>`).join("");
  box.innerHTML = `<svg class="lab-lines" xmlns="${SVG}" width="${width}" height="${height}" role="img" aria-label="${esc(data.title)}">`
    + parts.join("") + `</svg><div class="lab-lines-legend">${legend}</div><div class="lab-lines-tip" hidden></div>`;
  box.labWidth = box.clientWidth;
  // Hover: the values of every curve at the nearest x, as plotly's "x unified" hover shows them.
  const svg = box.querySelector("svg"), guide = svg.querySelector(".lab-lines-guide"), tip = box.querySelector(".lab-lines-tip");
  const showAt = (at) => {
    if (!xs.length) return;
    const x = xs.reduce((best, v) => (Math.abs(X(v) - at) < Math.abs(X(best) - at) ? v : best), xs[0]);
    guide.setAttribute("x1", X(x)); guide.setAttribute("x2", X(x)); guide.setAttribute("visibility", "visible");
    const rows = series.map((s) => [s, s.points.find((p) => p[0] === x)]).filter(([, p]) => p);
    tip.innerHTML = `<b>${esc(data.x_title)} ${+x.toFixed(6)}</b>` + rows.map(([s, p]) =>
      `<div><i style="background:${s.colour}"></i>${esc(s.name)}: <b>${fmt(p[1])}${esc(data.y_suffix)}</b></div>`).join("");
    tip.hidden = false;
    const left = X(x) + 14;
    tip.style.left = (left + tip.offsetWidth > width ? X(x) - 14 - tip.offsetWidth : left) + "px";
    // over the lower half when the values sit high, and the other way round
    const high = rows.reduce((sum, [, p]) => sum + Y(p[1]), 0) / rows.length < (m.top + height - m.bottom) / 2;
    tip.style.top = (high ? height - m.bottom - 8 - tip.offsetHeight : m.top + 8) + "px";
  };
  svg.addEventListener("mousemove", (event) => showAt((box.labHoverAt = event.clientX - svg.getBoundingClientRect().left)));
  svg.addEventListener("mouseleave", () => {
    box.labHoverAt = undefined;
    guide.setAttribute("visibility", "hidden");
    tip.hidden = true;
  });
  // drawn again (new data, a new width) under a resting pointer: the values stay shown
  if (box.labHoverAt !== undefined) showAt(box.labHoverAt);
}

function lines(parentElement, data) {
  let box = parentElement.querySelector(":scope > div.lab-lines-box");
  if (!box) {
    box = document.createElement("div");
    box.className = "lab-lines-box";
    parentElement.appendChild(box);
    // the column narrows or widens (the sidebar folds away): draw again at the new width
    box.labResize = new ResizeObserver(() => box.isConnected && box.clientWidth !== box.labWidth && drawLines(box));
    box.labResize.observe(box);
  }
  box.labData = data;
  drawLines(box);
  return () => {
    if (!box.isConnected) box.labResize.disconnect();
  };
}

export default function ({ parentElement, data, setTriggerValue }) {
  if (data.kind === "progress") return progress(parentElement, data, setTriggerValue);
  return data.kind === "lines" ? lines(parentElement, data) : chart(parentElement, data);
}
"""

# st.progress's look: the text above a thin bar in the theme's primary colour.
_CSS = """
.lab-progress-text { margin: 0 0 0.35rem 0; font-size: 1rem; line-height: 1.5; }
.lab-progress-track { height: 0.5rem; border-radius: 0.25rem; background: var(--st-secondary-background-color, #eef2f7); overflow: hidden; }
.lab-progress-bar { height: 100%; width: 0; border-radius: 0.25rem; background: var(--st-primary-color, #0b57d0); }
.lab-lines-box { position: relative; }
.lab-lines { display: block; font-family: inherit; fill: #111111; }
.lab-lines-legend { display: flex; flex-wrap: wrap; gap: 0.2rem 1.4rem; padding: 0 0 0 76px; font-size: 16px; }
.lab-lines-legend i, .lab-lines-tip i { display: inline-block; width: 1.6em; height: 4px; margin: 0 0.4em 0.25em 0; vertical-align: middle; }
.lab-lines-tip { position: absolute; pointer-events: none; background: #ffffff; border: 1px solid #8a94a6; border-radius: 4px;
  padding: 0.35rem 0.6rem; font-size: 15px; line-height: 1.5; white-space: nowrap; box-shadow: 0 2px 6px rgba(0, 0, 0, 0.15); }
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
    unreachable: bool = False  # the poll could not reach the server: the fragments refresh the page

    def data(self, part: str | None = None) -> dict:
        return {
            "url": _base() + "/" + lab_server.LIVE_PATH + self.run_id, "viewer": self.viewer, "version": self.version,
            "active": self.active, "scale": self.scale, "every_ms": round(1000 * self.every_s),
            "charts_every_ms": round(1000 * self.charts_every_s), "part": part, "unreachable": self.unreachable,
        }


def _changed() -> None:
    """Nothing to do: the trigger's own rerun is the point."""


def progress(fraction: float, text: str, *, step: int, state: str, live: Live, key: str) -> bool | None:
    """A progress line like st.progress's, which the page keeps up to date by polling
    while ``live.active``. When the poll sees the run's state or its audience's pace
    change, the script reruns (inside a fragment, the fragment). In the rerun the
    poll asked for because it could not reach the server, True; because it reaches it
    again after that, False; otherwise None."""
    result = _component(
        key=key,
        data={"kind": "progress", "fraction": min(max(float(fraction), 0.0), 1.0), "text": text, "step": int(step),
              "state": state, "live": live.data()},
        on_changed_change=_changed,
    )
    return {"unreachable": True, "reachable": False}.get(getattr(result, "changed", None))


@dataclass(frozen=True)
class Prepared:
    """A figure serialised once, for pages that draw the same figure in many sessions."""

    json: str
    height: int


def prepare(figure) -> Prepared:
    """Serialise a plotly figure of scatter, bar or pie traces (its layout sets the
    height): a ``plotly.graph_objects`` figure, or its JSON as a dict of plain
    lists and numbers (``{"data": [...], "layout": {...}}``), which skips plotly.py's
    validation for a figure built again every few seconds."""
    if isinstance(figure, dict):
        types = {trace.get("type", "scatter") for trace in figure["data"]}
        height, text = figure["layout"].get("height"), json.dumps(figure, allow_nan=False)
    else:
        types = {trace.type for trace in figure.data}
        height, text = figure.layout.height, figure.to_json()
    other = types - BASIC_TRACES
    if other:
        raise ValueError(f"plotly.js's basic bundle cannot draw {sorted(other)}: use st.plotly_chart for these")
    return Prepared(text, int(height or DEFAULT_HEIGHT))


# Every chart's element key starts with this; Streamlit puts the key in the element's
# class (``st-key-chart-...``) as soon as the element arrives, before its code has
# loaded, so the benchmark and the tests can tell which charts a page has.
KEY_PREFIX = "chart-"


def json_numbers(values, scale: float = 1.0) -> list[float | None]:
    """Numbers for a chart's JSON: plain floats, a missing or NaN value null (JSON has no NaN)."""
    out = []
    for v in values:
        try:
            number = float(v)
        except TypeError:  # None, pandas' NA
            number = math.nan
        out.append(number * scale if math.isfinite(number) else None)
    return out


@dataclass(frozen=True)
class Line:
    """One curve of ``lines()``: a missing or NaN y leaves its point out."""

    name: str
    x: list[float]
    y: list[float | None]


def lines(
    series: list[Line], *, key: str, title: str, x_title: str, y_title: str, colours: list[str],
    y_range: tuple[float, float] | None = None, x_integer: bool = False, y_suffix: str = "", height: int = 420,
) -> None:
    """Curves over a shared x as plain SVG drawn in the page, with a legend and the
    values at the nearest x on hover. For a chart in a page's first screen that
    needs no zoom: it is drawn at once, where a plotly chart first waits for
    plotly.js (about 0.3 s of a first visit's main thread on two cores)."""

    data = {
        "kind": "lines", "title": title, "x_title": x_title, "y_title": y_title, "colours": list(colours),
        "y_range": list(y_range) if y_range else None, "x_integer": x_integer, "y_suffix": y_suffix, "height": height,
        "series": [{"name": s.name, "x": json_numbers(s.x), "y": json_numbers(s.y)} for s in series],
    }
    _component(key=KEY_PREFIX + key, data=data)


def chart(figure, *, key: str, live: Live | None = None, part: str | None = None) -> None:
    """Draw a plotly figure, or a ``prepare``d one, as wide as its column. With
    ``live``, the poll's newer figure of ``part`` replaces it in place."""
    drawn = figure if isinstance(figure, Prepared) else prepare(figure)
    data = {"kind": "chart", "figure": drawn.json, "height": drawn.height, "src": _src()}
    if live is not None:
        data["live"] = live.data(part)
    _component(key=KEY_PREFIX + key, data=data, height=drawn.height)

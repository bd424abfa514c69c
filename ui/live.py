"""The live view of a run, and the refresh budget its audience shares.

A watching Train page has two fragments (``st.fragment(run_every=...)``): the
status line reruns every ``STATUS_EVERY_S`` and the two charts every
``CHARTS_EVERY_S``. Each rerun reads only the metric lines added since the last
one (``RunMetrics``, shared by every session watching the run), and costs the
CPU that training needs: up to ``FREE_VIEWERS`` sessions refresh at the base
rate; beyond that every session slows by the power of two that keeps the total
near ``FREE_VIEWERS`` sessions' worth (twenty viewers: 8x). Powers of two, so
that an audience growing one by one changes a page's pace only a few times
(each change is a full rerun of that page).

The audience is the sessions of this server whose page refreshed the run's
status lately: a session counts from its id in ``st.session_state``, which only
the server makes, and stops counting once it has missed a few refreshes at its
pace (a tab closed or reloaded, a page switched) or watches another run.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from alexnet_core import paths, runs
from alexnet_core.recipes import reported_line
from alexnet_core.runfiles import ACTIVE_STATES
from ui import classroom
from ui.charts import accuracy_figure, loss_figure
from ui.choice import PREDICTIONS, pick_run_ui, run_ids_newest_first, run_names, session_id
from ui.formatting import error_ui, format_duration, md, percent

STATUS_EVERY_S = 2
CHARTS_EVERY_S = 5
FREE_VIEWERS = 3
MAX_SCALE = 16
SEEN_FOR_S = 90.0  # longer than the slowest refresh, so an audience at that pace still counts itself
# A session that has not refreshed for this many of its refreshes, and a little more (a
# busy server's rerun comes late), has left: two tabs read two pages, not four.
MISSED_REFRESHES = 3
LATE_S = 10.0
# A run's step events kept for its chart: past this, every other one is dropped (the
# chart shows a few hundred points; a 200 MB metrics file kept 1.9 GB in the server).
MAX_STEP_ROWS = 20_000
READ_CHUNK_BYTES = 8 << 20  # a long metrics file is read and thinned this much at a time

STATE_ICONS = {
    "queued": ":material/hourglass_top:",
    "running": ":material/play_circle:",
    "finished": ":material/check_circle:",
    "failed": ":material/cancel:",
    "stopped": ":material/stop_circle:",
    "interrupted": ":material/warning:",
    "damaged": ":material/broken_image:",
}


def refresh_scale(viewers: int) -> int:
    """How many times slower than the base rate each of ``viewers`` sessions refreshes."""
    scale = 1
    while scale * FREE_VIEWERS < viewers and scale < MAX_SCALE:
        scale *= 2
    return scale


def status_every_s(viewers: int) -> float:
    """How often each of ``viewers`` sessions refreshes a run's status, in seconds."""
    return STATUS_EVERY_S * refresh_scale(viewers)


class Audience:
    """The sessions watching one run, each until the time it has left by. Thread-safe:
    Streamlit runs every session's script in a thread of its own.

    With ``pace`` (viewers -> seconds between a session's refreshes), a session has
    left once it missed ``MISSED_REFRESHES`` of them (plus ``LATE_S``); at most
    ``seen_for_s`` after it was last seen in any case.
    """

    def __init__(self, seen_for_s: float = SEEN_FOR_S, clock=time.monotonic, pace=None):
        self.seen_for_s = seen_for_s
        self.clock = clock
        self.pace = pace
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def seen(self, session: str) -> int:
        """Record that ``session`` refreshed now; return how many sessions are watching."""
        with self._lock:
            now = self.clock()
            self._forget_gone(now)
            self._until[session] = now
            watching = len(self._until)
            keep = self.seen_for_s
            if self.pace is not None:
                keep = min(keep, MISSED_REFRESHES * self.pace(watching) + LATE_S)
            self._until[session] = now + keep
            return watching

    def leave(self, session: str) -> None:
        """``session`` no longer watches (it picked another run)."""
        with self._lock:
            self._until.pop(session, None)

    def count(self) -> int:
        with self._lock:
            self._forget_gone(self.clock())
            return len(self._until)

    def _forget_gone(self, now: float) -> None:
        for session, until in list(self._until.items()):
            if now > until:
                del self._until[session]


class RunMetrics:
    """One run's metric lines and charts, shared by every session that watches it.

    The lines added since the last refresh are read once for everyone, and the
    frames and figures are rebuilt only when new lines arrived.
    """

    def __init__(self, run_id: str, runs_dir: str):
        self.run_id, self.runs_dir = run_id, runs_dir
        self.lock = threading.Lock()
        self.offset = 0
        self.rows: list[dict] = []
        self.steps = 0  # step events among the rows
        self.step_every = 1  # of the step lines still to read, those parsed: 1 in step_every
        self.version = 0
        self.built: tuple[pd.DataFrame, pd.DataFrame, go.Figure, go.Figure] | None = None
        self.built_version = -1
        self.audience = Audience(pace=status_every_s)

    def _read(self) -> None:
        path = runs.run_path(self.run_id, self.runs_dir) / "metrics.jsonl"
        if path.exists() and path.stat().st_size < self.offset:  # the file was replaced: start over
            self.offset, self.rows, self.steps, self.step_every = 0, [], 0, 1
            self.version += 1
        while True:  # a long file in bounded chunks, thinned as it goes
            start = self.offset
            new, self.offset = runs.read_metrics(self.run_id, start, self.runs_dir,
                                                 max_bytes=READ_CHUNK_BYTES, step_every=self.step_every)
            if new:
                self.rows.extend(new)
                self.version += 1
                self.steps += sum(1 for row in new if row.get("type") == "step")
                while self.steps > MAX_STEP_ROWS:
                    self._thin()
            if self.offset - start < READ_CHUNK_BYTES // 2:
                return

    def _thin(self) -> None:
        """Drop every other step event, and parse only every other one from now on;
        every other event (epochs, resumes) stays."""
        kept, seen = [], 0
        for row in self.rows:
            if row.get("type") == "step":
                seen += 1
                if seen % 2:
                    continue
            kept.append(row)
        self.rows, self.steps = kept, seen // 2
        self.step_every *= 2

    def snapshot(self) -> tuple[pd.DataFrame, pd.DataFrame, go.Figure, go.Figure]:
        """(steps, epochs, loss figure, accuracy figure), after reading the new lines."""
        with self.lock:
            self._read()
            if self.built_version != self.version:
                # frames_from_events drops the steps a resume trained again.
                steps, epochs = runs.frames_from_events(self.rows)
                self.built = (steps, epochs, loss_figure(steps, epochs), accuracy_figure(epochs))
                self.built_version = self.version
            return self.built


@st.cache_resource(max_entries=32)
def _run_metrics(run_id: str, runs_dir: str) -> RunMetrics:
    return RunMetrics(run_id, runs_dir)


def run_metrics(run_id: str) -> RunMetrics:
    """The shared RunMetrics of ``run_id`` in this server's run store."""
    return _run_metrics(run_id, str(paths.runs_root()))


def forget_run_metrics(run_id: str) -> None:
    """Drop ``run_id``'s RunMetrics (the run was deleted; a new run may take its id)."""
    _run_metrics.clear(run_id, str(paths.runs_root()))


def progress_text(status: dict) -> tuple[float, str]:
    """(fraction done, 'epoch 2 of 6 · step 90 of 270 · 812 images/s · about 12 s left')."""
    epochs = int(status.get("epochs") or 0)
    total = epochs * int(status.get("steps_per_epoch") or 0)
    step = int(status.get("step") or 0)
    done = int(status.get("epoch") or 0)
    state = status.get("state")
    active = state in ACTIVE_STATES
    parts = []
    if epochs:
        # The epoch it is in (or was in when it stopped), as while it ran; "after" one it ended on.
        within = active or (state != "finished" and int(status.get("batch") or 0) > 0)
        parts.append(f"epoch {min(done + 1, epochs)} of {epochs}" if within else
                     f"{'after ' if state != 'finished' and done else ''}epoch {done} of {epochs}")
    if total:
        parts.append(f"step {step:,} of {total:,}")
    if status.get("images_per_s") and active:
        parts.append(f"{float(status['images_per_s']):,.0f} images/s")
    if active and status.get("device") and not str(status["device"]).startswith("cpu"):  # the CPU goes without saying
        parts.append(f"on {status['device']}")
    if active:
        eta = status.get("eta_seconds")
        parts.append(f"about {format_duration(eta)} left" if eta is not None else "estimating time left…")
    fraction = 1.0 if state == "finished" else (min(step / total, 1.0) if total else 0.0)
    return fraction, " · ".join(parts)


def watch_ui(frame: pd.DataFrame) -> None:
    """Pick a run and show it; while it is queued or running, two fragments refresh
    its status and its charts at the audience's pace."""
    ids = run_ids_newest_first(frame)
    st.subheader("Watch a run")
    if not ids:
        st.info("No runs yet. Launch one above, or start the quick demo on Home.", icon=":material/lightbulb:")
        return
    run_id = pick_run_ui(ids, frame)
    active = dict(zip(frame["id"], frame["state"])).get(run_id) in ACTIVE_STATES
    watched = st.session_state.pop("_watching", None)
    if watched is not None and watched != run_id:  # it counts in the audience of one run at a time
        run_metrics(watched).audience.leave(session_id())
    if active:
        st.session_state["_watching"] = run_id
    scale = refresh_scale(run_metrics(run_id).audience.seen(session_id())) if active else 1
    name = run_names(frame).get(run_id, run_id)
    st.fragment(_status_view, run_every=STATUS_EVERY_S * scale if active else None)(run_id, name, active, scale)
    st.fragment(_charts_view, run_every=CHARTS_EVERY_S * scale if active else None)(run_id, active)


def _status_view(run_id: str, name: str, active: bool, scale: int) -> None:
    try:
        status = runs.status(run_id)
    except Exception as exc:
        error_ui(f"Run {run_id} cannot be read (was it deleted?).", exc)
        return
    state = status.get("state", "?")
    viewers = run_metrics(run_id).audience.seen(session_id()) if active else 0
    if active != (state in ACTIVE_STATES) or (active and refresh_scale(viewers) != scale):
        st.rerun()  # start, stop or re-pace the refreshing: the fragments' timers are set by a full run
    fraction, text = progress_text(status)
    if state == "queued":
        text = waiting_text(run_id)
    head, controls = st.columns([5, 2])  # wide enough for "See its predictions" at 1280 pixels
    with head:
        st.markdown(f"#### {STATE_ICONS.get(state, '')} {md(name)} is **{state}**", help=f"Run id: {run_id}")
        st.progress(fraction, text=text or state)
    with controls:
        _controls_ui(run_id, state, status.get("owner"))
    if scale > 1:
        st.caption(
            f":material/groups: {viewers} pages are watching this run, so each refreshes its progress every "
            f"{STATUS_EVERY_S * scale:g} s and its charts every {CHARTS_EVERY_S * scale:g} s "
            "to leave the CPU to training."
        )
    if state == "failed":
        error_ui(f"The run failed. {status.get('error') or 'The log below may say why.'}")
    elif state == "damaged":
        error_ui(f"{status.get('error') or 'This run is damaged.'} The Runs page can delete it.")
    elif state == "interrupted":
        st.warning("The training process stopped unexpectedly (the computer slept or the process was killed). "
                   "Resume continues from the last checkpoint.", icon=":material/warning:")
    elif state == "finished":
        st.success(
            f"Finished: best validation accuracy {percent(status.get('best_val_acc'))}"
            f" (epoch {status.get('best_epoch') or '–'}), test accuracy {percent(status.get('test_acc'))}.",
            icon=":material/check_circle:",
        )
        try:
            line = reported_line(runs.read_config(run_id), status.get("test_acc"))
        except (OSError, ValueError):  # the comparison is a bonus: an unreadable config only loses it
            line = None
        if line:
            st.caption(md(line))


def waiting_text(run_id: str) -> str:
    """What a queued run waits for: the runs training now, with their progress."""
    try:
        frame = runs.list_runs()
        names = run_names(frame)
        ahead = [(names[rid], runs.status(rid)) for rid, state in zip(frame["id"], frame["state"]) if state == "running"]
    except Exception:  # an unreadable store: the plain state says enough
        return "queued"
    if not ahead:
        return "queued: it starts as soon as a training slot is free"
    return "waiting for " + "; ".join(f"{name}: {progress_text(status)[1]}" for name, status in ahead)


def _act(action, run_id: str, failure: str, done=None) -> None:
    """Do ``action(run_id)``; the failure's sentence, or ``done()`` once it worked."""
    try:
        action(run_id)
    except Exception as exc:
        error_ui(failure, exc)
    else:
        if done:
            done()


def _controls_ui(run_id: str, state: str, owner) -> None:
    action = {"queued": "cancel", "running": "stop", "stopped": "resume", "interrupted": "resume",
              "failed": "resume"}.get(state)
    if action and not classroom.may_manage(owner):
        st.caption(classroom.not_yours(action))
    elif state == "queued":
        if st.button("Cancel", icon=":material/cancel:", key=f"cancel:{run_id}", width="stretch",
                     help="Takes the run out of the queue before it starts."):
            _act(runs.stop, run_id, "The run could not be cancelled.", st.rerun)
    elif state in ACTIVE_STATES:
        if st.button("Stop", icon=":material/stop:", key=f"stop:{run_id}", width="stretch",
                     help="Stops after the current step and saves a checkpoint."):
            _act(runs.stop, run_id, "The run could not be stopped.",
                 lambda: st.toast("Stop requested: the run stops after the current step.", icon=":material/stop:"))
    elif state in ("stopped", "interrupted", "failed"):
        if st.button("Resume", icon=":material/play_arrow:", key=f"resume:{run_id}", type="primary", width="stretch",
                     help="Continues from the last checkpoint."):
            _act(runs.resume, run_id, "The run could not be resumed.", st.rerun)
    elif state == "finished":
        # A link, not st.switch_page: a fragment cannot switch pages. The
        # Predictions page opens on focus_run, the run watched here.
        st.page_link(PREDICTIONS, label="See its predictions", icon=":material/image_search:")


def _charts_view(run_id: str, active: bool) -> None:
    try:
        steps, epochs, loss, accuracy = run_metrics(run_id).snapshot()
    except Exception as exc:
        error_ui("The run's metrics could not be read.", exc)
        return
    if steps.empty and epochs.empty and not active:
        st.info("This run recorded no metrics.", icon=":material/hourglass_top:")
    else:
        a, b = st.columns(2)
        a.plotly_chart(loss, key=f"loss:{run_id}", theme=None, width="stretch")
        b.plotly_chart(accuracy, key=f"acc:{run_id}", theme=None, width="stretch")
    # Drawn only while open: the tail would otherwise travel with every refresh.
    log = st.expander("Log (last 40 lines)", key=f"log:{run_id}", on_change="rerun")
    if log.open:
        with log:
            try:
                st.code(runs.log_tail(run_id, 40) or "(empty)", language=None)
            except Exception as exc:
                st.caption(f"No log: {exc}")

"""Classroom mode (who may stop, resume or delete whose run; a fair share of the queue),
the audience of a watched run (only this server's sessions, only while they watch),
and the Runs page's table and delete confirmation at a projector's size.

Several AppTest instances are several browser sessions. A run "trains" here as a
status.json naming this test process, so no training process takes the two cores.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core import runs
from alexnet_core.runfiles import FileLock, process_start_time, read_json, update_status, write_json_atomic
from tests.browser import shown_as
from tests.fixtures import tiny_config as tiny
from tests.test_pages import no_errors, open_files, open_page, texts
from ui import choice, classroom, live
from ui.formatting import md

PASSPHRASE = "correct horse battery staple"


def sentences(at: AppTest) -> str:
    return "\n".join([c.value for c in at.caption] + [w.value for w in at.warning] + [e.value for e in at.error]
                     + [s.value for s in at.success])


def session_of(at: AppTest) -> str:
    return at.session_state["_session_id"]


def watch(run_id: str) -> AppTest:
    """A new session on the Train page, watching ``run_id``."""
    at = open_page("train")
    at.selectbox(key="run").set_value(run_id).run()
    return at


@pytest.fixture
def make_run(ui_lab):
    """make_run(state, owner=None, **config changes) -> run id: a run in the ui_lab store, "running"
    or "queued" as this test process (no training process), or in any other state; all deleted after."""
    made = []

    def make(state: str, owner: str | None = None, **changes) -> str:
        run_id = runs.create_run(tiny(**changes), owner=owner)
        alive = {"pid": os.getpid(), "proc_start": process_start_time(os.getpid())} if state in ("running", "queued") else {}
        update_status(runs.run_path(run_id), state=state, **alive)
        made.append(run_id)
        return run_id

    yield make
    for run_id in made:
        if runs.run_path(run_id).exists():
            update_status(runs.run_path(run_id), state="stopped", pid=None)
            runs.delete_run(run_id)


@pytest.fixture
def classroom_on(monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_CLASSROOM", "on")
    monkeypatch.setenv("ALEXNET_LAB_TEACHER_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("ALEXNET_LAB_QUEUE_LIMIT", raising=False)


# ---------------------------------------------------------------- the core records who launched a run


def test_a_run_records_who_launched_it_and_keeps_it_through_a_resume(lab_data_root, tmp_path):
    store = tmp_path / "runs"
    run_id = runs.create_run(tiny(batch_size=32, lr=0.002), store, owner="3f2a9c")
    assert runs.status(run_id, store)["owner"] == "3f2a9c"
    [row] = runs.list_runs(store).to_dict("records")
    assert (row["owner"], row["lr"], row["batch_size"], row["input_size"]) == ("3f2a9c", 0.002, 32, 12)
    update_status(runs.run_path(run_id, store), state="stopped")
    slot = FileLock(store / ".slot-0.lock")  # held here: the resumed process waits in the queue
    slot.acquire()
    try:
        runs.resume(run_id, store)
        assert runs.status(run_id, store)["owner"] == "3f2a9c"
        runs.stop(run_id, store)
        assert runs.wait(run_id, timeout=120, runs_dir=store)["owner"] == "3f2a9c"
    finally:
        slot.release()
    assert runs.list_runs(store)["owner"].tolist() == ["3f2a9c"]


@pytest.mark.parametrize("file, field, value", [
    ("status.json", "owner", 5),
    ("config.json", "lr", "fast"),
    ("config.json", "batch_size", "<b>64</b>"),
    ("config.json", "input_size", -3),
])
def test_an_owner_or_a_listed_setting_of_the_wrong_type_marks_the_run_damaged(lab_data_root, tmp_path, file, field, value):
    store = tmp_path / "runs"
    good = runs.create_run(tiny(), store, owner="a")
    bad = runs.create_run(tiny(seed=1), store, owner="b")
    path = runs.run_path(bad, store) / file
    write_json_atomic(path, {**read_json(path), field: value})
    states = dict(zip(*(runs.list_runs(store)[c] for c in ("id", "state"))))
    assert states[good] == "queued" and states[bad] == "damaged"
    assert field in runs.status(bad, store)["error"]


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize("address, setting, on", [
    ("localhost", None, False),
    ("127.0.0.1", None, False),
    ("::1", None, False),
    ("[::1]", "", False),
    ("0.0.0.0", None, True),
    ("192.168.1.20", None, True),
    ("", None, True),  # no address: Streamlit listens on every network
    (None, None, True),
    ("0.0.0.0", "off", False),
    ("localhost", "on", True),
    ("localhost", " ON ", True),
    ("0.0.0.0", "maybe", True),  # not a switch: the address decides
])
def test_classroom_mode_is_on_for_a_network_address_and_off_on_localhost(address, setting, on):
    assert classroom.classroom_mode(address, setting) is on


@pytest.mark.parametrize("value, limit", [(None, 2), ("3", 3), ("0", 1), ("many", 2)])
def test_each_person_may_queue_two_runs_unless_the_server_says_otherwise(monkeypatch, value, limit):
    if value is None:
        monkeypatch.delenv("ALEXNET_LAB_QUEUE_LIMIT", raising=False)
    else:
        monkeypatch.setenv("ALEXNET_LAB_QUEUE_LIMIT", value)
    assert classroom.queue_limit() == limit


def test_the_owner_id_is_opaque_and_one_per_session():
    a, b = classroom.owner_of("session-a"), classroom.owner_of("session-b")
    assert a != b and a == classroom.owner_of("session-a")
    assert "session" not in a and len(a) == 16


# ---------------------------------------------------------------- pages


def test_with_classroom_mode_off_anyone_manages_any_run(ui_lab, make_run, monkeypatch):
    monkeypatch.delenv("ALEXNET_LAB_CLASSROOM", raising=False)  # AppTest's server listens on localhost
    run_id = make_run("running", owner=classroom.owner_of("someone else"))
    at = watch(run_id)
    no_errors(at)
    assert at.button(key=f"stop:{run_id}")
    assert "Only whoever launched" not in sentences(at)
    runs_page = open_page("runs")
    assert not runs_page.sidebar.text_input, "no teacher sign-in outside classroom mode"


def test_only_whoever_launched_a_run_or_the_teacher_may_stop_resume_or_delete_it(ui_lab, make_run, classroom_on):
    owner = open_page("train")
    theirs = classroom.owner_of(session_of(owner))
    running = make_run("running", owner=theirs)
    stopped = make_run("stopped", owner=theirs, seed=2)

    owner.run()  # the page that had no run to watch now has two
    owner.selectbox(key="run").set_value(running).run()
    no_errors(owner)
    assert owner.button(key=f"stop:{running}")

    student = watch(running)
    no_errors(student)
    assert f"{md(shown_as(running))} is **running**" in texts(student)  # the run and its charts, for everyone
    assert len(student.get("plotly_chart")) == 2
    assert not [b for b in student.button if b.key == f"stop:{running}"]
    assert "Only whoever launched this run, or the teacher, can stop it." in sentences(student)
    student.selectbox(key="run").set_value(stopped).run()
    assert not [b for b in student.button if b.key == f"resume:{stopped}"]
    assert "Only whoever launched this run, or the teacher, can resume it." in sentences(student)

    student.switch_page(choice.RUNS).run()
    open_files(student)
    student.selectbox(key="files_run").set_value(stopped).run()
    assert not [b for b in student.button if b.key == "ask_delete"]
    assert "Only whoever launched this run, or the teacher, can delete it." in sentences(student)

    # the teacher signs in with the server's passphrase, on the Runs page's sidebar
    student.sidebar.text_input(key="teacher_passphrase").input("correct horse").run()
    assert "That passphrase is wrong." in sentences(student)
    assert not [b for b in student.button if b.key == "ask_delete"]
    student.sidebar.text_input(key="teacher_passphrase").input(PASSPHRASE).run()
    no_errors(student)
    assert "Signed in as teacher" in sentences(student)
    assert not student.sidebar.text_input, "signed in: the box is gone, and the passphrase with it"
    assert PASSPHRASE not in repr(student.session_state.to_dict())
    student.button(key="ask_delete").click().run()
    student.button(key="yes_delete").click().run()
    no_errors(student)
    assert not runs.run_path(stopped).exists()
    student.switch_page(choice.TRAIN).run()
    student.selectbox(key="run").set_value(running).run()
    assert student.button(key=f"stop:{running}"), "the teacher manages every run"

    student.switch_page(choice.RUNS).run()
    student.sidebar.button(key="teacher_sign_out").click().run()
    assert student.sidebar.text_input(key="teacher_passphrase")


def test_no_passphrase_no_teacher(ui_lab, classroom_on, monkeypatch):
    monkeypatch.delenv("ALEXNET_LAB_TEACHER_PASSPHRASE")
    at = open_page("runs")
    no_errors(at)
    assert not at.sidebar.text_input
    assert "No teacher passphrase was set" in sentences(at)


def test_one_person_cannot_queue_more_than_their_share_of_the_slot(ui_lab, make_run, classroom_on, monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_QUEUE_LIMIT", "1")
    store = Path(os.environ["ALEXNET_LAB_RUNS"])
    store.mkdir(parents=True, exist_ok=True)
    slot = FileLock(store / ".slot-0.lock")  # held here: the launched run waits its turn, without torch
    slot.acquire()
    student = open_page("train")
    run_id = None
    try:
        before = set(runs.list_runs()["id"])
        student.button(key="launch").click().run()
        no_errors(student)
        [run_id] = set(runs.list_runs()["id"]) - before
        assert runs.status(run_id)["owner"] == classroom.owner_of(session_of(student))
        assert student.button(key="launch").disabled
        refusal = [w.value for w in student.warning if "as many as one person may have" in w.value]
        assert refusal and refusal[0].startswith("You have 1 run queued or training"), sentences(student)

        other = open_page("train")
        assert not other.button(key="launch").disabled, "another person's share is their own"
        # a page drawn before this person's share was used: the launch itself refuses
        make_run("queued", owner=classroom.owner_of(session_of(other)))
        listed = set(runs.list_runs()["id"])
        other.button(key="launch").click().run()
        assert set(runs.list_runs()["id"]) == listed
        assert any("could not be started" in e.value and "as many as one person" in e.value for e in other.error)

        student.button(key=f"cancel:{run_id}").click().run()
        assert runs.status(run_id)["state"] == "stopped"
        assert not student.button(key="launch").disabled
    finally:
        slot.release()
        if run_id:
            runs.stop(run_id)
            runs.wait(run_id, timeout=120)
            runs.delete_run(run_id)


# ---------------------------------------------------------------- the audience of a watched run


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watching(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if "pages are watching" in c.value]


def test_the_viewer_count_is_the_tabs_open_now(ui_lab, make_run):
    """'4 pages are watching' with two tabs open: a reloaded tab is a new session, and
    the old one counted for 90 s. A session that stopped refreshing leaves within a few
    of its refreshes, and one that picks another run leaves the first run's audience."""
    run_id = make_run("running")
    other = make_run("stopped", seed=3)
    audience = live.run_metrics(run_id).audience
    clock = audience.clock = Clock()
    first_tab = [watch(run_id) for _ in range(3)]  # opened, then reloaded twice
    second_tab = watch(run_id)
    assert audience.count() == 4 and watching(second_tab) and watching(second_tab)[0].startswith(":material/groups: 4 pages")

    # the sessions reloaded away missed their refreshes (at the pace of three viewers, when last seen)
    clock.now += live.MISSED_REFRESHES * live.status_every_s(3) + live.LATE_S + 1
    first_tab[-1].run()  # the two open tabs refresh
    second_tab.run()
    no_errors(second_tab)
    assert audience.count() == 2
    assert not watching(second_tab)

    second_tab.selectbox(key="run").set_value(other).run()
    assert audience.count() == 1


def test_only_sessions_of_this_server_count_as_viewers(ui_lab, make_run):
    """2,000 forged viewer ids made every page 16x slower: the count comes only from
    the ids sessions keep in st.session_state, which nothing sent by a browser sets."""
    run_id = make_run("running")
    audience = live.run_metrics(run_id).audience
    at = watch(run_id)
    own = session_of(at)
    for i in range(12):
        for name in ("viewer", "session", "session_id", "_session_id", "sid"):
            at.query_params[name] = f"forged-{i}"
        at.run()
        no_errors(at)
    assert session_of(at) == own
    assert audience.count() == 1
    watch(run_id)
    assert audience.count() == 2


# ---------------------------------------------------------------- the Runs page


def test_the_runs_table_shows_the_size_batch_and_learning_rate(ui_lab, make_run):
    run_id = make_run("stopped", batch_size=48, lr=0.0025, input_size=16, seed=4)
    at = open_page("runs")
    no_errors(at)
    table = at.html[0].value
    assert '<th class="num">size</th><th class="num">batch</th><th class="num">lr</th>' in table
    [row] = [r for r in table.split("</tr>") if f"<td>{run_id}</td>" in r]
    assert '<td class="num">16</td><td class="num">48</td><td class="num">0.0025</td>' in row, row


# ---------------------------------------------------------------- at a projector's 1280x800, in Chromium

# Elements whose text is cut (an ellipsis, or hidden overflow) inside the given element.
CUT = """(el) => [el, ...el.querySelectorAll('*')]
    .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
    .map(e => e.textContent)"""


@pytest.mark.e2e
def test_the_runs_table_and_the_delete_confirmation_fit_a_projector(tmp_path):
    """'Yes, delete it' read 'Yes, delet...' at 1280x800; with the size, batch and learning
    rate added, every column up to the duration is still in sight without scrolling."""
    from tests.browser import CHROMIUM, Server, lab_env, launch_chromium, no_exception, projector_page, settle

    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    store = tmp_path / "runs"
    for seed in range(3):
        run_id = runs.create_run(tiny(seed=seed, variant="paper", input_size=227, lr=0.0125), store)
        update_status(runs.run_path(run_id, store), state="stopped", epoch=1, best_val_acc=0.9731, test_acc=0.9688,
                      active_s=3725.0)
    expect = playwright_api.expect
    with Server(lab_env(tmp_path), tmp_path / "server.log") as srv, playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            with projector_page(browser) as pg:
                pg.goto(f"{srv.url}/runs")
                settle(pg)
                table = pg.locator(".lab-table-box")
                expect(table).to_contain_text("0.0125")
                right = table.evaluate("(box) => box.getBoundingClientRect().right")
                for header in ("run", "size", "batch", "lr", "best val.", "test", "duration"):
                    cell = pg.locator(".lab-table th").filter(has_text=re.compile(f"^{re.escape(header)}$"))
                    assert cell.evaluate("(th) => th.getBoundingClientRect().right") <= right, f"{header} is cut off"
                pg.get_by_text("Download or delete a run").click()
                pg.get_by_role("button", name="Delete this run…").click()
                yes = pg.get_by_role("button", name="Yes, delete it")
                expect(yes).to_be_visible()
                assert yes.evaluate(CUT) == [], "the confirmation's label is cut"
                no_exception(pg)
        finally:
            browser.close()

"""Classroom mode: who may stop, resume or delete a run, and each person's share of the queue.

With thirty students on one server and one training slot, a browser session
owns the runs it launched: only it may cancel, stop, resume or delete them. A
teacher, signed in with the passphrase chosen by whoever started the server
(Streamlit secrets' ``teacher_passphrase``, else ``ALEXNET_LAB_TEACHER_PASSPHRASE``),
may manage every run. Each person may have at most ``queue_limit()`` runs
queued or training (``ALEXNET_LAB_QUEUE_LIMIT``, default 2); the teacher has no limit.

It is on when the server listens on a network address and off on this computer's
own (``localhost``); ``ALEXNET_LAB_CLASSROOM=on|off`` decides otherwise. Off,
anyone may do anything, as on a laptop of one's own. A person is a browser
session: a reloaded tab is a new one (the teacher can still manage the runs of the old).
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd
import streamlit as st

from alexnet_core import runs
from alexnet_core.runfiles import ACTIVE_STATES
from ui.choice import session_id

LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
DEFAULT_QUEUE_LIMIT = 2
SWITCH_ENV = "ALEXNET_LAB_CLASSROOM"
PASSPHRASE_ENV = "ALEXNET_LAB_TEACHER_PASSPHRASE"
LIMIT_ENV = "ALEXNET_LAB_QUEUE_LIMIT"
_SIGNED_IN = "_teacher"  # session_state: a digest of the passphrase this session signed in with


def classroom_mode(address: str | None, setting: str | None) -> bool:
    """Whether classroom mode is on for a server listening on ``address`` with
    ``ALEXNET_LAB_CLASSROOM`` set to ``setting``: ``on`` or ``off`` decides; otherwise it
    is on unless the address is this computer's own (an empty one listens on every network)."""
    setting = (setting or "").strip().lower()
    if setting in ("on", "off"):
        return setting == "on"
    return (address or "").strip().strip("[]").lower() not in LOCAL_ADDRESSES


def enabled() -> bool:
    """Whether this server runs in classroom mode (``classroom_mode`` of its address)."""
    return classroom_mode(st.get_option("server.address"), os.environ.get(SWITCH_ENV))


def queue_limit() -> int:
    """How many runs one person may have queued or training at once: ``ALEXNET_LAB_QUEUE_LIMIT``, default 2."""
    try:
        return max(1, int(os.environ.get(LIMIT_ENV, DEFAULT_QUEUE_LIMIT)))
    except ValueError:
        return DEFAULT_QUEUE_LIMIT


def owner_of(session: str) -> str:
    """The owner id recorded with the runs ``session`` launches: opaque, so the session's
    own id never leaves the server's memory."""
    return hashlib.sha256(f"alexnet-lab owner {session}".encode()).hexdigest()[:16]


def owner_id() -> str:
    """This browser session's owner id."""
    return owner_of(session_id())


def _passphrase() -> str | None:
    """The teacher's passphrase as the server was started with it; None when none was set."""
    value = None
    if st.secrets.load_if_toml_exists() and "teacher_passphrase" in st.secrets:
        value = st.secrets["teacher_passphrase"]
    if value is None:
        value = os.environ.get(PASSPHRASE_ENV)
    return str(value) if value not in (None, "") else None


def _digest(passphrase: str) -> str:
    return hashlib.sha256(passphrase.encode()).hexdigest()


def is_teacher() -> bool:
    """Whether this session signed in with the passphrase the server has now."""
    passphrase, signed = _passphrase(), st.session_state.get(_SIGNED_IN)
    return passphrase is not None and isinstance(signed, str) and hmac.compare_digest(signed, _digest(passphrase))


def may_manage(owner) -> bool:
    """Whether this session may cancel, stop, resume or delete a run launched by ``owner``
    (a run's recorded owner id; None for one launched from the CLI or before owners were kept)."""
    if not enabled() or is_teacher():
        return True
    return isinstance(owner, str) and hmac.compare_digest(owner, owner_id())


def not_yours(action: str) -> str:
    """The sentence shown instead of a button this session may not use."""
    return f"Only whoever launched this run, or the teacher, can {action} it."


def launch_refusal(frame: pd.DataFrame | None = None) -> str | None:
    """Why this session may not launch another run now (it has its share of the queue),
    or None. ``frame``: ``runs.list_runs()`` if already read."""
    if not enabled() or is_teacher():
        return None
    try:
        frame = runs.list_runs() if frame is None else frame
    except Exception:  # an unreadable store: the launch itself says why it fails
        return None
    if "owner" not in frame:
        return None
    mine = int(((frame["owner"] == owner_id()) & frame["state"].isin(ACTIVE_STATES)).sum())
    limit = queue_limit()
    if mine < limit:
        return None
    return (f"You have {mine} run{'s' if mine != 1 else ''} queued or training, as many as one person may have "
            f"at once here, so that the class shares the training slot fairly. Launch another when one ends, "
            "or cancel one.")


def _sign_in() -> None:
    typed = st.session_state.get("teacher_passphrase") or ""
    st.session_state["teacher_passphrase"] = ""  # not kept in the session once checked
    passphrase = _passphrase()
    if passphrase is not None and hmac.compare_digest(typed.encode(), passphrase.encode()):
        st.session_state[_SIGNED_IN] = _digest(passphrase)
    elif typed:
        st.session_state["_teacher_wrong"] = True


def _sign_out() -> None:
    st.session_state.pop(_SIGNED_IN, None)


def teacher_ui() -> None:
    """In classroom mode: the rules in one line, and the teacher's sign-in or who is signed in."""
    if not enabled():
        return
    st.caption(f":material/school: Classroom mode: you manage the runs you launch, up to {queue_limit()} "
               "queued or training at once; the teacher manages every run.")
    if is_teacher():
        st.success("Signed in as teacher: you can stop, resume and delete every run.", icon=":material/school:")
        st.button("Sign out", key="teacher_sign_out", on_click=_sign_out)
    elif _passphrase() is None:
        st.caption("No teacher passphrase was set when this server started, so nobody can sign in as teacher.")
    else:
        st.text_input("Teacher: passphrase", type="password", key="teacher_passphrase", on_change=_sign_in,
                      help="The passphrase chosen by whoever started this server. Press Enter to sign in.")
        if st.session_state.pop("_teacher_wrong", False):
            st.error("That passphrase is wrong.", icon=":material/lock:")

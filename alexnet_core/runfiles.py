"""Run-folder primitives, torch-free: atomic JSON, locks, status, process checks.

Both sides of a run folder use these: the training loop that writes it and the
run store (``runs``) that launches, queues and reads it. Nothing here imports
torch, so a queued worker waits for its slot with this module alone.

Public API::

    STATES, ACTIVE_STATES               a run's states; the two a live process holds
    write_json_atomic(path, obj);  read_json(path, default=None)
    FileLock(path)                      an exclusive lock the kernel drops when the process dies
    update_status(run_dir, *, only_if_state=None, **fields) -> dict | None
    check_status(recorded) -> (fields that are valid, problems)
    read_run_files(run_dir) -> (config dict or None, status dict)   validated; "damaged" with a reason
    process_start_time(pid);  pid_alive(pid, start_time=None)
    disk_full_reason(exc, folder) -> str | None;  remove_stale_temps(run_dir) -> [names]
    torch_load_reason(exc) -> str       why torch.load failed, without PyTorch's advice to load unsafely
    jsonable(value);  stop_signals(flag)
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

# "damaged" is never written: a run whose files cannot be trusted reads so (``read_run_files``).
STATES = ("queued", "running", "finished", "failed", "stopped", "interrupted", "damaged")
ACTIVE_STATES = ("queued", "running")
LAUNCH_GRACE_S = 30.0  # a queued run with no pid yet is being started, not dead
STALE_TEMP_S = 3600.0  # a temp file this old is a leftover even if its pid is alive again (recycled)


# --------------------------------------------------------------------------- #
# Atomic JSON, locks, status, process checks


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temp file beside ``path`` and rename it over ``path``.

    If the folder refuses a new file (read-only) but ``path`` itself is
    writable, fall back to rewriting it in place so a final state still lands.
    """
    path = Path(path)
    text = json.dumps(jsonable(obj), indent=1)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not path.exists():
            raise
        with open(path, "r+", encoding="utf-8") as f:
            f.write(text)
            f.truncate()


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """Read a JSON file; ``default`` when it is missing or (mid-rewrite) unreadable."""
    for attempt in range(3):
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return default
        except (OSError, ValueError):
            time.sleep(0.02 * (attempt + 1))
    return default


class FileLock:
    """An exclusive advisory lock on a file (fcntl on POSIX, msvcrt on Windows).

    The kernel drops it when the process dies, even by ``kill -9``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _lock_fd(fd, blocking):
                self._fd = fd
                return True
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                _unlock_fd(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


try:
    import fcntl

    def _lock_fd(fd: int, blocking: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # Windows
    import msvcrt

    def _lock_fd(fd: int, blocking: bool) -> bool:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not blocking:
                    return False
                time.sleep(0.05)

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def update_status(run_dir: str | os.PathLike, *, only_if_state: tuple[str, ...] | None = None, **fields) -> dict | None:
    """Read-modify-write ``status.json`` under the run's lock; returns the new status.

    With ``only_if_state`` the update happens only when the current state is
    one of those (else None is returned and nothing changes), so a cancel and
    a start cannot both win.
    """
    run_dir = Path(run_dir)
    with FileLock(run_dir / ".status.lock"):
        current = read_json(run_dir / "status.json", default={}) or {}
        if only_if_state is not None and current.get("state") not in only_if_state:
            return None
        current.update(fields)
        current["updated"] = time.time()
        write_json_atomic(run_dir / "status.json", current)
        return current


def process_start_time(pid: int) -> float | None:
    """The kernel's start time of ``pid`` (clock ticks since boot on Linux); None when unknown.

    Recorded with the pid so a recycled pid is not mistaken for the run.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return float(fields[19])  # field 22 overall: starttime
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int | None, start_time: float | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``start_time``."""
    if not pid:
        return False
    if sys.platform == "win32":
        return _pid_alive_windows(int(pid))
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (macOS): os.kill said it exists
    state = stat[stat.rfind(")") + 2 :].split()[:1]
    if state in (["Z"], ["X"]):
        return False
    if start_time is not None:
        now_start = process_start_time(int(pid))
        if now_start is not None and now_start != start_time:
            return False
    return True


def _pid_alive_windows(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    code = ctypes.c_ulong()
    try:
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# --------------------------------------------------------------------------- #
# Reading a run folder that may have been hand-edited or half-deleted

_WRITTEN_STATES = tuple(state for state in STATES if state != "damaged")
_MAX_PID = 2**31 - 1
_MAX_TIME = 1e11  # unix seconds, year 5138: datetime can still show it
_MAX_COUNT = 2**53


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _real(value, low: float, high: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


# status.json field -> (is it valid, what belongs there); null is valid for every field but state.
_STATUS_FIELDS = {
    "state": (lambda v: v in _WRITTEN_STATES, f"one of {', '.join(_WRITTEN_STATES)}"),
    "pid": (lambda v: _whole(v, 1, _MAX_PID), "a process id (a whole number from 1)"),
    "proc_start": (lambda v: _real(v, 0, math.inf), "a process start time (a number)"),
    **{name: (lambda v: _real(v, 0, _MAX_TIME), "a time (seconds since 1970)")
       for name in ("created", "queued_at", "started", "updated", "finished", "session_started")},
    **{name: (lambda v: _whole(v, 0, _MAX_COUNT), "a whole number of 0 or more")
       for name in ("epoch", "epochs", "step", "steps_per_epoch", "batch", "best_epoch", "resumes", "slot",
                    "n_train", "n_val", "n_test", "number")},
    **{name: (lambda v: _real(v, 0, math.inf), "a number of 0 or more")
       for name in ("active_s", "eta_seconds", "images_per_s")},
    **{name: (lambda v: _real(v, 0, 1), "an accuracy between 0 and 1")
       for name in ("best_val_acc", "test_acc", "last_test_acc")},
    **{name: (lambda v: isinstance(v, str), "text") for name in ("error", "device", "owner")},
}
# config.json fields the run table shows
_CONFIG_FIELDS = {
    "variant": (lambda v: isinstance(v, str), "a variant name"),
    "dataset": (lambda v: isinstance(v, str), "a dataset name"),
    "recipe": (lambda v: v is None or isinstance(v, str), "a recipe name"),
    "epochs": (lambda v: _whole(v, 1, _MAX_COUNT), "a whole number of 1 or more"),
    "lr": (lambda v: _real(v, 0, math.inf) and v > 0, "a learning rate above 0"),
    "batch_size": (lambda v: _whole(v, 1, _MAX_COUNT), "a whole number of 1 or more"),
    "input_size": (lambda v: _whole(v, 1, _MAX_COUNT), "a size in pixels"),
}


def _check(file: str, values: dict, fields: dict, required: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """``values`` without the checked fields that are wrong, and a phrase for each of those."""
    valid, problems = dict(values), []
    for name, (is_valid, wanted) in fields.items():
        value = values.get(name)
        if (value is not None or name in required) and not is_valid(value):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            problems.append(f"{file} has {name} = {shown} where {wanted} belongs")
            valid.pop(name, None)
    return valid, problems


def check_status(recorded) -> tuple[dict, list[str]]:
    """The fields of a status.json whose type and range the app can use, and a phrase
    for each that it cannot. Fields the app does not read pass through unchecked."""
    if not isinstance(recorded, dict):
        return {}, []  # empty or mid-rewrite: read as a run that was never started
    return _check("status.json", recorded, _STATUS_FIELDS, ("state",) if "state" in recorded else ())


_start_times_known: bool | None = None


def _process_gone(status: dict) -> str | None:
    """Why the process an active status names is not this run's (None: it is alive)."""
    global _start_times_known
    pid = status.get("pid")
    if not pid:
        since = status.get("queued_at") or status.get("created") or 0
        return None if time.time() - since < LAUNCH_GRACE_S else ""
    if _start_times_known is None:
        _start_times_known = process_start_time(os.getpid()) is not None
    if status.get("proc_start") is None and _start_times_known:
        # Every writer records the start time with the pid here: a live process with that
        # pid may be any program, and trusting it would keep the run running forever.
        return (f"Its status.json names process {pid} without that process's start time, so the process now "
                "using that id may be another program: the run is treated as ended, and resume continues "
                "from the last checkpoint.")
    return None if pid_alive(pid, status.get("proc_start")) else ""


def read_run_files(run_dir: str | os.PathLike) -> tuple[dict | None, dict]:
    """(config.json as a dict, or None when it is unreadable; the status) of a run folder.

    The status has ``state`` (one of ``STATES``), pid, epoch, epochs, step,
    steps_per_epoch, created, started, updated, finished (unix times), error,
    eta_seconds and whatever else the trainer recorded, each of a type and range
    the app can use. A run recorded as queued or running whose process is gone
    (or is a zombie, or whose pid now belongs to another process) reads
    ``interrupted``. A run whose config.json is missing or unreadable, or whose
    files hold a field of the wrong type or range, reads ``damaged``, with
    ``error`` saying why in a sentence: it can be deleted, not resumed. Of
    both files, only the fields that passed their check are returned.
    """
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json", default=None)
    recorded, problems = check_status(read_json(run_dir / "status.json", default=None))
    if not (run_dir / "config.json").exists():
        problems.insert(0, "its config.json is missing (a delete that was cut short, or a folder that is not a run)")
    elif not isinstance(config, dict):
        config = None
        problems.insert(0, "its config.json cannot be read as a training config")
    else:
        config, wrong = _check("config.json", config, _CONFIG_FIELDS, ("variant", "dataset", "epochs"))
        problems[:0] = wrong
    status = {
        "state": "queued", "pid": None, "epoch": 0, "epochs": None, "step": 0, "steps_per_epoch": None, "created": None,
        "started": None, "updated": None, "finished": None, "error": None, "eta_seconds": None, **recorded,
    }
    status["id"] = run_dir.name
    if problems:
        status.update(recorded_state=status["state"], state="damaged", eta_seconds=None,
                      error=f"This run is damaged: {'; '.join(problems)}. It cannot be resumed; delete it.")
        return config, status
    if status["state"] in ACTIVE_STATES and (gone := _process_gone(status)) is not None:
        status.update(recorded_state=status["state"], state="interrupted", eta_seconds=None)
        status["error"] = gone or status.get("error") or (
            "The training process ended without finishing (killed, crashed, or the machine restarted); "
            "resume continues from the last checkpoint.")
    elif status["state"] == "running" and status.get("eta_seconds") is not None and status.get("updated"):
        status["eta_seconds"] = max(0.0, status["eta_seconds"] - (time.time() - status["updated"]))
    return config, status


# --------------------------------------------------------------------------- #
# Errors as sentences, and what a write that never finished leaves behind


def disk_full_reason(exc: BaseException, folder: str | os.PathLike) -> str | None:
    """A phrase, "the disk is full (N MB free in <folder>)", when ``exc`` or an error it came
    from is a full disk or quota (PyTorch's zip writer turns a failed write into "unexpected
    pos", with the OSError as its context); None for any other error."""
    for _ in range(8):  # the error and those it came from
        if exc is None:
            return None
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            break
        exc = exc.__cause__ or exc.__context__
    else:
        return None
    try:
        free = shutil.disk_usage(folder).free // 1_000_000
    except OSError:
        free = 0
    return f"the disk is full ({free} MB free in {folder})"


def torch_load_reason(exc: BaseException) -> str:
    """One line on why ``torch.load(..., weights_only=True)`` failed, for a message
    (a checkpoint's, a dataset cache's).

    PyTorch's own text for a file holding anything besides tensors and plain
    values advises loading it with ``weights_only=False``, which would run
    whatever code the file holds: that advice is dropped, its detail kept.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = next((line for line in lines[1:] if "weights_only" not in line and "pytorch.org" not in line), "")
        return "it holds Python objects besides weights, which are never unpickled here" + (f": {detail}" if detail else "")
    return next((line for line in lines if "weights_only" not in line), type(exc).__name__)


_TEMP_NAME = re.compile(r"\..+?\.(\d+)(?:\.\d+)?\.tmp")  # .last.pt.<pid>.tmp, .status.json.<pid>.<thread>.tmp


def remove_stale_temps(run_dir: str | os.PathLike) -> list[str]:
    """Remove the temp files of writes that never finished (their process was killed):
    those of a dead pid, or older than ``STALE_TEMP_S``. Returns their names."""
    removed = []
    for path in Path(run_dir).iterdir():
        match = _TEMP_NAME.fullmatch(path.name)
        pid = int(match.group(1)) if match else os.getpid()
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if not (pid <= _MAX_PID and pid_alive(pid)) or time.time() - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink()
                removed.append(path.name)
    return removed


def jsonable(value):
    """Non-finite floats become None (JSON has no NaN); numpy and tuples become plain JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy scalars, without importing numpy
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


@contextlib.contextmanager
def stop_signals(flag: threading.Event):
    """SIGTERM and a first Ctrl-C become a stop request (honoured between steps)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if flag.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C means now
        flag.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, old)

"""CPU accounting from Linux /proc: who used the cores while the benchmark measured.

``OtherLoad`` tells the benchmark's own work (this process and everything it
started: training processes, the Streamlit server, Chromium) apart from the
rest of the machine, so a row is marked busy only when something else ran.
``adopt_orphans`` keeps processes whose parent exits before them in that tree.
Elsewhere (no /proc) every reading is None and nothing is marked.
"""

from __future__ import annotations

import contextlib
import os
import time

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name may hold spaces and parentheses: split after the last ')'
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """utime + stime of a process (+ its reaped children's with ``children``), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        ticks = int(fields[11]) + int(fields[12])
        if children:
            ticks += int(fields[13]) + int(fields[14])
    except (IndexError, ValueError):
        return None
    return ticks / _HZ


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                fields = _stat_fields(int(entry))
                with contextlib.suppress(TypeError, IndexError, ValueError):
                    children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds of ``pid`` (default: this process), its live descendants and every child they reaped."""
    pid = pid or os.getpid()
    return sum(cpu_seconds(p, children=True) or 0.0 for p in [pid, *descendants(pid)])


def machine_cpu_seconds() -> float | None:
    """Non-idle CPU seconds of the whole machine since boot (all cores)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _HZ


def wait_quiet(max_cores: float = 0.3, window_s: float = 0.25, timeout_s: float = 10.0) -> float:
    """Wait until the whole machine used under ``max_cores`` over one ``window_s``
    (or ``timeout_s`` passed); returns the cores of the last window (0.0 without /proc)."""
    deadline = time.monotonic() + timeout_s
    while True:
        before, start = machine_cpu_seconds(), time.monotonic()
        time.sleep(window_s)
        after = machine_cpu_seconds()
        if before is None or after is None:
            return 0.0
        cores = (after - before) / (time.monotonic() - start)
        if cores < max_cores or time.monotonic() > deadline:
            return cores


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux's child
    subreaper), so that they stay in its tree: Chromium's helper processes outlive
    the browser's main process when it closes, and re-parented to init they took
    their CPU seconds out of the tree, which then read as other work. They stay
    zombies until this process exits; a zombie's CPU seconds still count. False
    where the call is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


class OtherLoad:
    """Average cores used by processes outside the benchmark's tree since the last ``mark()``."""

    def __init__(self):
        self.mark()

    def mark(self) -> None:
        self._t = time.monotonic()
        self._machine = machine_cpu_seconds()
        self._ours = tree_cpu_seconds()

    def cores(self) -> float | None:
        machine = machine_cpu_seconds()
        elapsed = time.monotonic() - self._t
        if machine is None or self._machine is None or elapsed <= 0:
            return None
        others = (machine - self._machine) - (tree_cpu_seconds() - self._ours)
        return max(others, 0.0) / elapsed

"""Where runs train: the queue's slots, the GPU each slot stands for, and torchrun.

Torch-free: a queued run waits for its turn with this module alone, and sets
``CUDA_VISIBLE_DEVICES`` before PyTorch (and so CUDA) is loaded.

A runs folder has slots, ``.slot-K.lock`` files held with ``flock`` by the
process training in them, so the kernel frees a slot even after ``kill -9``.
On the CPU there are ``ALEXNET_LAB_MAX_RUNS`` slots (default 1). On a machine
with N GPUs slot K is GPU K: up to N runs train at once, each seeing its own
GPU alone, and ``ALEXNET_LAB_MAX_RUNS`` caps how many. A run for ``cuda:K``
waits for GPU K; a run of P processes (``nproc_per_node``) takes P GPUs (one
slot on the CPU). Queued runs start first launched, first served.

    max_concurrent_runs() -> int
    take_slots(run_dir, progress=None) -> Placement | None   (None: cancelled while queued)
    Placement.gpu_for_this_process() -> int | None;  .release()
    run_ranks(run_dir, placement, *, processes, resume) -> exit code   (a run under torchrun)
    torchrun_command(worker_args, *, processes, machines=1, endpoint=None, rdzv_id=None) -> argv
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_core.device import gpu_ids
from alexnet_core.runfiles import FileLock, read_json, read_run_files, stop_signals, update_status

QUEUE_POLL_S = 0.5
REPO_ROOT = Path(__file__).resolve().parent.parent


def _max_runs_setting() -> int | None:
    try:
        return max(1, int(os.environ["ALEXNET_LAB_MAX_RUNS"]))
    except (KeyError, ValueError):
        return None


def _slots_and_cap(gpus: list[str]) -> tuple[int, int]:
    """(slot files, how many may be held at once) in a runs folder on this machine."""
    setting = _max_runs_setting()
    if gpus:
        return len(gpus), min(len(gpus), setting or len(gpus))
    return setting or 1, setting or 1


def max_concurrent_runs() -> int:
    """How many runs may train at once: one per GPU (capped by ``ALEXNET_LAB_MAX_RUNS``), or on
    the CPU ``ALEXNET_LAB_MAX_RUNS``, default 1."""
    return _slots_and_cap(gpu_ids())[1]


@dataclass
class Placement:
    """The slots a run holds, and the GPUs they stand for ([] on the CPU)."""

    locks: list[FileLock]
    slots: list[int]
    gpus: list[str] = field(default_factory=list)  # as CUDA_VISIBLE_DEVICES names them

    def release(self) -> None:
        for lock in self.locks:
            lock.release()

    def gpu_for_this_process(self) -> int | None:
        """The CUDA index a run trained in this process uses (None: no GPU placement).

        Before PyTorch is loaded, the process is narrowed to its GPU (index 0 then);
        a foreground CLI run has loaded it already and takes its GPU by index."""
        if not self.gpus:
            return None
        if "torch" not in sys.modules:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
            return 0
        return self.slots[0]


def _wants(config: dict, gpus: list[str]) -> tuple[int, int | None, bool]:
    """(slots, the one slot it must have or None, whether it trains on its slots' GPUs)
    for a run's config.json."""
    device = config.get("device") if isinstance(config.get("device"), str) else "auto"
    processes = config.get("nproc_per_node") if isinstance(config.get("nproc_per_node"), int) else 1
    if not gpus or not (device == "auto" or device.startswith("cuda")):
        return 1, None, False  # the CPU (or an Apple GPU): one slot, however many processes
    index = device.partition(":")[2]
    if index.isdigit():
        if int(index) >= len(gpus):
            return 1, None, False  # a GPU this machine lacks: the run says so itself
        return 1, int(index), True
    return max(1, processes), None, True


def _queue_ahead(run_dir: Path) -> int:
    """How many live queued runs in the same runs folder come before this one."""
    my_key = (read_run_files(run_dir)[1].get("queued_at") or 0.0, run_dir.name)
    ahead = 0
    for other in run_dir.parent.iterdir():
        if other.name == run_dir.name or other.name.startswith(".") or not (other / "config.json").is_file():
            continue
        st = read_run_files(other)[1]  # queued and alive, or it reads otherwise
        if st["state"] == "queued" and (st.get("queued_at") or 0.0, other.name) < my_key:
            ahead += 1
    return ahead


def _try_slots(root: Path, gpus: list[str], wanted: int, pinned: int | None) -> tuple[list[int], list[FileLock]] | None:
    """The slots this run can take now (held), or None. Under the queue lock."""
    slots, cap = _slots_and_cap(gpus)
    free: dict[int, FileLock] = {}
    for k in range(slots):
        lock = FileLock(root / f".slot-{k}.lock")
        if lock.acquire(blocking=False):
            free[k] = lock
    busy = slots - len(free)
    if pinned is not None:
        chosen = [pinned] if pinned in free else []
    else:
        chosen = sorted(free)[:wanted]
    # A run wanting more GPUs than the cap allows still runs, alone.
    fits = len(chosen) == wanted and (busy + wanted <= cap or busy == 0)
    for k, lock in free.items():
        if not fits or k not in chosen:
            lock.release()
    return (chosen, [free[k] for k in chosen]) if fits else None


def take_slots(run_dir: Path, progress=None) -> Placement | None:
    """Wait in the queue until this run is first and its slots are free; None if it was
    cancelled meanwhile. Records the slot (and the GPU) in status.json."""
    root = run_dir.parent
    gpus = gpu_ids()
    config = read_json(run_dir / "config.json", default={}) or {}
    wanted, pinned, on_gpus = _wants(config if isinstance(config, dict) else {}, gpus)
    stop_flag = threading.Event()
    reported = None
    with stop_signals(stop_flag):
        while True:
            current = read_json(run_dir / "status.json", default={}) or {}
            if stop_flag.is_set() or (run_dir / "stop").exists() or current.get("state") != "queued":
                update_status(run_dir, only_if_state=("queued",), state="stopped", finished=time.time(), error=None)
                return None
            with FileLock(root / ".queue.lock"):
                ahead = _queue_ahead(run_dir)
                taken = _try_slots(root, gpus, wanted, pinned) if ahead == 0 else None
                if taken is not None:
                    slots, locks = taken
                    placement = Placement(locks, slots, [gpus[k] for k in slots] if on_gpus else [])
                    where = {"device": "cuda:" + ",".join(placement.gpus)} if placement.gpus else {}
                    if update_status(run_dir, only_if_state=("queued",), state="running", slot=slots[0], **where) is None:
                        placement.release()
                        return None
                    return placement
            if progress is not None and reported != ahead:
                reported = ahead
                progress({"type": "queued", "ahead": ahead, "limit": _slots_and_cap(gpus)[1]})
            time.sleep(QUEUE_POLL_S)


# --------------------------------------------------------------------------- #
# torchrun


def torchrun_command(worker_args: list[str], *, processes: int, machines: int = 1, endpoint: str | None = None,
                     rdzv_id: str | None = None) -> list[str]:
    """The torchrun command line (``python -m torch.distributed.run``) that starts ``processes``
    ranks of ``python -m alexnet_core train <worker_args> --torchrun`` on this machine: alone
    (``--standalone``, a free local port), or as one of ``machines`` meeting at ``endpoint``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    if machines == 1 and endpoint is None:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes", str(machines), "--rdzv-backend", "c10d", "--rdzv-endpoint", str(endpoint),
                "--rdzv-id", rdzv_id or "alexnet-lab"]
    return cmd + ["--max-restarts", "0", "-m", "alexnet_core", "train", *worker_args, "--torchrun"]


def child_env(gpus: list[str] | None = None, processes: int = 1) -> dict:
    """This process's environment for a torchrun it starts: the package importable, its GPUs,
    and the CPU cores shared between its ``processes`` (torchrun would give each one thread)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, processes))))
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


def run_ranks(run_dir: Path, placement: Placement, *, processes: int, resume: bool) -> int:
    """Train the run in ``run_dir`` as ``processes`` ranks under torchrun and wait for them,
    holding the run's slots; returns torchrun's exit code.

    Rank 0 writes the folder. A stop signal to this process becomes the run's stop
    request. If torchrun ends while the run still reads ``running`` (a rank was killed
    before rank 0 could say so), the run is marked ``interrupted``: resume continues
    from its last.pt."""
    args = ["--run-dir", str(run_dir)] + (["--resume"] if resume else [])
    signalled = threading.Event()
    with stop_signals(signalled):
        process = subprocess.Popen(torchrun_command(args, processes=processes), env=child_env(placement.gpus, processes))
        while True:
            try:
                code = process.wait(timeout=QUEUE_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if signalled.is_set():
                    (run_dir / "stop").touch()
                    signalled.clear()
    if code != 0:
        update_status(run_dir, only_if_state=("running",), state="interrupted", finished=time.time(), eta_seconds=None,
                      error=f"A training process of this run ended without finishing (torchrun exit code {code}; "
                            "log.txt says more); resume continues from the last checkpoint.")
    return code

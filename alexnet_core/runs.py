"""The run store on disk and background execution.

Layout (``DESIGN.md``)::

    runs/<run-id>/config.json     the TrainConfig
                  status.json     state, pid, progress, times, error; replaced atomically
                  metrics.jsonl   append-only events, one JSON object per line
                  last.pt, best.pt, predictions/epoch-NNN.npz, log.txt
                  stop            present = a stop request

A run trains in its own process (``python -m alexnet_core train --run-dir
DIR``), started detached, so it outlives the page or shell that launched it.
Readers only read files; a run whose files cannot be trusted (hand-edited,
half-deleted) reads ``damaged`` with the reason, and can only be deleted. At
most ``placement.max_concurrent_runs()`` runs train at once (one per GPU, or
``ALEXNET_LAB_MAX_RUNS``, default 1, on the CPU); the others wait as
``queued``, first launched first served (``placement``: slots, GPUs, torchrun).

The folder's file primitives (atomic JSON, locks, status, metrics lines, the
states) are ``runfiles``; this module works with run ids.

Public API::

    launch(config, runs_dir=None, *, owner=None) -> run_id   (owner: an opaque id of who launched it)
    stop(run_id, runs_dir=None) -> None
    resume(run_id, runs_dir=None) -> None
    delete_run(run_id, runs_dir=None) -> None     (also removes a damaged run)
    status(run_id, runs_dir=None) -> dict
    wait(run_id, timeout=None, runs_dir=None) -> dict
    list_runs(runs_dir=None) -> DataFrame
    read_config(run_id, runs_dir=None) -> TrainConfig
    read_metrics(run_id, offset=0, runs_dir=None) -> (events, new_offset)
    metrics_frames(run_id, runs_dir=None) -> (steps DataFrame, epochs DataFrame)
    prediction_epochs(run_id, runs_dir=None) -> list[int]
    read_predictions(run_id, epoch=None, runs_dir=None) -> DataFrame
    load_model(run_id, which="best", runs_dir=None) -> (model, TrainConfig)
    checkpoint_info(run_id, which="best", runs_dir=None) -> dict
    evaluate_run(run_id, which="best", runs_dir=None) -> (evaluation.EvalResult, info dict)
    log_tail(run_id, lines=50, runs_dir=None) -> str
    run_path(run_id, runs_dir=None) -> Path
    create_run(config, runs_dir=None, *, owner=None) -> run_id   (validates; the folder, without starting it)
    RunError(ValueError)                             a run operation that cannot be done, as a sentence
    run_worker(run_dir, *, resume=False, progress=None) -> dict   (the training process's body)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet_core import paths, placement, runnames
from alexnet_core.config import ConfigError, TrainConfig
from alexnet_core.runfiles import (ACTIVE_STATES, FileLock, disk_full_reason, process_start_time, read_run_files,
                                   update_status, write_json_atomic)
from alexnet_core.runlogs import (PREDICTION_COLUMNS, frames_from_events, prediction_path, read_events,
                                  read_predictions_file, saved_prediction_epochs)

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

# This module does not import torch: a queued training process waits for its
# slot with this alone (about 10 MB), and imports torch (about 650 MB) only
# once its turn comes. The torch-side modules (checkpoints, evaluation, training) are
# imported where they are needed.

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
LEFTOVER_S = 3600.0  # a .trash or .new- folder this old was left by a process that died
REPO_ROOT = Path(__file__).resolve().parent.parent

RUN_COLUMNS = [
    "id", "name", "variant", "dataset", "recipe", "state", "epoch", "epochs", "best_val_acc", "test_acc",
    "last_test_acc", "duration_s", "created", "error", "lr", "batch_size", "input_size", "owner", "device",
]


class RunError(ValueError):
    """A run operation that cannot be done (unknown or invalid id, still running, ...)."""


# --------------------------------------------------------------------------- #
# Paths and ids


def run_path(run_id: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder of ``run_id``; the id is validated first.

    Only ``[A-Za-z0-9_.-]`` characters, not starting with a dot, and the path
    must stay inside the runs root; otherwise ``RunError``.
    """
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or run_id.startswith("."):
        raise RunError(f"Invalid run id {run_id!r}: use only letters, digits, '_', '-' and '.', not starting with '.'.")
    root = paths.runs_root(runs_dir)
    path = root / run_id
    if not paths.is_within(path, root) or path.resolve() == root.resolve():
        raise RunError(f"Invalid run id {run_id!r}: it points outside the runs folder {root}.")
    return path


def _existing_run(run_id: str, runs_dir, *, damaged_too: bool = False) -> Path:
    """The folder of a run that is in the store: with a config.json, or any folder with ``damaged_too``."""
    path = run_path(run_id, runs_dir)
    if not (path.is_dir() if damaged_too else (path / "config.json").is_file()):
        raise RunError(f"No run {run_id!r} in {paths.runs_root(runs_dir)}.")
    return path


@contextlib.contextmanager
def _control(run_id: str, runs_dir):
    """Hold the run's control lock, under which every operation that changes a run
    (stop, resume, delete) checks and acts; yields the folder, still in the store."""
    run_dir = _existing_run(run_id, runs_dir, damaged_too=True)
    deleted = f"No run {run_id!r} in {paths.runs_root(runs_dir)}: it was just deleted."
    lock = FileLock(run_dir / ".control.lock")
    try:
        lock.acquire()
    except (FileNotFoundError, NotADirectoryError):
        raise RunError(deleted) from None
    try:
        if not run_dir.is_dir():  # a delete moved it out while this waited for the lock
            raise RunError(deleted)
        yield run_dir
    finally:
        lock.release()


# --------------------------------------------------------------------------- #
# Launch, stop, resume, delete


def create_run(config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, owner: str | None = None) -> str:
    """Validate ``config`` (dataset availability included) and create its run folder as ``queued``.

    Returns the new run id. Nothing is started; ``launch`` also starts it. The
    folder is written under a hidden name and renamed into place whole, so no
    reader sees it half-made. A runs folder that cannot be written (a full
    disk, read-only) raises ``RunError`` saying so. ``owner``, an opaque id of
    who launched it, is kept in status.json for the run's life (resumes included).
    """
    config.validate(check_data=True)
    root = paths.runs_root(runs_dir)
    staging = root / f".new-{secrets.token_hex(8)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        config.to_json(staging / "config.json")
        (staging / "metrics.jsonl").touch()
        while True:
            run_id = runnames.new_run_id(config.variant, config.dataset)
            now = time.time()
            write_json_atomic(staging / "status.json", {
                "id": run_id, "number": runnames.next_number(_run_dirs(root), run_id), "state": "queued",
                "pid": None, "proc_start": None, "created": now, "queued_at": now,
                "updated": now, "epoch": 0, "epochs": config.epochs, "step": 0, "error": None, "owner": owner,
            })
            try:
                os.rename(staging, root / run_id)  # atomic: two launches never share a folder
                return run_id
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        reason = disk_full_reason(exc, root if root.is_dir() else root.parent) or exc.strerror or str(exc)
        raise RunError(f"Cannot create a run in {root}: {reason}.") from None


def launch(config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, owner: str | None = None) -> str:
    """Create a run and start its training process detached; return the run id at once.

    Raises ``ConfigError`` (a sentence for the student) when the config cannot run.
    The process waits as ``queued`` while ``placement.max_concurrent_runs()`` others train.
    """
    run_id = create_run(config, runs_dir, owner=owner)
    _spawn(run_path(run_id, runs_dir), resume=False)
    return run_id


def _spawn(run_dir: Path, *, resume: bool) -> None:
    cmd = [sys.executable, "-m", "alexnet_core", "train", "--run-dir", str(run_dir)]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # PyTorch's CPU allocator then uses 2 MiB pages: faster large steps (NOTES.md).
    env.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if os.name == "nt":
        detach = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}
    else:
        detach = {"start_new_session": True}
    try:
        with open(run_dir / "log.txt", "ab") as log:
            process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=os.getcwd(), env=env, close_fds=True, **detach,
            )
    except OSError as exc:
        update_status(run_dir, state="failed", error=f"Could not start the training process: {exc}", finished=time.time())
        raise RunError(f"Could not start the training process: {exc}") from exc
    # Reaped as soon as it exits, so a finished run leaves no zombie under the server.
    threading.Thread(target=process.wait, name=f"reap {run_dir.name}", daemon=True).start()
    update_status(run_dir, pid=process.pid, proc_start=process_start_time(process.pid))


def stop(run_id: str, runs_dir: str | os.PathLike | None = None) -> None:
    """Ask a run to stop: a running one stops at its next step (writing last.pt) as ``stopped``;
    a queued one is cancelled (``stopped``) at once. Other states are left as they are."""
    with _control(run_id, runs_dir) as run_dir:
        current = _status_of(run_dir)
        if current["state"] not in ACTIVE_STATES:
            return
        (run_dir / "stop").touch()
        if current["state"] == "queued":
            update_status(run_dir, only_if_state=("queued",), state="stopped", finished=time.time(),
                          eta_seconds=None, error=None)


def resume(run_id: str, runs_dir: str | os.PathLike | None = None, *, start: bool = True) -> None:
    """Continue a stopped, interrupted or failed run from its last.pt, appending to its metrics.

    Starts a detached process like ``launch`` (queued behind other runs). A run
    with no last.pt yet starts again from the beginning. Raises ``RunError``
    for a run that is still active, already finished, damaged, or deleted meanwhile.
    ``start=False``: the checks and the queued state only, for ranks that torchrun
    starts on several machines (``ranks``).
    """
    with _control(run_id, runs_dir) as run_dir:
        current = _status_of(run_dir)
        state = current["state"]
        if state in ACTIVE_STATES:
            raise RunError(f"Run {run_id} is {state}; stop it first, or wait for it to end.")
        if state == "finished":
            raise RunError(f"Run {run_id} already finished all {current.get('epochs')} epochs; launch a new run to train more.")
        if state == "damaged":
            raise RunError(f"Run {run_id} cannot be resumed. {current['error']}")
        TrainConfig.from_json(run_dir / "config.json").validate(check_data=True)
        with contextlib.suppress(FileNotFoundError):
            (run_dir / "stop").unlink()
        now = time.time()
        update_status(run_dir, state="queued", queued_at=now, pid=None, proc_start=None, error=None,
                      finished=None, eta_seconds=None, resumes=int(current.get("resumes") or 0) + 1)
        if start:
            _spawn(run_dir, resume=True)


def delete_run(run_id: str, runs_dir: str | os.PathLike | None = None) -> None:
    """Delete a run's folder, a damaged one included; an active run must be stopped first (``RunError``).

    Under the run's control lock the folder is renamed out of the store (into
    ``<runs root>/.trash``), so a resume or stop waiting for the lock finds no
    run, never half of one; the files are removed after.
    """
    root = paths.runs_root(runs_dir)
    trash = root / ".trash"
    with _control(run_id, runs_dir) as run_dir:
        current = _status_of(run_dir)
        if current["state"] in ACTIVE_STATES:
            raise RunError(f"Run {run_id} is {current['state']}; stop it before deleting it.")
        gone = trash / f"{run_id}-{secrets.token_hex(4)}"
        try:
            trash.mkdir(exist_ok=True)
            os.rename(run_dir, gone)
        except OSError as exc:
            raise RunError(f"Run {run_id} could not be deleted: {exc.strerror or exc}.") from None
    shutil.rmtree(gone, ignore_errors=True)
    _remove_leftovers(root)


def _remove_leftovers(root: Path) -> None:
    """Folders that a process killed while deleting or creating a run left hidden in the store."""
    leftovers = list((root / ".trash").iterdir()) + list(root.glob(".new-*"))
    for path in leftovers:
        with contextlib.suppress(OSError):
            if path.parent.name == ".trash" or time.time() - path.stat().st_mtime > LEFTOVER_S:
                shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- #
# Status


def _status_of(run_dir: Path) -> dict:
    return read_run_files(run_dir)[1]


def status(run_id: str, runs_dir: str | os.PathLike | None = None) -> dict:
    """The run's status: ``state`` (one of ``STATES``), pid, epoch, epochs, step,
    steps_per_epoch, created, started, updated, finished (unix times), error,
    eta_seconds, best_val_acc, test_acc, ...

    A run recorded as running or queued whose process is gone (or is a
    zombie, or whose pid now belongs to another process) reads ``interrupted``;
    one whose files cannot be trusted reads ``damaged``, ``error`` saying why
    (``runfiles.read_run_files``).
    """
    return _status_of(_existing_run(run_id, runs_dir, damaged_too=True))


def wait(run_id: str, timeout: float | None = None, runs_dir: str | os.PathLike | None = None, poll: float = 0.2) -> dict:
    """Poll until the run is no longer queued or running; return its status (TimeoutError after ``timeout`` s)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        current = status(run_id, runs_dir)
        if current["state"] not in ACTIVE_STATES:
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Run {run_id} is still {current['state']} after {timeout} s.")
        time.sleep(poll)


def _run_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and RUN_ID_PATTERN.fullmatch(p.name)),
        key=lambda p: p.name,
    )


def list_runs(runs_dir: str | os.PathLike | None = None) -> "pd.DataFrame":
    """Every run, newest first: id, name (short: variant, dataset and its number among
    their runs), variant, dataset, recipe, state, epoch, epochs,
    best_val_acc, test_acc (at the best validation epoch), last_test_acc,
    duration_s (training time), created (datetime), error, lr, batch_size,
    input_size (None: the variant's own), owner (``create_run``), device ("cuda:1").

    A damaged run (``status``) is listed with state ``damaged``, the reason in
    ``error`` and whatever of its files could be read; one bad run never keeps
    the others from being listed."""
    import pandas as pd

    rows = []
    now = time.time()
    run_dirs = _run_dirs(paths.runs_root(runs_dir))
    read = {run_dir.name: read_run_files(run_dir) for run_dir in run_dirs}
    numbers = runnames.run_numbers([(run_id, st.get("number")) for run_id, (_, st) in read.items()])
    for run_dir in reversed(run_dirs):
        config, st = read[run_dir.name]
        config = config or {}
        duration = st.get("active_s")
        if st["state"] == "running" and st.get("session_started"):
            duration = (duration or 0.0) + now - st["session_started"]
        variant, dataset = config.get("variant"), config.get("dataset")
        rows.append({
            "id": run_dir.name, "name": runnames.short_name(variant, dataset, numbers[run_dir.name]),
            "variant": variant, "dataset": dataset,
            "recipe": config.get("recipe"), "state": st["state"], "epoch": st.get("epoch"),
            "epochs": config.get("epochs", st.get("epochs")), "best_val_acc": st.get("best_val_acc"), "test_acc": st.get("test_acc"),
            "last_test_acc": st.get("last_test_acc"), "duration_s": duration,
            "created": datetime.fromtimestamp(st["created"]) if st.get("created") else None, "error": st.get("error"),
            **{key: config.get(key) for key in ("lr", "batch_size", "input_size")}, "owner": st.get("owner"),
            "device": st.get("device"),
        })
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    frame["name"] = runnames.distinct(list(frame["name"]), list(frame["id"]))
    return frame


def training_speeds(runs_dir: str | os.PathLike | None = None) -> "pd.DataFrame":
    """What this machine's runs measured: per variant, the training speed of its
    newest run that has trained (the recent-window images/s its status.json
    last recorded), a run at the variant's native input size preferred.

    Columns: variant, images_per_s, input_size, batch_size, device, run. A
    variant that no run has trained has no row; damaged runs are left out."""
    import pandas as pd

    from alexnet_core import variants

    recorded_runs = []
    for run_dir in _run_dirs(paths.runs_root(runs_dir)):
        config, recorded = read_run_files(run_dir)
        if config is not None and recorded["state"] != "damaged":
            recorded_runs.append((recorded.get("created") or 0, run_dir.name, config, recorded))
    found: dict[str, dict] = {}
    for _, name, config, recorded in sorted(recorded_runs, key=lambda r: (r[0], r[1]), reverse=True):  # newest first
        rate = recorded.get("images_per_s")
        try:
            native = variants.get_spec(config["variant"]).input_size
            size = int(config.get("input_size") or native)
        except (ValueError, TypeError):
            continue  # a config of a variant not here (a hand edit, another version)
        if not rate:
            continue
        kept = found.get(config["variant"])
        if kept is None or (kept["input_size"] != native and size == native):
            found[config["variant"]] = {
                "variant": config["variant"], "images_per_s": float(rate), "input_size": size,
                "batch_size": config.get("batch_size"), "device": recorded.get("device"), "run": name,
            }
    return pd.DataFrame(list(found.values()), columns=["variant", "images_per_s", "input_size", "batch_size", "device", "run"])


def read_config(run_id: str, runs_dir: str | os.PathLike | None = None) -> TrainConfig:
    """The run's ``TrainConfig``. A hand-edited or damaged config.json (an
    unknown variant or dataset, say) raises ``RunError`` naming the file and
    what is wrong. The device is not checked: a run trained on a GPU can still
    be inspected on a laptop."""
    from alexnet_core import datasets, variants

    path = _existing_run(run_id, runs_dir) / "config.json"
    try:
        config = TrainConfig.from_json(path)
        variants.get_spec(config.variant)
        datasets.get_info(config.dataset)
        return config
    except (ValueError, TypeError, OSError) as exc:
        raise RunError(f"The run's {path} cannot be used: {exc}") from None


def log_tail(run_id: str, lines: int = 50, runs_dir: str | os.PathLike | None = None) -> str:
    """The last ``lines`` lines of the run's process output (``log.txt``)."""
    path = _existing_run(run_id, runs_dir) / "log.txt"
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


# --------------------------------------------------------------------------- #
# Metrics and predictions


def read_metrics(run_id: str, offset: int = 0, runs_dir: str | os.PathLike | None = None, *,
                 max_bytes: int | None = None, step_every: int = 1) -> tuple[list[dict], int]:
    """Events appended since byte ``offset``; returns (events, new offset).

    Reads only the bytes after ``offset`` (at most ``max_bytes``), parsing only
    every ``step_every``-th step event; a torn last line is left for the next
    call (``runlogs.read_events``).
    """
    return read_events(_existing_run(run_id, runs_dir) / "metrics.jsonl", offset,
                       max_bytes=max_bytes, step_every=step_every)


def metrics_frames(run_id: str, runs_dir: str | os.PathLike | None = None, *, steps: bool = True,
                   ) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(steps, epochs) DataFrames of the whole run (``runlogs.frames_from_events``);
    ``steps=False`` reads the epochs alone (steps empty), skipping the step lines unparsed.

    steps: epoch, step, batch, loss, lr, images_per_s, time.
    epochs: epoch, step, train/val/test loss and acc, lr, epoch_time, train_time, eval_time, best, time.
    """
    path = _existing_run(run_id, runs_dir) / "metrics.jsonl"
    events, _ = read_events(path, 0, None if steps else ("epoch", "resume"))
    return frames_from_events(events)


def prediction_epochs(run_id: str, runs_dir: str | os.PathLike | None = None) -> list[int]:
    """Epochs whose test-split predictions are saved, ascending."""
    return saved_prediction_epochs(_existing_run(run_id, runs_dir) / "predictions")


def read_predictions(run_id: str, epoch: int | None = None, runs_dir: str | os.PathLike | None = None) -> "pd.DataFrame":
    """The test split's per-sample predictions after ``epoch`` (None: the latest).

    Columns: index (position in the test split), label, pred, p_pred, p_true,
    loss. Empty when no epoch has finished yet; an epoch that was not saved
    raises ``RunError`` listing those that were.
    """
    epochs = prediction_epochs(run_id, runs_dir)
    if epoch is None and not epochs:
        import pandas as pd

        return pd.DataFrame({c: [] for c in PREDICTION_COLUMNS})
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise RunError(f"Run {run_id} has no predictions for epoch {epoch}; saved epochs: {epochs or 'none yet'}.")
    path = prediction_path(run_path(run_id, runs_dir), epoch)
    try:
        return read_predictions_file(path)
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"Predictions file {path} cannot be read: {exc}") from None


# --------------------------------------------------------------------------- #
# Models


def _checkpoint(run_id: str, which: str, runs_dir) -> dict:
    from alexnet_core import checkpoints

    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}.")
    path = _existing_run(run_id, runs_dir) / f"{which}.pt"
    if not path.exists():
        raise checkpoints.CheckpointError(
            f"Run {run_id} has no {which}.pt yet ({path}): it is written at the end of the first epoch"
            + (" or when the run is stopped." if which == "last" else ".")
        )
    return checkpoints.load_checkpoint(path)


def load_model(run_id: str, which: str = "best", runs_dir: str | os.PathLike | None = None) -> tuple["nn.Module", TrainConfig]:
    """The run's model from ``best.pt`` (chosen by validation accuracy) or ``last.pt``, in eval mode on the CPU.

    Loaded with ``torch.load(..., weights_only=True)``. A missing, truncated or
    corrupt checkpoint raises ``CheckpointError`` naming the file.
    """
    from alexnet_core import checkpoints

    checkpoint = _checkpoint(run_id, which, runs_dir)
    return checkpoints.model_from_checkpoint(checkpoint), TrainConfig.from_dict(checkpoint["config"])


def checkpoint_info(run_id: str, which: str = "best", runs_dir: str | os.PathLike | None = None) -> dict:
    """What a checkpoint holds besides weights: epoch, step, best_val_acc, best_epoch,
    best_test_acc, classes, mean, std, model_args (in_channels, num_classes, input_size), path."""
    checkpoint = _checkpoint(run_id, which, runs_dir)
    keys = ("epoch", "batch", "step", "best_val_acc", "best_epoch", "best_test_acc", "last_test_acc",
            "classes", "mean", "std", "model_args", "path")
    return {k: checkpoint.get(k) for k in keys}


def evaluate_run(run_id: str, which: str = "best", runs_dir: str | os.PathLike | None = None):
    """Evaluate a run's checkpoint on its dataset's test split (on the CPU).

    Returns ``(evaluation.EvalResult, info)`` with info as ``checkpoint_info`` plus ``dataset``.
    """
    from alexnet_core import builders, checkpoints, evaluation

    checkpoint = _checkpoint(run_id, which, runs_dir)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = checkpoints.model_from_checkpoint(checkpoint)
    dataset = builders.load_data(config)
    channels_last = config.resolved_channels_last("cpu")
    if channels_last:
        import torch

        model = model.to(memory_format=torch.channels_last)
    result = evaluation.evaluate(
        model, dataset.test_x, dataset.test_y, mean=checkpoint["mean"], std=checkpoint["std"], device="cpu",
        batch_size=max(64, 2 * config.batch_size), channels_last=channels_last, window=config.windows[1],
    )
    info = {k: checkpoint.get(k) for k in ("epoch", "step", "best_val_acc", "best_epoch", "classes", "model_args", "path")}
    info["dataset"] = config.dataset
    return result, info


# --------------------------------------------------------------------------- #
# The training process


def run_worker(run_dir: str | os.PathLike, *, resume: bool = False, progress=None) -> dict:
    """The body of a run's process: wait for a slot in the queue, then train.

    Used by ``python -m alexnet_core train --run-dir DIR [--resume]`` (which
    ``launch`` starts) and by the CLI's foreground ``train``. Returns
    ``training.train``'s summary, or the status when cancelled while queued.
    """
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a run folder (no config.json).")
    update_status(run_dir, pid=os.getpid(), proc_start=process_start_time(os.getpid()))
    placed = placement.take_slots(run_dir, progress)
    if placed is None:
        return {**_status_of(run_dir), "run_dir": str(run_dir)}
    try:
        try:
            config = TrainConfig.from_json(run_dir / "config.json")
        except ConfigError as exc:
            update_status(run_dir, state="failed", error=str(exc), finished=time.time())
            return {"state": "failed", "error": str(exc), "run_dir": str(run_dir)}
        if config.nproc_per_node > 1:  # DistributedDataParallel: torchrun starts the ranks, rank 0 writes here
            placement.run_ranks(run_dir, placed, processes=config.nproc_per_node, resume=resume)
            return {**_status_of(run_dir), "run_dir": str(run_dir)}
        gpu = placed.gpu_for_this_process()  # before torch loads: this process sees its GPU alone
        from alexnet_core import training  # torch is imported only now that this run's turn has come

        return training.train(config, run_dir, resume=resume, progress=progress, gpu=gpu)
    finally:
        placed.release()

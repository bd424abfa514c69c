"""What a run writes as it trains, torch-free: its metrics lines and its per-epoch predictions.

Public API::

    MetricsWriter(path)                 appends one complete JSON line per event
    read_events(path, offset=0, kinds=None, max_bytes=None, step_every=1) -> (events, new offset)
    frames_from_events(events) -> (steps DataFrame, epochs DataFrame);  STEP_COLUMNS, EPOCH_COLUMNS
    prediction_path(run_dir, epoch);  saved_prediction_epochs(folder)
    read_predictions_file(path) -> DataFrame of PREDICTION_COLUMNS
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet_core.runfiles import jsonable

if TYPE_CHECKING:
    import pandas as pd

STEP_COLUMNS = ["epoch", "step", "batch", "loss", "lr", "images_per_s", "time"]
EPOCH_COLUMNS = [
    "epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "lr", "epoch_time", "train_time", "eval_time", "best", "time",
]
PREDICTION_COLUMNS = ["index", "label", "pred", "p_pred", "p_true", "loss"]


# --------------------------------------------------------------------------- #
# metrics.jsonl: one complete JSON object per line


class MetricsWriter:
    """Appends events to ``metrics.jsonl``: one complete line per write, flushed at once."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._drop_torn_tail()
        self._file = open(self.path, "a", encoding="utf-8")

    def _drop_torn_tail(self) -> None:
        # A process killed mid-write may leave a line without its newline; appending to
        # it would glue two events together. Readers never returned it, so cut it off.
        try:
            with open(self.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                back = min(size, 1 << 20)
                f.seek(size - back)
                tail = f.read(back)
                if tail.endswith(b"\n"):
                    return
                cut = tail.rfind(b"\n")
                if cut >= 0 or back == size:
                    f.truncate(size - back + cut + 1)
                else:  # an absurdly long torn line: end it, readers skip what is not JSON
                    f.write(b"\n")
        except FileNotFoundError:
            pass

    def write(self, event: dict) -> None:
        line = json.dumps(jsonable(event), separators=(",", ":")) + "\n"
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _marks(kind: str) -> tuple[bytes, ...]:
    """How a line of that event type reads (``"type":"..."`` as MetricsWriter writes it)."""
    return tuple(f'"type":{space}"{kind}"'.encode() for space in ("", " "))


def read_events(path: str | os.PathLike, offset: int = 0, kinds: tuple[str, ...] | None = None, *,
                max_bytes: int | None = None, step_every: int = 1) -> tuple[list[dict], int]:
    """Events appended to a ``metrics.jsonl`` since byte ``offset``; returns (events, new offset).

    Reads only the bytes after ``offset`` (at most ``max_bytes`` of them). A torn
    last line (a writer killed mid-line, or one still writing) is left for the
    next call: the new offset is the end of the last complete line. Lines that
    are not a JSON object are skipped. With ``kinds``, only events of those
    types are parsed; with ``step_every`` n, only every n-th step event: the
    others, most of a long run's lines, are skipped by their text unparsed.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(-1 if max_bytes is None else max_bytes)
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        # A line longer than max_bytes is no event: step over it.
        return [], offset + (len(chunk) if max_bytes is not None and len(chunk) == max_bytes else 0)
    events = []
    wanted = None if kinds is None else tuple(mark for kind in kinds for mark in _marks(kind))
    step, seen = _marks("step"), 0
    for line in chunk[:end].split(b"\n"):
        if wanted is not None and not any(w in line for w in wanted):
            continue
        if step_every > 1 and any(w in line for w in step):
            seen += 1
            if seen % step_every:
                continue
        if line.strip():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):  # a hand-edited file can hold any JSON value
                    events.append(event)
    return events, offset + end + 1


def frames_from_events(events: list[dict]) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(steps, epochs) DataFrames from metric events in file order.

    steps: ``STEP_COLUMNS``; epochs: ``EPOCH_COLUMNS``. Events a resume
    superseded (steps after the checkpoint it continued from, written before the
    process died) are dropped, so the curves are those of the run as it was
    finally computed.
    """
    import pandas as pd

    steps: list[dict] = []
    epochs: list[dict] = []
    for event in events:
        kind = event.get("type")
        if kind == "step":
            steps.append(event)
        elif kind == "epoch":
            epochs.append(event)
        elif kind == "resume":
            step, epoch = event.get("step", 0), event.get("epoch", 0)
            steps = [e for e in steps if e.get("step", 0) <= step]
            epochs = [e for e in epochs if e.get("epoch", 0) <= epoch]
    step_frame = pd.DataFrame([{k: e.get(k) for k in STEP_COLUMNS} for e in steps], columns=STEP_COLUMNS)
    epoch_frame = pd.DataFrame([{k: e.get(k) for k in EPOCH_COLUMNS} for e in epochs], columns=EPOCH_COLUMNS)
    return step_frame, epoch_frame


# --------------------------------------------------------------------------- #
# predictions/epoch-NNN.npz: the test split's per-sample predictions after an epoch


def prediction_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """Where the predictions after ``epoch`` are saved."""
    return Path(run_dir) / "predictions" / f"epoch-{epoch:03d}.npz"


def saved_prediction_epochs(folder: str | os.PathLike) -> list[int]:
    """Epochs whose predictions are saved in ``folder``, ascending."""
    folder = Path(folder)
    found = []
    for path in folder.glob("epoch-*.npz") if folder.is_dir() else ():
        match = re.fullmatch(r"epoch-(\d+)\.npz", path.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def read_predictions_file(path: str | os.PathLike) -> "pd.DataFrame":
    """A predictions file as a DataFrame of ``PREDICTION_COLUMNS``; a damaged one raises
    OSError, ValueError or KeyError."""
    import numpy as np
    import pandas as pd

    with np.load(path, allow_pickle=False) as arrays:
        return pd.DataFrame({c: arrays[c] for c in PREDICTION_COLUMNS})

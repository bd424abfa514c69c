"""Checkpoints: state_dicts plus config, written atomically, read with ``weights_only``.

Public API::

    CheckpointError(RuntimeError)   a checkpoint that cannot be read; the message names the file
    CheckpointWriteError(OSError)   a checkpoint that could not be written
    CHECKPOINT_FORMAT
    save_checkpoint(state, path)    temp file + fsync + rename
    CheckpointWriter()              writes on a thread of its own: submit(writes, label), wait()
    load_checkpoint(path) -> dict;  model_from_checkpoint(checkpoint) -> nn.Module (eval mode)

A checkpoint is a dict: ``model`` (state_dict), ``model_args`` (in_channels,
num_classes, input_size), ``config`` (``TrainConfig.to_dict()``), classes,
mean/std, epoch/step and the best-epoch record; ``last.pt`` adds what a resume
needs (optimizer, scheduler, sums, random states). Never a pickled module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path

import torch
from torch import nn

from alexnet_core import variants
from alexnet_core.config import TrainConfig
from alexnet_core.runfiles import disk_full_reason, torch_load_reason

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupt; the message names the file."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (read-only folder, disk full)."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename it over ``path``.

    On failure the temp file is removed, ``path`` is untouched and
    ``CheckpointWriteError`` says why (a full disk as "the disk is full (N MB
    free in <folder>)", not as PyTorch's "unexpected pos").
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # RuntimeError: torch's own zip writer failing
        with contextlib.suppress(OSError):
            tmp.unlink()
        code = getattr(exc, "errno", None)
        if full := disk_full_reason(exc, path.parent):  # PyTorch would say "unexpected pos"
            code = errno.ENOSPC
            raise CheckpointWriteError(code, f"Could not write checkpoint {path.name} ({os.strerror(code)}): {full}; "
                                             "free some space, then resume the run") from exc
        reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [""])[0] or errno.errorcode.get(code or 0, "I/O error")
        raise CheckpointWriteError(code, f"Could not write checkpoint {path.name}: {reason}") from exc


def _snapshot(obj, copies: dict[int, torch.Tensor]):
    """A copy of a checkpoint state whose tensors are on the CPU and no longer shared
    with the model or the optimizer (training goes on changing those in place).
    ``copies`` maps the tensors already copied (by id) to their copy: a tensor in
    several states is copied once."""
    if isinstance(obj, torch.Tensor):
        if id(obj) not in copies:
            copies[id(obj)] = obj.detach().to("cpu", copy=True)
        return copies[id(obj)]
    if isinstance(obj, dict):
        return {k: _snapshot(v, copies) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_snapshot(v, copies) for v in obj)
    return obj


class CheckpointWriter:
    """Writes checkpoints on a thread of its own, so training goes on while the disk works.

    A checkpoint write is serialisation, the write and an fsync: about 70 ms a
    epoch for the quick recipe's 7 + 21 MB, 5% of its 1.3 s epoch, most of it
    waiting on the disk. ``submit`` copies the states (a few ms) and returns;
    the writes happen in order, one batch at a time: a submit first waits for
    the batch before it. ``wait`` waits for the last one. Either raises the
    ``CheckpointWriteError`` of a batch that failed, so a failed write still
    ends the run, at the next checkpoint or at its end, with the file before
    it intact (``save_checkpoint`` writes a temp file and renames it).
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: CheckpointWriteError | None = None
        self.written: str | None = None  # the label of the newest batch on disk
        self.cpu_seconds = 0.0  # the writer thread's CPU time: what it takes from training

    def submit(self, writes: list[tuple[dict, Path]], label: str) -> None:
        self.wait()
        copies: dict[int, torch.Tensor] = {}  # alive until every state is copied, so ids stay unique
        snapshots = [(_snapshot(state, copies), Path(path)) for state, path in writes]
        self._thread = threading.Thread(target=self._write, args=(snapshots, label), name="checkpoints")
        self._thread.start()

    def _write(self, snapshots: list[tuple[dict, Path]], label: str) -> None:
        cpu = time.thread_time()
        try:
            for state, path in snapshots:
                save_checkpoint(state, path)
            self.written = label
        except CheckpointWriteError as exc:
            self._error = exc
        finally:
            self.cpu_seconds += time.thread_time() - cpu

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``torch.load(..., weights_only=True)`` onto the CPU.

    A missing, truncated or corrupt file raises ``CheckpointError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated and cannot be loaded ({torch_load_reason(exc)}).") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "model_args" not in checkpoint:
        raise CheckpointError(f"Checkpoint {path} is not an AlexNet Lab checkpoint (no model weights in it).")
    checkpoint["path"] = str(path)
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (strict), in eval mode."""
    config = TrainConfig.from_dict(checkpoint["config"])
    args = checkpoint["model_args"]
    model = variants.get_model(
        config.variant,
        in_channels=int(args["in_channels"]),
        num_classes=int(args["num_classes"]),
        input_size=int(args["input_size"]),
        **config.variant_options,
    )
    try:
        model.load_state_dict(checkpoint["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"Checkpoint {checkpoint.get('path', '?')} does not match the {config.variant} model: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval()

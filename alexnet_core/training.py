"""TrainConfig, recipes, and the train/evaluate loop.

Public API::

    TrainConfig                 one typed config; validate(), to_dict/from_dict, to_json/from_json
    ConfigError(ValueError)     a config a student can fix; the message says how
    CheckpointError(RuntimeError)  a checkpoint that cannot be read; the message names the file
    RECIPES, list_recipes(), get_recipe(name) -> Recipe(name, title, description, config)
    train(config, run_dir, *, resume=False, progress=None) -> dict
    evaluate(model, x_uint8, y, *, ...) -> EvalResult
    estimate_epoch_seconds(config, steps=3, *, dataset=None) -> float
    load_checkpoint(path) -> dict;  model_from_checkpoint(checkpoint) -> nn.Module

The loop writes everything into the run folder (``DESIGN.md``): ``status.json``
(replaced atomically), ``metrics.jsonl`` (one complete JSON line per event),
``last.pt`` / ``best.pt`` (temp file + rename) and
``predictions/epoch-NNN.npz``. It never prints; ``progress`` receives the same
events it writes.

Protocol: a seeded validation split held out of the training split chooses
``best.pt``; the test split is measured every epoch and reported, never used to
choose anything.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import errno
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_core import data, variants
from alexnet_core.device import DEVICES, resolve_device, seed_everything
from alexnet_core.runs import (  # noqa: F401  (re-exported: the run store's file primitives)
    STATES,
    FileLock,
    jsonable,
    pid_alive,
    process_start_time,
    read_json,
    stop_signals,
    update_status,
    write_json_atomic,
)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle")
MAX_INPUT_SIZE = 1024

STEP_EVENT_INTERVAL_S = 0.25  # step events at most ~4 per second
STATUS_INTERVAL_S = 1.0
RATE_WINDOW_S = 10.0  # the ETA and the status line divide by the rate of the last 10 s of training
CHECKPOINT_INTERVAL_S = 300.0  # mid-epoch last.pt, so a long epoch is never lost whole
CHECKPOINT_FORMAT = 1

Progress = Callable[[dict], None]


class ConfigError(ValueError):
    """A training configuration that cannot run; the message says what to change."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or corrupt; the message names the file."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (read-only folder, disk full)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


# --------------------------------------------------------------------------- #
# Configuration


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` and in every checkpoint.

    Widgets and the CLI both build one of these. ``validate()`` checks every
    field and raises ``ConfigError`` with a sentence a student understands.
    """

    variant: str = "mnist"
    dataset: str = "digits"
    input_size: int | None = None  # None -> the variant's native size
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "none"  # none | step | cosine | onecycle
    step_size: int = 5  # step schedule: every step_size epochs ...
    gamma: float = 0.5  # ... multiply the rate by gamma
    label_smoothing: float = 0.0
    flip: bool = False
    crop_padding: int = 0
    rotation: float = 0.0
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 -> torch's default
    channels_last: bool | None = None  # None -> on where it helps
    data_root: str | None = None
    folder: str | None = None  # image folder for dataset == "folder"
    variant_options: dict = field(default_factory=dict)  # e.g. {"groups": 2} for paper
    recipe: str | None = None  # the recipe it was made from, for display

    # -- derived -------------------------------------------------------------

    @property
    def resolved_input_size(self) -> int:
        """The input side the model is built for: ``input_size`` or the variant's native size."""
        if self.input_size is not None:
            return int(self.input_size)
        return variants.get_spec(self.variant).input_size

    def resolved_channels_last(self, device: torch.device | str | None = None) -> bool:
        """``channels_last`` or, when None, on where it helps: CUDA, and large inputs on the CPU."""
        if self.channels_last is not None:
            return bool(self.channels_last)
        kind = torch.device(device).type if device is not None else resolve_device(self.device).type
        if kind == "cuda":
            return True
        # Measured here: 1.27x on the 224/227 conv stacks; nothing to gain on 28/32-pixel nets.
        # BatchNorm's CPU kernels are slower in channels_last: the bn variant trained at
        # 0.63x (bench --ablate) and 0.85x (interleaved) of its NCHW speed.
        if kind != "cpu" or self.resolved_input_size < 100:
            return False
        return not variants.get_spec(self.variant).batch_norm

    @property
    def augment(self) -> "data.Augment | None":
        """The training augmentation, or None when every option is off."""
        if not (self.flip or self.crop_padding or self.rotation):
            return None
        return data.Augment(flip=bool(self.flip), crop_padding=int(self.crop_padding), rotation=float(self.rotation))

    # -- validation ----------------------------------------------------------

    def validate(self, *, check_data: bool = False, dataset: "data.Dataset | None" = None) -> "TrainConfig":
        """Check every field; return self, or raise ``ConfigError`` saying what to change.

        ``check_data`` also checks that the dataset's files are here right now
        (``data.availability``; never downloads). With a loaded ``dataset`` the
        batch size is checked against the training split too.
        """
        _check_choice("variant", self.variant, variants.list_models())
        _check_choice("dataset", self.dataset, data.list_datasets())
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("device", self.device, DEVICES)

        _check_int("epochs", self.epochs, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("step_size", self.step_size, minimum=1, what="the step schedule's period in epochs")
        _check_int("crop_padding", self.crop_padding, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        _check_int("threads", self.threads, minimum=0, what="CPU threads (0 = PyTorch's default)")

        lr = _check_float("lr", self.lr)
        if not lr > 0:
            raise ConfigError(f"The learning rate (lr) must be greater than 0, got {self.lr}; try 0.01 for SGD or 0.001 for Adam.")
        momentum = _check_float("momentum", self.momentum)
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be at least 0 and below 1 (0.9 is usual), got {self.momentum}.")
        if not _check_float("weight_decay", self.weight_decay) >= 0:
            raise ConfigError(f"weight_decay must be 0 or more (5e-4 is usual), got {self.weight_decay}.")
        if not 0 < _check_float("gamma", self.gamma) <= 1:
            raise ConfigError(f"gamma (the step schedule's factor) must be above 0 and at most 1, e.g. 0.5 halves the rate; got {self.gamma}.")
        if not 0 <= _check_float("label_smoothing", self.label_smoothing) < 1:
            raise ConfigError(f"label_smoothing must be at least 0 and below 1 (0.1 is usual), got {self.label_smoothing}.")
        if not 0 <= _check_float("rotation", self.rotation) <= 180:
            raise ConfigError(f"rotation is the largest random rotation in degrees, from 0 to 180 (10 is usual); got {self.rotation}.")
        if not 0 <= _check_float("val_fraction", self.val_fraction) < 1:
            raise ConfigError(
                f"val_fraction is the share of the training split held out for validation: at least 0 and below 1 "
                f"(0.1 is usual); got {self.val_fraction}."
            )
        for name in ("flip",):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}.")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last must be true, false or empty (automatic), got {self.channels_last!r}.")
        if not isinstance(self.variant_options, dict):
            raise ConfigError(f"variant_options must be a mapping such as {{'groups': 2}}, got {self.variant_options!r}.")
        allowed = variants.get_spec(self.variant).options
        unknown = sorted(set(self.variant_options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"The {self.variant} variant has no option {', '.join(unknown)}; "
                f"its options: {', '.join(allowed) or 'none'}."
            )

        if self.input_size is not None:
            _check_int("input_size", self.input_size, minimum=1, what="the input side in pixels")
        size = self.resolved_input_size
        minimum = variants.min_input_size(self.variant)
        if size < minimum:
            raise ConfigError(
                f"The {self.variant} variant needs an input of at least {minimum}x{minimum} pixels; "
                f"got {size}x{size}. Choose an input size of {minimum} or more."
            )
        if size > MAX_INPUT_SIZE:
            raise ConfigError(f"Input size {size} is too large for this lab; use at most {MAX_INPUT_SIZE}.")

        if self.dataset == "folder" and not self.folder:
            raise ConfigError("The 'folder' dataset needs a folder of images: set folder to a path with one sub-folder per class.")
        try:
            resolve_device(self.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

        if check_data:
            ok, where = data.availability(self.dataset, self.data_root, folder=self.folder)
            if not ok:
                raise ConfigError(f"Dataset {self.dataset!r} is not available: {where}")
        if dataset is not None:
            split_sizes(self, len(dataset.train_y))
        return self

    # -- serialisation -------------------------------------------------------

    def to_dict(self) -> dict:
        """A plain JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        out["variant_options"] = dict(self.variant_options)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict such as ``to_dict()`` wrote; unknown keys raise ``ConfigError``."""
        if not isinstance(values, dict):
            raise ConfigError(f"A training config must be a mapping, got {type(values).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"Unknown config field(s): {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}.")
        values = dict(values)
        if values.get("variant_options") is None:
            values["variant_options"] = {}
        return cls(**values)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a ``config.json``; a missing or malformed file raises ``ConfigError`` naming it."""
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Cannot read the training config {path}: {exc}") from None
        return cls.from_dict(values)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(copy.deepcopy(self), **changes)


def _check_choice(name: str, value, choices) -> None:
    if value not in list(choices):
        raise ConfigError(f"Unknown {name} {value!r}; choose one of: {', '.join(choices)}.")


def _check_int(name: str, value, *, minimum: int, what: str | None = None) -> int:
    label = f"{name} ({what})" if what else name
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{label} must be a whole number, got {value!r}.")
    if value < minimum:
        raise ConfigError(f"{label} must be at least {minimum}, got {value}.")
    return int(value)


def _check_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a finite number, got {value}.")
    return float(value)


def split_sizes(config: TrainConfig, n: int) -> tuple[int, int]:
    """(train, validation) sizes for a training split of ``n`` images; checks the batch size."""
    n_val = int(round(n * config.val_fraction))
    if config.val_fraction > 0:
        n_val = max(n_val, 1)
    n_train = n - n_val
    if n_train < 1:
        raise ConfigError(
            f"Holding out {config.val_fraction:.0%} of {n} training images for validation leaves none to train on; "
            f"lower val_fraction."
        )
    if config.batch_size > n_train:
        raise ConfigError(
            f"The batch size ({config.batch_size}) is larger than the training split: {n_train} images "
            f"after holding out {n_val} for validation. Choose a batch size of at most {n_train}."
        )
    return n_train, n_val


# --------------------------------------------------------------------------- #
# Recipes


@dataclass(frozen=True)
class Recipe:
    """A named preset that reproduces a reference setup."""

    name: str
    title: str
    description: str
    config: TrainConfig

    def make_config(self, **overrides) -> TrainConfig:
        """A fresh copy of the recipe's config (with ``recipe`` set), fields overridden."""
        return self.config.replace(recipe=self.name, **overrides)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "quick",
            "Quick demo: digits in seconds",
            "The MNIST net on scikit-learn's 8x8 digits upscaled to 12x12, the smallest size it takes (the "
            "last pool still sees a 3x3 map), AdamW 2e-3 with a cosine decay, batch 32, 6 epochs: 97-98% "
            "test accuracy in about 10 s on a 2-core CPU, start-up included.",
            TrainConfig(
                variant="mnist", dataset="digits", input_size=12, epochs=6, batch_size=32,
                optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="cosine", seed=0,
            ),
        ),
        Recipe(
            "mnist",
            "MNIST net on Fashion-MNIST",
            "The MNIST post's net for 3 epochs with AdamW 1e-3, a cosine decay, batch 64 and label "
            "smoothing 0.1. Measured with python -m alexnet_core train --recipe mnist on 2 CPU cores "
            "(about 3 min an epoch): 88.1%, 90.7%, 91.3% test accuracy after epochs 1-3 (90.96% without "
            "label smoothing). The post's SGD 0.01 (momentum 0.9, batch 128) reaches 88.0% in 3 epochs with "
            "this net's He initialisation.",
            TrainConfig(
                variant="mnist", dataset="fashion-mnist", epochs=3, batch_size=64, optimizer="adamw",
                lr=1e-3, momentum=0.9, weight_decay=5e-4, schedule="cosine", label_smoothing=0.1,
            ),
        ),
        Recipe(
            "cifar",
            "32x32 CIFAR net on CIFAR-10",
            "The pytorch-cifar10 AlexNet at 32x32: SGD 0.01, momentum 0.9, weight decay 5e-4, batch 128, "
            "flip + 4-pixel crop augmentation, cosine schedule over 30 epochs.",
            TrainConfig(
                variant="cifar", dataset="cifar10", epochs=30, batch_size=128, optimizer="sgd", lr=0.01,
                momentum=0.9, weight_decay=5e-4, schedule="cosine", flip=True, crop_padding=4,
            ),
        ),
        Recipe(
            "paper",
            "2012 paper net on CIFAR-10 at 227",
            "The paper's recipe at 227x227: SGD 0.01, momentum 0.9, weight decay 5e-4, batch 128, the rate "
            "divided by 10 every 10 epochs, flip + crop augmentation (CIFAR-10 upsampled; ImageNet is not bundled).",
            TrainConfig(
                variant="paper", dataset="cifar10", epochs=30, batch_size=128, optimizer="sgd", lr=0.01,
                momentum=0.9, weight_decay=5e-4, schedule="step", step_size=10, gamma=0.1, flip=True,
                crop_padding=4,
            ),
        ),
        Recipe(
            "lrn-cifar10",
            "AlexNet + LRN on CIFAR-10 at 227",
            "The LRN blog post: torchvision layout with LRN, CIFAR-10 upsampled to 227, Adam 1e-3 with the "
            "rate halved every 5 epochs by a scheduler (not by re-creating the optimizer), batch 64.",
            TrainConfig(
                variant="lrn", dataset="cifar10", epochs=20, batch_size=64, optimizer="adam", lr=1e-3,
                weight_decay=0.0, schedule="step", step_size=5, gamma=0.5,
            ),
        ),
        Recipe(
            "bn-catsdogs",
            "BatchNorm AlexNet on a cats-vs-dogs folder at 227",
            "The cats-vs-dogs post: BatchNorm after every conv, 227x227, Adam 1e-4, batch 32, flip "
            "augmentation. Set folder to a folder with cats/ and dogs/ (or train/ and test/) inside.",
            TrainConfig(
                variant="bn", dataset="folder", epochs=10, batch_size=32, optimizer="adam", lr=1e-4,
                weight_decay=0.0, flip=True,
            ),
        ),
        Recipe(
            "torchvision-flowers",
            "torchvision AlexNet on Flowers102 at 224",
            "torchvision's AlexNet on Flowers102 at 224: SGD 0.002, momentum 0.9, batch 32, rotation 10 "
            "degrees + crop + flip augmentation.",
            TrainConfig(
                variant="torchvision", dataset="flowers102", epochs=30, batch_size=32, optimizer="sgd",
                lr=0.002, momentum=0.9, weight_decay=5e-4, flip=True, crop_padding=8, rotation=10.0,
            ),
        ),
    )
}


def list_recipes() -> list[str]:
    """Recipe names, the quick demo first."""
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """A recipe by name; an unknown name raises ``ConfigError`` listing the valid ones."""
    try:
        return RECIPES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}.") from None


# --------------------------------------------------------------------------- #
# Metrics


class RecentRate:
    """Images per second over about the last ``window_s`` seconds of training.

    The ETA and the status line's images/s follow it, not each step event's own
    rate: a browser opening a page on the same two cores slowed one quarter
    second of a 10 s run to 46 images/s, and the ETA jumped to two minutes.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self._parts: collections.deque[tuple[int, float]] = collections.deque()
        self._images, self._seconds = 0, 0.0

    def add(self, images: int, seconds: float) -> float:
        """Count ``images`` trained in ``seconds``; return the recent rate."""
        self._parts.append((images, seconds))
        self._images += images
        self._seconds += seconds
        while len(self._parts) > 1 and self._seconds - self._parts[0][1] >= self.window_s:
            old_images, old_seconds = self._parts.popleft()
            self._images -= old_images
            self._seconds -= old_seconds
        return self._images / max(self._seconds, 1e-9)


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


# --------------------------------------------------------------------------- #
# Checkpoints


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename it over ``path``.

    On failure the temp file is removed, ``path`` is untouched and
    ``CheckpointWriteError`` says why.
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
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated and cannot be loaded ({first_line}).") from None
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


# --------------------------------------------------------------------------- #
# Evaluation


@dataclass
class EvalResult:
    """Loss and accuracy of a split, plus per-sample arrays (in split order)."""

    loss: float
    accuracy: float
    labels: np.ndarray  # int64 (N,)
    pred: np.ndarray  # int64 (N,)
    p_pred: np.ndarray  # float32 (N,) probability of the predicted class
    p_true: np.ndarray  # float32 (N,) probability of the true class
    losses: np.ndarray  # float32 (N,) per-sample cross-entropy

    def save_npz(self, path: str | os.PathLike) -> None:
        """Save compactly (index, label, pred, p_pred, p_true, loss), atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        n = len(self.labels)
        small = np.int16 if max(int(self.labels.max(initial=0)), int(self.pred.max(initial=0))) < 2**15 else np.int32
        try:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    index=np.arange(n, dtype=np.int32),
                    label=self.labels.astype(small),
                    pred=self.pred.astype(small),
                    p_pred=self.p_pred.astype(np.float32),
                    p_true=self.p_true.astype(np.float32),
                    loss=self.losses.astype(np.float32),
                )
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(
    model: nn.Module,
    x_uint8: torch.Tensor,
    y: torch.Tensor,
    *,
    mean,
    std,
    device: torch.device | str = "cpu",
    in_channels: int | None = None,
    size: int | None = None,
    batch_size: int = 256,
    channels_last: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on uint8 images (N, C, H, W) under ``no_grad`` in eval mode.

    The model's previous train/eval mode is restored afterwards. ``in_channels``
    and ``size`` default to the model's own (``model.in_channels``,
    ``model.input_size``). Returns numbers and arrays; prints nothing.
    """
    device = torch.device(device)
    in_channels = in_channels or getattr(model, "in_channels")
    size = size or getattr(model, "input_size")
    was_training = model.training
    n = len(y)
    labels = y.to(torch.int64)
    preds, p_preds, p_trues, losses = [], [], [], []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                xb = data.prepare_batch(
                    x_uint8[start : start + batch_size],
                    in_channels=in_channels, size=size, mean=mean, std=std, device=device,
                    augment=None, channels_last=channels_last,
                )
                yb = labels[start : start + batch_size].to(device)
                with _autocast(device):
                    logits = model(xb)
                logits = logits.float()  # (B, classes)
                probs = logits.softmax(dim=1)
                p_pred, pred = probs.max(dim=1)
                preds.append(pred.cpu())
                p_preds.append(p_pred.cpu())
                p_trues.append(probs.gather(1, yb[:, None])[:, 0].cpu())
                losses.append(F.cross_entropy(logits, yb, reduction="none").cpu())
    finally:
        model.train(was_training)
    if n == 0:
        empty = np.zeros(0, dtype=np.float32)
        return EvalResult(float("nan"), float("nan"), np.zeros(0, np.int64), np.zeros(0, np.int64), empty, empty, empty)
    pred = torch.cat(preds).numpy()
    label_np = labels.cpu().numpy()
    loss_np = torch.cat(losses).numpy()
    return EvalResult(
        loss=float(loss_np.mean()),
        accuracy=float((pred == label_np).mean()),
        labels=label_np,
        pred=pred,
        p_pred=torch.cat(p_preds).numpy(),
        p_true=torch.cat(p_trues).numpy(),
        losses=loss_np,
    )


# --------------------------------------------------------------------------- #
# Building blocks shared by train() and estimate_epoch_seconds()


def load_data(config: TrainConfig) -> "data.Dataset":
    """The config's dataset (never downloads a second time); a problem raises ``ConfigError``."""
    try:
        return data.load_dataset(config.dataset, config.data_root, folder=config.folder)
    except data.DatasetUnavailable as exc:
        raise ConfigError(f"Dataset {config.dataset!r} is not available: {exc}") from None
    except ValueError as exc:  # a folder with no images, one class, an unreadable file...
        raise ConfigError(str(exc)) from None


def _model_args(config: TrainConfig, num_classes: int) -> dict:
    # The dataset is adapted to the variant (channel repeat/average, resize), not the other way round.
    return {
        "in_channels": variants.get_spec(config.variant).in_channels,
        "num_classes": int(num_classes),
        "input_size": config.resolved_input_size,
    }


def _build_model(config: TrainConfig, model_args: dict) -> nn.Module:
    try:
        return variants.get_model(config.variant, **model_args, **config.variant_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def initial_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The network a run of ``config`` on a dataset of ``num_classes`` starts from: its
    weights before the first step (the trainer's seed and arguments), on the CPU, in
    eval mode. The caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _build_model(config, _model_args(config, num_classes)).eval()


def _build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _build_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    """Every schedule is stepped once per batch, so a mid-epoch checkpoint resumes exactly."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size * steps_per_epoch, gamma=config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "onecycle":
        cycle_momentum = config.optimizer != "sgd" or config.momentum > 0
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, cycle_momentum=cycle_momentum)
    return None


def _split_indices(config: TrainConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, validation) index tensors into the training split."""
    n_train, n_val = split_sizes(config, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def _epoch_order(config: TrainConfig, train_idx: torch.Tensor, epoch: int) -> torch.Tensor:
    """The epoch's shuffled indices: a function of (seed, epoch) only, so a resume repeats it."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    return train_idx[torch.randperm(len(train_idx), generator=generator)]


@contextlib.contextmanager
def _torch_threads(threads: int):
    if threads and threads > 0:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    else:
        yield


# --------------------------------------------------------------------------- #
# The loop


class _StopRequested(Exception):
    pass


class _Trainer:
    """One training session in a run folder (a fresh start or a resume)."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool, progress: Progress | None):
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.progress = progress
        self.stop_file = run_dir / "stop"
        self.signalled = threading.Event()
        self.metrics: MetricsWriter | None = None
        self.writer = CheckpointWriter()  # .written: description of the newest intact last.pt
        self.recent = RecentRate()
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches done in the current epoch
        self.step = 0  # global optimizer steps
        self.best_val_acc: float | None = None
        self.best_val_loss: float | None = None
        self.best_epoch: int | None = None
        self.best_test_acc: float | None = None
        self.last_test_acc: float | None = None

    # -- events --------------------------------------------------------------

    def emit(self, event: dict) -> None:
        event.setdefault("time", time.time())
        if self.metrics is not None:
            self.metrics.write(event)
        if self.progress is not None:
            self.progress(event)

    def status(self, **fields) -> None:
        update_status(self.run_dir, **fields)

    # -- setup ---------------------------------------------------------------

    def setup(self) -> None:
        config = self.config
        self.device = resolve_device(config.device)
        self.channels_last = config.resolved_channels_last(self.device)
        self.dataset = load_data(config)
        config.validate(dataset=self.dataset)
        train_idx, val_idx = _split_indices(config, len(self.dataset.train_y))
        self.n_train, self.n_val = len(train_idx), len(val_idx)
        self.steps_per_epoch = self.n_train // config.batch_size  # the ragged last batch is dropped
        self.total_steps = self.steps_per_epoch * config.epochs

        # Small datasets live on the device as uint8; batches are made there.
        ds = self.dataset
        self.train_x = ds.train_x.to(self.device)
        self.train_y = ds.train_y.to(self.device)
        self.train_idx = train_idx.to(self.device)
        self.val_x, self.val_y = ds.train_x[val_idx], ds.train_y[val_idx]
        self.test_x, self.test_y = ds.test_x, ds.test_y
        self.model_args = _model_args(config, ds.num_classes)
        self.batch_kwargs = dict(
            in_channels=self.model_args["in_channels"], size=self.model_args["input_size"],
            mean=ds.mean, std=ds.std, device=self.device, channels_last=self.channels_last,
        )

        seed_everything(config.seed)
        self.model = _build_model(config, self.model_args).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = _build_optimizer(config, self.model)
        self.scheduler = _build_scheduler(config, self.optimizer, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.augment_gen = torch.Generator(device=self.device).manual_seed(config.seed + 1)

        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "train_time": 0.0}

        checkpoint_path = self.run_dir / "last.pt"
        self.resumed_from = None
        if self.resume and checkpoint_path.exists():
            self._restore(load_checkpoint(checkpoint_path))
            self.resumed_from = self.epoch
            self.writer.written = f"last.pt, epoch {self.epoch}"

    def _restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.epoch = int(checkpoint["epoch"])
        self.batch = int(checkpoint.get("batch", 0))
        self.step = int(checkpoint["step"])
        self.best_val_acc = checkpoint.get("best_val_acc")
        self.best_val_loss = checkpoint.get("best_val_loss")
        self.best_epoch = checkpoint.get("best_epoch")
        self.best_test_acc = checkpoint.get("best_test_acc")
        self.last_test_acc = checkpoint.get("last_test_acc")
        self.sums = dict(checkpoint.get("sums") or self.sums)
        rng = checkpoint.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if "augment" in rng:
            self.augment_gen.set_state(rng["augment"])

    # -- checkpoints ---------------------------------------------------------

    def _checkpoint_state(self) -> dict:
        """What best.pt holds: the weights and what they are (last.pt adds ``_training_state``)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "model_args": dict(self.model_args),
            "config": self.config.to_dict(),
            "classes": [str(c) for c in self.dataset.classes],
            "mean": [float(v) for v in self.dataset.mean],
            "std": [float(v) for v in self.dataset.std],
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "best_val_acc": self.best_val_acc,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "best_test_acc": self.best_test_acc,
            "last_test_acc": self.last_test_acc,
        }

    def _training_state(self) -> dict:
        """What a resume needs besides the weights."""
        rng = {"torch": torch.get_rng_state(), "augment": self.augment_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sums": dict(self.sums),
            "rng": rng,
        }

    def save_checkpoints(self, best: bool = False) -> None:
        """Hand last.pt (and best.pt when ``best``) to the checkpoint thread."""
        self._check_finite()
        state = self._checkpoint_state()  # one state_dict: the writer copies its tensors once for both files
        writes = [(state, self.run_dir / "best.pt")] if best else []
        writes.append(({**state, **self._training_state()}, self.run_dir / "last.pt"))
        where = f"epoch {self.epoch}" + (f", batch {self.batch}" if self.batch else "")
        self.writer.submit(writes, f"last.pt, {where}")
        self.last_checkpoint_time = time.perf_counter()

    def last_good(self) -> str | None:
        """The newest last.pt on disk, described, once a write in flight has landed (or failed:
        this is for the message of a run that is ending)."""
        with contextlib.suppress(CheckpointWriteError):
            self.writer.wait()
        return self.writer.written

    # -- the epoch -----------------------------------------------------------

    def _stop_requested(self) -> bool:
        return self.signalled.is_set() or self.stop_file.exists()

    def _check_finite(self) -> None:
        if not math.isfinite(self.sums["loss"]):
            raise NonFiniteLoss(self._nan_reason())

    def _nan_reason(self, value: float | None = None) -> str:
        shown = "nan" if value is None or math.isnan(value) else ("inf" if value > 0 else "-inf")
        kept = f"The last good checkpoint ({good}) is kept." if (good := self.last_good()) else "No checkpoint had been written yet."
        return (
            f"The training loss became {shown} at epoch {self.epoch + 1}, step {self.step}: the learning rate "
            f"({self.config.lr:g}) is probably too high. {kept}"
        )

    def run_epoch(self) -> None:
        config, model = self.config, self.model
        epoch = self.epoch + 1
        order = _epoch_order(self.config, self.train_idx, epoch)
        model.train()
        augment = config.augment
        # Sums since the last sync stay on the device: on a GPU they are read a few times a
        # second, not every step. On the CPU reading them is free, so NaN is caught at once.
        sync_every_step = self.device.type == "cpu"
        self.pending = {"loss": torch.zeros((), device=self.device), "correct": torch.zeros((), dtype=torch.int64, device=self.device), "images": 0}
        event = {"loss": 0.0, "images": 0, "start": time.perf_counter()}
        last_status = time.perf_counter()
        self.epoch_start = time.perf_counter()
        self.train_time_before = self.sums["train_time"]
        B = config.batch_size
        while self.batch < self.steps_per_epoch:
            if self._stop_requested():
                self._sync()
                raise _StopRequested
            idx = order[self.batch * B : (self.batch + 1) * B]
            xb = data.prepare_batch(self.train_x[idx], augment=augment, generator=self.augment_gen, **self.batch_kwargs)
            yb = self.train_y[idx]
            with _autocast(self.device):
                logits = model(xb)
                loss = self.criterion(logits, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self.batch += 1
            self.step += 1
            self.pending["loss"] += loss.detach().float() * len(idx)
            self.pending["correct"] += (logits.detach().argmax(1) == yb).sum()
            self.pending["images"] += len(idx)

            now = time.perf_counter()
            event_due = now - event["start"] >= STEP_EVENT_INTERVAL_S or self.batch == self.steps_per_epoch
            if not (event_due or sync_every_step):
                continue
            loss_sum, images = self._sync()  # raises NonFiniteLoss
            event["loss"] += loss_sum
            event["images"] += images
            if not event_due:
                continue
            now = time.perf_counter()
            rate = event["images"] / max(now - event["start"], 1e-9)  # this event's own: the benchmarks read it
            self.rate = self.recent.add(event["images"], now - event["start"])
            self.emit({
                "type": "step", "epoch": epoch, "step": self.step, "batch": self.batch,
                "steps_per_epoch": self.steps_per_epoch, "loss": event["loss"] / max(event["images"], 1),
                "lr": self.current_lr(), "images_per_s": rate, "eta_s": self.eta(),
            })
            event = {"loss": 0.0, "images": 0, "start": now}
            if now - last_status >= STATUS_INTERVAL_S:
                last_status = now
                self.status(epoch=self.epoch, step=self.step, batch=self.batch, images_per_s=self.rate, eta_seconds=self.eta())
            if now - self.last_checkpoint_time >= CHECKPOINT_INTERVAL_S and self.batch < self.steps_per_epoch:
                self.save_checkpoints()
        self._sync()

    def _sync(self) -> tuple[float, int]:
        """Move the device-side sums into ``self.sums``; returns (loss sum, images) moved."""
        pending = self.pending
        loss_sum, images = float(pending["loss"]), pending["images"]
        if not math.isfinite(loss_sum):
            self.sums["loss"] = loss_sum
            raise NonFiniteLoss(self._nan_reason(loss_sum))
        self.sums["loss"] += loss_sum
        self.sums["correct"] += int(pending["correct"])
        self.sums["seen"] += images
        self.sums["train_time"] = self.train_time_before + time.perf_counter() - self.epoch_start
        pending["loss"].zero_()
        pending["correct"].zero_()
        pending["images"] = 0
        return loss_sum, images

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def eta(self, rate: float | None = None) -> float | None:
        rate = rate or getattr(self, "rate", None)
        if not rate:
            return None
        remaining_steps = self.total_steps - self.step
        remaining_epochs = self.config.epochs - self.epoch
        eval_images = self.n_val + len(self.test_y)
        eval_s = getattr(self, "eval_seconds", None)
        if eval_s is None:
            eval_s = eval_images / (3 * rate)  # a forward pass costs about a third of a training step
        return remaining_steps * self.config.batch_size / rate + remaining_epochs * eval_s

    def _eval_model(self) -> tuple[nn.Module, dict]:
        """The model to evaluate and the batch arguments for it.

        A CPU run that trains in NCHW (the small nets, the BatchNorm one) is
        evaluated on a channels_last copy: forward passes ran 1.39-1.47x faster
        that way here (mnist at 12 and 28 pixels, cifar at 32), while training
        itself gained little at 12 pixels and changed its numerics, so its
        accuracy targets would need measuring again. BatchNorm nets stay as they are.
        """
        kwargs = dict(self.batch_kwargs, batch_size=2 * self.config.batch_size)
        if self.device.type != "cpu" or self.channels_last or variants.get_spec(self.config.variant).batch_norm:
            return self.model, kwargs
        copy_ = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        return copy_, dict(kwargs, channels_last=True)

    def end_epoch(self) -> dict:
        """Evaluate val and test, save predictions and checkpoints, write the epoch event."""
        eval_start = time.perf_counter()
        model, eval_kwargs = self._eval_model()
        val = evaluate(model, self.val_x, self.val_y, **eval_kwargs) if self.n_val else None
        test = evaluate(model, self.test_x, self.test_y, **eval_kwargs)
        del model
        self.eval_seconds = time.perf_counter() - eval_start
        epoch = self.epoch + 1
        predictions = self.run_dir / "predictions"
        predictions.mkdir(exist_ok=True)
        test.save_npz(predictions / f"epoch-{epoch:03d}.npz")

        seen = max(self.sums["seen"], 1)
        event = {
            "type": "epoch", "epoch": epoch, "step": self.step,
            "train_loss": self.sums["loss"] / seen, "train_acc": self.sums["correct"] / seen,
            "val_loss": val.loss if val else None, "val_acc": val.accuracy if val else None,
            "test_loss": test.loss, "test_acc": test.accuracy,
            "lr": self.current_lr(), "train_time": self.sums["train_time"], "eval_time": self.eval_seconds,
        }
        # Best: highest validation accuracy, ties to the lower validation loss; without a
        # validation split, the newest epoch. The test split never chooses.
        improved = val is None or self.best_val_acc is None or (val.accuracy, -val.loss) > (
            self.best_val_acc, -(self.best_val_loss if self.best_val_loss is not None else math.inf))
        self._check_finite()
        self.epoch, self.batch = epoch, 0
        self.last_test_acc = test.accuracy
        if improved:
            self.best_val_acc = val.accuracy if val else None
            self.best_val_loss = val.loss if val else None
            self.best_epoch = epoch
            self.best_test_acc = test.accuracy
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "train_time": 0.0}
        event["best"] = improved
        self.save_checkpoints(best=improved)
        event["epoch_time"] = event["train_time"] + (time.perf_counter() - eval_start)
        self.emit(event)
        self.status(
            epoch=self.epoch, step=self.step, batch=0, best_val_acc=self.best_val_acc, best_epoch=self.best_epoch,
            test_acc=self.best_test_acc, last_test_acc=self.last_test_acc, eta_seconds=self.eta(),
        )
        return event

    # -- the whole session ---------------------------------------------------

    def run(self) -> dict:
        session_start = time.time()
        prior = read_json(self.run_dir / "status.json", default={}) or {}
        active_before = float(prior.get("active_s") or 0.0)
        self.metrics = MetricsWriter(self.run_dir / "metrics.jsonl")
        self.last_checkpoint_time = time.perf_counter()
        state, error = "failed", None
        try:
            self.status(
                state="running", pid=os.getpid(), proc_start=process_start_time(os.getpid()),
                started=prior.get("started") or session_start, finished=None, error=None,
                epochs=self.config.epochs, session_started=session_start, active_s=active_before,
            )
            self.setup()
            self.status(
                epoch=self.epoch, step=self.step, steps_per_epoch=self.steps_per_epoch, device=str(self.device),
                n_train=self.n_train, n_val=self.n_val, n_test=len(self.test_y),
            )
            info = {
                "epochs": self.config.epochs, "steps_per_epoch": self.steps_per_epoch, "step": self.step,
                "n_train": self.n_train, "n_val": self.n_val, "n_test": len(self.test_y), "device": str(self.device),
                "input_size": self.model_args["input_size"], "in_channels": self.model_args["in_channels"],
                "num_classes": self.model_args["num_classes"], "channels_last": self.channels_last,
                "parameters": sum(p.numel() for p in self.model.parameters()),
            }
            if self.resume:
                self.emit({"type": "resume", "epoch": self.epoch, "batch": self.batch, **info})
            else:
                self.emit({"type": "start", "epoch": 0, **info})
            try:
                while self.epoch < self.config.epochs:
                    self.run_epoch()
                    self.end_epoch()
                self.writer.wait()  # the last checkpoint is on disk before the run says finished
                state = "finished"
            except _StopRequested:
                self.save_checkpoints()
                self.writer.wait()
                state = "stopped"
        except NonFiniteLoss as exc:
            error = str(exc)
        except CheckpointWriteError as exc:
            kept = f" The previous checkpoint ({good}) is intact." if (good := self.last_good()) else ""
            error = f"{exc.strerror}.{kept}"
        except OSError as exc:  # predictions or metrics could not be written
            kept = f" The last checkpoint ({good}) is intact." if (good := self.last_good()) else ""
            error = f"Could not write to the run folder: {exc}.{kept}"
        except (ConfigError, CheckpointError) as exc:
            error = str(exc)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                state, error = "interrupted", "Interrupted (Ctrl-C twice); resume continues from the last checkpoint."
            else:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._finish(state, error, session_start, active_before)
            raise
        self._finish(state, error, session_start, active_before)
        return {
            "state": state, "error": error, "epoch": self.epoch, "epochs": self.config.epochs, "step": self.step,
            "best_val_acc": self.best_val_acc, "best_epoch": self.best_epoch, "test_acc": self.best_test_acc,
            "last_test_acc": self.last_test_acc, "run_dir": str(self.run_dir),
        }

    def _finish(self, state: str, error: str | None, session_start: float, active_before: float) -> None:
        with contextlib.suppress(Exception):  # a write in flight when something else failed: let it land
            self.writer.wait()
        now = time.time()
        with contextlib.suppress(Exception):
            self.emit({"type": "end", "state": state, "error": error, "epoch": self.epoch, "step": self.step,
                       "checkpoint_cpu": self.writer.cpu_seconds})
        with contextlib.suppress(Exception):
            self.metrics.close()
        try:
            self.status(
                state=state, error=error, finished=now, eta_seconds=None, active_s=active_before + now - session_start,
                epoch=self.epoch, step=self.step,
            )
        except OSError as exc:  # the folder itself became unwritable: say so where someone can see it
            print(f"alexnet_core: could not record the final state {state!r} in {self.run_dir}: {exc}", file=sys.stderr)


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False, progress: Progress | None = None) -> dict:
    """Train ``config`` in ``run_dir`` (which must exist); return a summary dict.

    Writes status.json, metrics.jsonl, last.pt/best.pt and the test split's
    predictions every epoch. ``resume`` continues from ``last.pt`` (mid-epoch
    if it was written mid-epoch), appending to the same metrics; without a
    ``last.pt`` it starts from scratch. A ``stop`` file in the run folder, or
    SIGTERM/SIGINT, stops at the next step with ``last.pt`` written.

    Run failures (a bad config, an unavailable dataset, a NaN loss, a
    checkpoint that cannot be written) end the run ``failed`` with the reason
    and are returned, not raised: the summary's ``state`` and ``error`` say
    what happened. Unexpected exceptions are recorded, then re-raised.

    ``progress`` receives every event written to metrics.jsonl (``start``,
    ``resume``, ``step``, ``epoch``, ``end``); step events carry ``eta_s``.
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run folder {run_dir} does not exist.")
    trainer = _Trainer(config, run_dir, resume, progress)
    with _torch_threads(config.threads), stop_signals(trainer.signalled):
        return trainer.run()


# --------------------------------------------------------------------------- #
# Estimates


def estimate_epoch_seconds(config: TrainConfig, steps: int = 3, *, dataset: "data.Dataset | None" = None) -> float:
    """Seconds one epoch (training + validation + test evaluation) should take on the chosen device.

    Times ``steps`` real training steps on real batches after one warm-up
    step. Leaves the global RNG as it found it. ``dataset`` saves reloading it.
    """
    config.validate()
    dataset = dataset or load_data(config)
    n_train, n_val = split_sizes(config, len(dataset.train_y))
    device = resolve_device(config.device)
    channels_last = config.resolved_channels_last(device)
    args = _model_args(config, dataset.num_classes)
    batch_kwargs = dict(
        in_channels=args["in_channels"], size=args["input_size"], mean=dataset.mean, std=dataset.std,
        device=device, channels_last=channels_last,
    )
    with _torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = _build_model(config, args).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = _build_optimizer(config, model)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        x = dataset.train_x[: config.batch_size].to(device)
        y = dataset.train_y[: config.batch_size].to(device)
        model.train()

        def one_step() -> None:
            xb = data.prepare_batch(x, augment=config.augment, generator=generator, **batch_kwargs)
            with _autocast(device):
                loss = criterion(model(xb), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            float(loss.detach())  # waits for the device

        one_step()
        start = time.perf_counter()
        for _ in range(max(1, steps)):
            one_step()
        per_step = (time.perf_counter() - start) / max(1, steps)
    train_s = (n_train // config.batch_size) * per_step
    eval_images = n_val + len(dataset.test_y)
    return train_s + eval_images * per_step / config.batch_size / 3  # forward ~ a third of a step

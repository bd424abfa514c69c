"""The training loop, the weights a run starts from, and the epoch estimate.

Public API::

    train(config, run_dir, *, resume=False, progress=None, group=None, gpu=None) -> dict
    initial_model(config, num_classes) -> nn.Module   the weights a run starts from
    estimate_epoch_seconds(config, steps=3, *, dataset=None) -> float   (``estimate``)
    RecentRate, NonFiniteLoss

``config`` is a validated TrainConfig: ``runs.create_run`` validates a launch,
once; the loop builds its parts with ``builders`` and evaluates with ``evaluation``.

The loop writes everything into the run folder (``DESIGN.md``) through
``runfiles`` and ``checkpoints``: ``status.json`` (replaced atomically),
``metrics.jsonl`` (one complete JSON line per event), ``last.pt`` / ``best.pt``
(temp file + rename) and ``predictions/epoch-NNN.npz``. It never prints;
``progress`` receives the same events it writes.

Protocol: a seeded validation split held out of the training split chooses
``best.pt``; the test split is measured every epoch and reported, never used to
choose anything.

Under torchrun (``group``: ``distributed.Ranks``) this is one rank of a
DistributedDataParallel run: each rank trains on its share of every batch,
rank 0 decides when to stop, write events and checkpoints, and alone writes the
folder and evaluates; the folder looks as a single process leaves it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from alexnet_core import builders, insight, streaming, variants
from alexnet_core.batches import prepare_batch
from alexnet_core.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointWriteError,
    CheckpointWriter,
    load_checkpoint,
)
from alexnet_core.config import ConfigError, TrainConfig
from alexnet_core.device import describe, resolve_device, resolve_precision, seed_everything, torch_threads
from alexnet_core.distributed import SOLO, is_lost_peer
from alexnet_core.engine import Engine
from alexnet_core.estimate import RecentRate, estimate_epoch_seconds  # noqa: F401  (callers ask training)
from alexnet_core.evaluation import evaluate
from alexnet_core.predict import test_fingerprint
from alexnet_core.runfiles import (
    check_status,
    disk_full_reason,
    process_start_time,
    read_json,
    remove_stale_temps,
    stop_signals,
    update_status,
)
from alexnet_core.runlogs import MetricsWriter, prediction_path

STEP_EVENT_INTERVAL_S = 0.25  # step events at most ~4 per second
STATUS_INTERVAL_S = 1.0
CHECKPOINT_INTERVAL_S = 300.0  # mid-epoch last.pt, so a long epoch is never lost whole

Progress = Callable[[dict], None]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


# --------------------------------------------------------------------------- #
# The weights a run starts from, and one step


def initial_model(config: TrainConfig, num_classes: int) -> nn.Module:
    """The network a run of ``config`` on a dataset of ``num_classes`` starts from: its
    weights before the first step (the trainer's seed and arguments), on the CPU, in
    eval mode. The caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return builders.build_model(config, builders.model_args(config, num_classes)).eval()


# --------------------------------------------------------------------------- #
# The loop


class _StopRequested(Exception):
    pass


class _Trainer:
    """One training session in a run folder (a fresh start or a resume)."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool, progress: Progress | None,
                 group=SOLO, gpu: int | None = None):
        self.config = config
        self.group = group  # distributed.SOLO, or this rank's distributed.Ranks
        self.main = group.is_main  # rank 0 alone writes the folder
        self.gpu = gpu
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
        if self.main:
            update_status(self.run_dir, **fields)

    # -- setup ---------------------------------------------------------------

    def setup(self) -> None:
        config, group = self.config, self.group
        self.device = resolve_device(config.device, gpu=self.gpu)
        try:
            self.precision = resolve_precision(config.precision, self.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if group.world > 1:
            config.check_machine(processes=group.world)  # the batch is shared by every process
        self.engine = Engine(self.device, self.precision)
        self.channels_last = config.resolved_channels_last(self.device)
        self.dataset = builders.load_data(config)
        train_idx, val_idx = builders.split_indices(config, len(self.dataset.train_y))
        self.n_train, self.n_val = len(train_idx), len(val_idx)
        self.steps_per_epoch = self.n_train // config.batch_size  # the ragged last batch is dropped
        self.total_steps = self.steps_per_epoch * config.epochs

        ds = self.dataset
        placed = builders.place_data(ds, train_idx, val_idx, self.device, evaluates=self.main)
        self.train_x, self.train_y, self.train_idx = placed.train_x, placed.train_y, placed.train_idx
        self.val_x, self.val_y, self.test_x, self.test_y = placed.val_x, placed.val_y, placed.test_x, placed.test_y
        self.model_args = builders.model_args(config, ds.num_classes)
        self.batch_kwargs = builders.batch_kwargs(self.model_args, ds, self.device, self.channels_last,
                                                  window=config.windows[1])

        seed_everything(config.seed)
        self.model = builders.model_on_device(config, self.model_args, self.device, self.channels_last)
        self.optimizer = builders.build_optimizer(config, self.model)
        self.scheduler = builders.build_scheduler(config, self.optimizer, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.module = self.engine.prepare(self.model, compile=config.compile, group=group)
        other = 7919 * group.rank  # each rank draws its own dropout masks and augmentation
        if other:
            torch.manual_seed(config.seed + other)
        self.augment_gen = torch.Generator(device=self.device).manual_seed(config.seed + 1 + other)

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
        self.engine.load_state_dict(checkpoint.get("scaler"))
        rng = checkpoint.get("rng") or {}
        if self.group.world > 1:  # each rank's own, when the run had as many processes
            ranks = rng.get("ranks") or []
            rng = ranks[self.group.rank] if len(ranks) == self.group.world else (rng if self.main else {})
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

    def _training_state(self) -> dict | None:
        """What a resume needs besides the weights (None on the ranks that do not write).
        Every rank calls it at once: rank 0 gathers their random states."""
        rng = {"torch": torch.get_rng_state(), "augment": self.augment_gen.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = self.group.gather(rng)
        if not self.main:
            return None
        if self.group.world > 1:
            rng = {**rng, "ranks": ranks}
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.engine.state_dict(),
            "sums": dict(self.sums),
            "rng": rng,
        }

    def save_checkpoints(self, best: bool = False) -> None:
        """Hand last.pt (and best.pt when ``best``) to the checkpoint thread."""
        self._check_finite()
        training_state = self._training_state()
        self.last_checkpoint_time = time.perf_counter()
        if not self.main:
            return
        state = self._checkpoint_state()  # one state_dict: the writer copies its tensors once for both files
        writes = [(state, self.run_dir / "best.pt")] if best else []
        writes.append(({**state, **training_state}, self.run_dir / "last.pt"))
        where = f"epoch {self.epoch}" + (f", batch {self.batch}" if self.batch else "")
        self.writer.submit(writes, f"last.pt, {where}")

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
        config = self.config
        epoch = self.epoch + 1
        order = builders.epoch_order(self.config, self.train_idx, epoch)
        self.module.train()
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
        streamed = None
        if self.dataset.streamed:
            shards = [self.group.shard(order[b * B: (b + 1) * B]) for b in range(self.batch, self.steps_per_epoch)]
            streamed = streaming.epoch_batches(self.train_x, shards)
        while self.batch < self.steps_per_epoch:
            (stop,) = self.group.decide(self.main and self._stop_requested())
            if stop:
                self._sync()
                raise _StopRequested
            idx = self.group.shard(order[self.batch * B : (self.batch + 1) * B])
            images = next(streamed) if streamed is not None else self.train_x[idx.to(self.train_x.device)]
            xb = prepare_batch(images, augment=augment, generator=self.augment_gen, **self.batch_kwargs)
            yb = self.train_y[idx]
            logits, loss = self.engine.step(self.module, self.optimizer, self.criterion, xb, yb)
            if self.scheduler is not None:
                self.scheduler.step()
            self.batch += 1
            self.step += 1
            self.pending["loss"] += loss.detach().float() * len(idx)
            self.pending["correct"] += (logits.detach().argmax(1) == yb).sum()
            self.pending["images"] += len(idx)

            now = time.perf_counter()
            event_due = now - event["start"] >= STEP_EVENT_INTERVAL_S or self.batch == self.steps_per_epoch
            checkpoint_due = now - self.last_checkpoint_time >= CHECKPOINT_INTERVAL_S and self.batch < self.steps_per_epoch
            event_due, checkpoint_due = self.group.decide(event_due, event_due and checkpoint_due)  # rank 0's clock
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
            if checkpoint_due:
                self.save_checkpoints()
        self._sync()

    def _sync(self) -> tuple[float, int]:
        """Move the device-side sums into ``self.sums``; returns (loss sum, images) moved."""
        pending = self.pending
        if self.group.world > 1:  # every rank's sums, so every rank sees the same numbers
            images = torch.tensor(float(pending["images"]), dtype=torch.float64, device=self.device)
            total = self.group.sum(torch.stack([pending["loss"].double(), pending["correct"].double(), images]))
            loss_sum, correct, images = total.tolist()
            correct, images = int(correct), int(images)
        else:
            loss_sum, correct, images = float(pending["loss"]), int(pending["correct"]), pending["images"]
        if not math.isfinite(loss_sum):
            self.sums["loss"] = loss_sum
            raise NonFiniteLoss(self._nan_reason(loss_sum))
        self.sums["loss"] += loss_sum
        self.sums["correct"] += correct
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
        kwargs = dict(self.batch_kwargs, batch_size=2 * self.config.batch_size, precision=self.precision)
        if self.device.type != "cpu" or self.channels_last or variants.get_spec(self.config.variant).batch_norm:
            return self.model, kwargs
        copy_ = copy.deepcopy(self.model).to(memory_format=torch.channels_last)
        return copy_, dict(kwargs, channels_last=True)

    def end_epoch(self) -> dict | None:
        """Evaluate val and test, save predictions and checkpoints, write the epoch event.
        Rank 0 alone evaluates and writes; the other ranks join it for the checkpoint."""
        if not self.main:
            self._check_finite()
            self.epoch, self.batch = self.epoch + 1, 0
            self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "train_time": 0.0}
            self.save_checkpoints()
            return None
        eval_start = time.perf_counter()
        model, eval_kwargs = self._eval_model()
        val = evaluate(model, self.val_x, self.val_y, **eval_kwargs) if self.n_val else None
        test = evaluate(model, self.test_x, self.test_y, **eval_kwargs)
        del model
        self.eval_seconds = time.perf_counter() - eval_start
        epoch = self.epoch + 1
        path = prediction_path(self.run_dir, epoch)
        path.parent.mkdir(exist_ok=True)
        test.save_npz(path)
        insight.save_kernels(self.run_dir, epoch, self.model)  # conv1's filters, for the "What it learned" page

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
            images_per_s=self.rate,  # an epoch shorter than STATUS_INTERVAL_S has written none yet
        )
        return event

    # -- the whole session ---------------------------------------------------

    def run(self) -> dict:
        session_start = time.time()
        prior, _ = check_status(read_json(self.run_dir / "status.json", default=None))
        active_before = float(prior.get("active_s") or 0.0)
        self.metrics = MetricsWriter(self.run_dir / "metrics.jsonl") if self.main else None
        self.last_checkpoint_time = time.perf_counter()
        state, error = "failed", None
        try:
            if self.main:
                remove_stale_temps(self.run_dir)  # left by a process killed mid-write; a live writer's are kept
            self.status(
                state="running", pid=os.getpid(), proc_start=process_start_time(os.getpid()),
                started=prior.get("started") or session_start, finished=None, error=None,
                epochs=self.config.epochs, session_started=session_start, active_s=active_before,
            )
            self.setup()
            device = describe(self.device, self.group.world, self.group.machines)
            self.status(
                epoch=self.epoch, step=self.step, steps_per_epoch=self.steps_per_epoch, device=device,
                precision=self.precision, processes=self.group.world,
                n_train=self.n_train, n_val=self.n_val, n_test=len(self.test_y),
                test_fingerprint=test_fingerprint(self.dataset),  # what its predictions' indices point into
            )
            info = {
                "epochs": self.config.epochs, "steps_per_epoch": self.steps_per_epoch, "step": self.step,
                "n_train": self.n_train, "n_val": self.n_val, "n_test": len(self.test_y), "device": device,
                "precision": self.precision, "processes": self.group.world, "compile": self.config.compile,
                "input_size": self.model_args["input_size"], "in_channels": self.model_args["in_channels"],
                "num_classes": self.model_args["num_classes"], "channels_last": self.channels_last,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "storage": self.dataset.storage,
            }
            if self.resume:
                self.emit({"type": "resume", "epoch": self.epoch, "batch": self.batch, **info})
            else:
                self.emit({"type": "start", "epoch": 0, **info})
            if self.resumed_from is None and self.main:  # the weights it starts from: conv1's filters at epoch 0
                insight.save_kernels(self.run_dir, 0, self.model)
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
            error = f"Could not write to the run folder: {disk_full_reason(exc, self.run_dir) or exc}.{kept}"
        except (ConfigError, CheckpointError) as exc:
            error = str(exc)
        except BaseException as exc:
            lost = self.group.world > 1 and (is_lost_peer(exc) or self.signalled.is_set())
            if isinstance(exc, KeyboardInterrupt):
                state, error = "interrupted", "Interrupted (Ctrl-C twice); resume continues from the last checkpoint."
            elif lost:
                state, error = "interrupted", ("Another process of this run ended (killed or failed: its log.txt "
                                               "says which); resume continues from the last checkpoint.")
            else:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not lost:
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


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False, progress: Progress | None = None,
          group=SOLO, gpu: int | None = None) -> dict:
    """Train ``config`` in ``run_dir`` (which must exist); return a summary dict.

    Writes status.json, metrics.jsonl, last.pt/best.pt and the test split's
    predictions every epoch. ``resume`` continues from ``last.pt`` (mid-epoch
    if it was written mid-epoch), appending to the same metrics; without a
    ``last.pt`` it starts from scratch. A ``stop`` file in the run folder, or
    SIGTERM/SIGINT, stops at the next step with ``last.pt`` written.

    ``config`` is validated already (``runs.create_run`` does it once per
    launch). Run failures (what only the data can tell, such as a batch larger
    than the training split, an unavailable dataset, a NaN loss, a checkpoint
    that cannot be written) end the run ``failed`` with the reason and are
    returned, not raised: the summary's ``state`` and ``error`` say
    what happened. Unexpected exceptions are recorded, then re-raised.

    ``progress`` receives every event written to metrics.jsonl (``start``,
    ``resume``, ``step``, ``epoch``, ``end``); step events carry ``eta_s``.

    ``group``: this rank's ``distributed.Ranks`` under torchrun (rank 0 writes the
    folder; a rank that loses another ends the run ``interrupted``). ``gpu``: the
    CUDA index the run queue placed it on (``device.resolve_device``).
    """
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"Run folder {run_dir} does not exist.")
    trainer = _Trainer(config, run_dir, resume, progress if group.is_main else None, group, gpu)
    with torch_threads(config.threads), stop_signals(trainer.signalled):
        return trainer.run()

"""Evaluation: a model on a split of uint8 images, under ``no_grad`` in eval mode.

Public API::

    evaluate(model, x_uint8, y, *, mean, std, ...) -> EvalResult
    EvalResult(loss, accuracy, labels, pred, p_pred, p_true, losses); save_npz(path)
    autocast(device, precision="auto")   the mixed precision of a forward pass (``device.resolve_precision``)

Pure: the model's train/eval mode is restored, nothing is printed, numbers and
arrays come back.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_core.batches import prepare_batch
from alexnet_core.device import autocast as device_autocast
from alexnet_core.device import resolve_precision


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


def autocast(device: torch.device, precision: str = "auto"):
    """The autocast of ``precision`` on ``device``: auto is bf16 on GPUs that have it, fp16 on
    older GPUs, none on the CPU."""
    return device_autocast(device, resolve_precision(precision, device))


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
    precision: str = "auto",
    window: str = "whole",
) -> EvalResult:
    """Evaluate ``model`` on uint8 images (N, C, H, W) under ``no_grad`` in eval mode.

    The model's previous train/eval mode is restored afterwards. ``in_channels``
    and ``size`` default to the model's own (``model.in_channels``,
    ``model.input_size``); ``window``: how the input is taken from larger stored photos
    (``batches.WINDOWS``: the centre one for a run that trained on random crops).
    Returns numbers and arrays; prints nothing.
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
                xb = prepare_batch(
                    x_uint8[start : start + batch_size],
                    in_channels=in_channels, size=size, mean=mean, std=std, device=device,
                    augment=None, channels_last=channels_last, window=window,
                )
                yb = labels[start : start + batch_size].to(device)
                with autocast(device, precision):
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

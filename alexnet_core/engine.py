"""How a training step runs on its device: precision, cuDNN autotuning, compile, DDP.

    Engine(device, precision)         precision as resolved (``device.resolve_precision``)
    engine.prepare(model, *, compile=False, group=None) -> the module training steps call
    engine.step(module, optimizer, criterion, xb, yb) -> (logits, loss)
    engine.state_dict() / engine.load_state_dict(state)   the fp16 gradient scaler's, for last.pt

fp16 steps go through ``torch.amp.GradScaler``: a small gradient in float16
rounds to zero, so the loss is scaled up before backward and the gradients
down before the update (a step whose gradients overflowed is skipped). bf16 has
float32's range and needs no scaler.
"""

from __future__ import annotations

import torch
from torch import nn

from alexnet_core.device import autocast


class Engine:
    """The training step of one process on ``device`` in a resolved ``precision`` (bf16, fp16, fp32)."""

    def __init__(self, device: torch.device, precision: str):
        self.device = device
        self.precision = precision
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def prepare(self, model: nn.Module, *, compile: bool = False, group=None) -> nn.Module:
        """The module the steps call: ``model`` itself, wrapped in DistributedDataParallel when
        ``group`` has several processes, compiled when asked. Checkpoints keep reading ``model``."""
        if self.device.type == "cuda":
            # Training batches all have one shape: cuDNN times its algorithms once and keeps the fastest.
            torch.backends.cudnn.benchmark = True
        module = model
        if group is not None and group.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            if self.device.type == "cuda":
                # BatchNorm statistics over the global batch, as one process computes them.
                # (SyncBatchNorm runs on GPUs only: on the CPU each process normalises its own share.)
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            module = DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if compile:
            module = torch.compile(module)
        return module

    def step(self, module: nn.Module, optimizer, criterion, xb: torch.Tensor, yb: torch.Tensor):
        """One forward, backward and optimizer step; returns (logits, loss)."""
        with autocast(self.device, self.precision):
            logits = module(xb)
            loss = criterion(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        return logits, loss

    def state_dict(self) -> dict | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)

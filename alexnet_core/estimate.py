"""How long training takes: the rate of the last seconds, and an epoch's estimate.

    RecentRate(window_s)            images per second over about the last 10 s of training
    estimate_epoch_seconds(config, steps=3, *, dataset=None) -> float   a few real steps, timed
"""

from __future__ import annotations

import collections
import time

import torch
from torch import nn

from alexnet_core import builders, datasets
from alexnet_core.batches import prepare_batch
from alexnet_core.config import TrainConfig, split_sizes
from alexnet_core.device import resolve_device, resolve_precision, torch_threads
from alexnet_core.engine import Engine

RATE_WINDOW_S = 10.0  # the ETA and the status line divide by the rate of the last 10 s of training


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


def estimate_epoch_seconds(config: TrainConfig, steps: int = 3, *, dataset: "datasets.Dataset | None" = None) -> float:
    """Seconds one epoch (training + validation + test evaluation) should take on the chosen device.

    Times ``steps`` real training steps on real batches after one warm-up step
    (which also compiles, with ``compile``), in the config's precision. With
    several processes, one process's share of the batch is timed: each trains
    its share at the same time, so the exchange of gradients is left out.
    Leaves the global RNG as it found it. ``dataset`` saves reloading it.
    ``config`` is a validated one (``TrainConfig.validate``).
    """
    dataset = dataset or builders.load_data(config)
    n_train, n_val = split_sizes(config, len(dataset.train_y))
    device = resolve_device(config.device)
    engine = Engine(device, resolve_precision(config.precision, device))
    channels_last = config.resolved_channels_last(device)
    args = builders.model_args(config, dataset.num_classes)
    batch_kwargs = builders.batch_kwargs(args, dataset, device, channels_last)
    share = max(1, config.batch_size // config.nproc_per_node)
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = builders.model_on_device(config, args, device, channels_last)
        optimizer = builders.build_optimizer(config, model)
        module = engine.prepare(model, compile=config.compile)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        x = dataset.train_x[:share].to(device)
        y = dataset.train_y[:share].to(device)
        model.train()

        def one_step() -> None:
            xb = prepare_batch(x, augment=config.augment, generator=generator, **batch_kwargs)
            _, loss = engine.step(module, optimizer, criterion, xb, y)
            float(loss.detach())  # waits for the device

        one_step()
        start = time.perf_counter()
        for _ in range(max(1, steps)):
            one_step()
        per_step = (time.perf_counter() - start) / max(1, steps)
    train_s = (n_train // config.batch_size) * per_step
    eval_images = n_val + len(dataset.test_y)
    return train_s + eval_images * per_step / share / 3  # forward ~ a third of a step

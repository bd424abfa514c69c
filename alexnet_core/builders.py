"""What a TrainConfig builds: its dataset, model, optimizer, schedule, split and batches.

The training loop and the epoch estimate build their parts here, the same way.

    load_data(config) -> datasets.Dataset       a problem raises ConfigError
    model_args(config, num_classes) -> dict     in_channels, num_classes, input_size
    build_model(config, model_args);  model_on_device(config, model_args, device, channels_last)
    batch_kwargs(model_args, dataset, device, channels_last, window) -> prepare_batch's (and evaluate's) arguments
    build_optimizer(config, model);  build_scheduler(config, optimizer, steps_per_epoch)
    split_indices(config, n) -> (train, validation);  epoch_order(config, train_idx, epoch)
    place_data(dataset, train_idx, val_idx, device, evaluates) -> Placed   where each split's images live
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from alexnet_core import datasets, variants
from alexnet_core.config import ConfigError, TrainConfig, split_sizes


def load_data(config: TrainConfig) -> "datasets.Dataset":
    """The config's dataset (never downloads a second time); a problem raises ``ConfigError``."""
    try:
        return datasets.load_dataset(config.dataset, config.data_root, folder=config.folder, **config.stored_photos)
    except datasets.DatasetUnavailable as exc:
        raise ConfigError(f"Dataset {config.dataset!r} is not available: {exc}") from None
    except ValueError as exc:  # a folder with no images, one class, an unreadable file...
        raise ConfigError(str(exc)) from None


def model_args(config: TrainConfig, num_classes: int) -> dict:
    """The variant's constructor arguments for this config: in_channels, num_classes, input_size."""
    # The dataset is adapted to the variant (channel repeat/average, resize), not the other way round.
    return {
        "in_channels": variants.get_spec(config.variant).in_channels,
        "num_classes": int(num_classes),
        "input_size": config.resolved_input_size,
    }


def build_model(config: TrainConfig, args: dict) -> nn.Module:
    """A fresh network of the config's variant, options included; bad options raise ``ConfigError``."""
    try:
        return variants.get_model(config.variant, **args, **config.variant_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def model_on_device(config: TrainConfig, args: dict, device: torch.device, channels_last: bool) -> nn.Module:
    """``build_model`` on ``device``, in channels_last memory when asked."""
    model = build_model(config, args).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def batch_kwargs(args: dict, dataset: "datasets.Dataset", device: torch.device, channels_last: bool,
                 window: str = "whole") -> dict:
    """``prepare_batch``'s arguments that make the model's input from the dataset's images;
    ``window``: the evaluation window (``TrainConfig.windows``; training's comes with its augmentation)."""
    return dict(
        in_channels=args["in_channels"], size=args["input_size"], mean=dataset.mean, std=dataset.std,
        device=device, channels_last=channels_last, window=window,
    )


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer over the model's parameters."""
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    """The config's rate schedule, or None. Every schedule is stepped once per batch, so a mid-epoch checkpoint resumes exactly."""
    total = config.epochs * steps_per_epoch
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size * steps_per_epoch, gamma=config.gamma)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "onecycle":
        cycle_momentum = config.optimizer != "sgd" or config.momentum > 0
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total, cycle_momentum=cycle_momentum)
    return None


def split_indices(config: TrainConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, validation) index tensors into the training split."""
    n_train, n_val = split_sizes(config, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    return order[n_val:].sort().values, order[:n_val].sort().values


def epoch_order(config: TrainConfig, train_idx: torch.Tensor, epoch: int) -> torch.Tensor:
    """The epoch's shuffled indices: a function of (seed, epoch) only, so a resume repeats it."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    return train_idx[torch.randperm(len(train_idx), generator=generator)]


@dataclass
class Placed:
    """A run's splits where the loop reads them: ``train_idx`` indexes ``train_x``."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    train_idx: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _on_device(x: torch.Tensor, device: torch.device, share: float) -> torch.Tensor:
    """``x`` on the device; on a GPU only when it takes under ``share`` of its free memory (256-px
    photos can outgrow a GPU before the RAM), else as it is: each batch is copied over."""
    if device.type == "cuda" and x.numel() * x.element_size() >= share * torch.cuda.mem_get_info(device)[0]:
        return x
    return x.to(device)


def place_data(ds: "datasets.Dataset", train_idx: torch.Tensor, val_idx: torch.Tensor, device: torch.device,
               evaluates: bool) -> Placed:
    """Small datasets live on the device as uint8 and batches are made there; photos too big for
    memory stay files (``streaming.LazyImages``), decoded by DataLoader workers. The images a
    process evaluates (``evaluates``: rank 0) stay on a GPU when they take under a quarter of
    its free memory, so evaluation copies nothing per batch."""
    def for_evaluation(x):
        if not evaluates or device.type != "cuda" or ds.streamed:
            return x
        return _on_device(x, device, 1 / 4)

    val_x = ds.train_x.subset(val_idx) if ds.streamed else ds.train_x[val_idx]
    return Placed(
        train_x=ds.train_x if ds.streamed else _on_device(ds.train_x, device, 1 / 2),
        train_y=ds.train_y.to(device), train_idx=train_idx.to(device),
        val_x=for_evaluation(val_x), val_y=ds.train_y[val_idx],
        test_x=for_evaluation(ds.test_x), test_y=ds.test_y,
    )

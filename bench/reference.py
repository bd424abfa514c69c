"""The reference blog posts' way of training, rebuilt for a fair ratio.

What the posts did, kept on purpose (it is the baseline, not our design):
a ``torch.utils.data.DataLoader`` over a Dataset of PIL images with
per-image torchvision transforms (Resize, ToImage + ToDtype, Normalize, and
per-image flip/crop where they augmented), ``nn.LocalResponseNorm``, NCHW
tensors, and Adam re-created every 5 epochs to halve its rate (its state lost).

The model itself is ours (same weights, same layers), with each ``FastLRN``
swapped for ``nn.LocalResponseNorm`` of the same parameters, so the ratio
measures the loop, the data pipeline, LRN and the memory format, not a
different network.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from alexnet_core.variants import FastLRN

ADAM_RESTART_EPOCHS = 5  # the LRN post: "optimizer = Adam(lr / 2 ** (epoch // 5))" every 5 epochs


def reference_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in NCHW with every FastLRN replaced by nn.LocalResponseNorm."""
    ref = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    for parent in ref.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, FastLRN):
                setattr(parent, name, nn.LocalResponseNorm(child.size, child.alpha, child.beta, child.k))
    return ref


MNIST_POST_RELUS = (1, 2, 5)  # the convs the MNIST post follows with a ReLU; none after conv3, conv4 or a linear layer


def mnist_post_model(model: nn.Module) -> nn.Module:
    """The MNIST post's own network from our ``mnist`` variant (the same widths and layers):
    a ReLU only after conv1, conv2 and conv5, no dropout, and PyTorch's default initialisation
    (the post sets none). ``model`` is left as it is."""
    post = reference_model(model)
    convs = 0
    for i, layer in enumerate(post.features):
        convs += isinstance(layer, nn.Conv2d)
        if isinstance(layer, nn.ReLU) and convs not in MNIST_POST_RELUS:
            post.features[i] = nn.Identity()
    for i, layer in enumerate(post.classifier):
        if isinstance(layer, (nn.ReLU, nn.Dropout)):
            post.classifier[i] = nn.Identity()
    for layer in post.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            layer.reset_parameters()
    return post


def pil_images(x_uint8: torch.Tensor) -> list:
    """uint8 (N, C, H, W) -> a list of PIL images (mode L or RGB), as a torchvision dataset holds them."""
    from PIL import Image

    arr = x_uint8.permute(0, 2, 3, 1).numpy()
    if arr.shape[-1] == 1:
        return [Image.fromarray(a[..., 0], "L") for a in arr]
    return [Image.fromarray(np.ascontiguousarray(a), "RGB") for a in arr]


def pil_transform(
    *, size: int, source: int, mean: Sequence[float], std: Sequence[float],
    flip: bool = False, crop_padding: int = 0, rotation: float = 0.0, channels: int | None = None,
):
    """The posts' per-image pipeline: [augment], Resize, ToImage, ToDtype(float32, scale), Normalize."""
    from torchvision.transforms import v2

    steps = []
    if rotation:
        steps.append(v2.RandomRotation(rotation))
    if crop_padding:
        steps.append(v2.RandomCrop(source, padding=crop_padding))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if size != source:
        steps.append(v2.Resize((size, size)))
    if channels is not None and channels != len(mean):
        steps.append(v2.Grayscale(num_output_channels=channels))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    mean, std = list(mean), list(std)
    if channels is not None and channels != len(mean):
        mean, std = mean[:1] * channels, std[:1] * channels
    steps.append(v2.Normalize(mean, std))
    return v2.Compose(steps)


class PILDataset(torch.utils.data.Dataset):
    """(PIL image, label) pairs with a per-image transform, like torchvision's datasets."""

    def __init__(self, images: list, labels: torch.Tensor, transform: Callable):
        self.images, self.labels, self.transform = images, labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def loader(dataset: PILDataset, batch_size: int, *, workers: int = 0, shuffle: bool = True, seed: int = 0):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, drop_last=shuffle,
        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
    )


class ReferenceLoop:
    """The posts' training loop, one step at a time (so it can be timed step by step).

    Adam at ``lr`` re-created every 5 epochs with the rate halved (state lost),
    or SGD when ``optimizer="sgd"`` (the MNIST post). ``loss.item()`` every step,
    as the posts printed or accumulated it.
    """

    def __init__(self, model: nn.Module, data: torch.utils.data.DataLoader, *, optimizer: str = "adam",
                 lr: float = 1e-3, momentum: float = 0.9):
        self.model, self.data = model, data
        self.kind, self.lr, self.momentum = optimizer, lr, momentum
        self.criterion = nn.CrossEntropyLoss()
        self.epoch = 0
        self.optimizer = self._make_optimizer()
        self._it = iter(self.data)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.kind == "sgd":
            return torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum)
        lr = self.lr / 2 ** (self.epoch // ADAM_RESTART_EPOCHS)
        return torch.optim.Adam(self.model.parameters(), lr=lr)

    def _next(self):
        try:
            return next(self._it)
        except StopIteration:
            self.epoch += 1
            if self.kind == "adam" and self.epoch % ADAM_RESTART_EPOCHS == 0:
                self.optimizer = self._make_optimizer()
            self._it = iter(self.data)
            return next(self._it)

    def step(self) -> float:
        self.model.train()
        images, labels = self._next()
        outputs = self.model(images)
        loss = self.criterion(outputs, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def run_epochs(self, epochs: int) -> float:
        """Train whole epochs from the start of the loader; returns the seconds taken."""
        start = time.perf_counter()
        for _ in range(epochs):
            self.model.train()
            for images, labels in self.data:
                loss = self.criterion(self.model(images), labels)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                loss.item()
            self.epoch += 1
            if self.kind == "adam" and self.epoch % ADAM_RESTART_EPOCHS == 0:
                self.optimizer = self._make_optimizer()
        return time.perf_counter() - start


def reference_accuracy(model: nn.Module, data: torch.utils.data.DataLoader) -> float:
    """Test accuracy, evaluated properly (eval mode, no_grad): only the training loop is the posts'."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in data:
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    model.train()
    return correct / max(total, 1)

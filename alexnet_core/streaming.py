"""Photo datasets bigger than memory: decoded a batch at a time instead of all at once.

``datasets.load_dataset`` keeps small data in memory as uint8 tensors (the fast
path) and streams photos whose decoded size would take more than MEMORY_SHARE of
the memory available now; :func:`plan` says which and why, before anything is
decoded. A streamed split is a :class:`LazyImages`: it indexes like the uint8
tensor it stands for, decoding only what is asked (on threads, for evaluation
and the pages), and training reads it through :func:`epoch_batches`, DataLoader
workers decoding the next batches while the device trains on this one.

Public API::

    plan(n_images, size, channels=3, available_mb=None) -> (stream, sentence)
    LazyImages(files, size, squash, root)   len(), .shape, x[i], x[a:b], x[index tensor], subset(idx)
    epoch_batches(images, index_batches, workers=None) -> iterator of uint8 (B, C, S, S)
    MEMORY_SHARE, STATS_SAMPLE
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from alexnet_core import imagefiles
from alexnet_core.device import available_memory_mb

# Decoded photos may take this share of the memory available when they load; the
# rest is for the network, its batches, the dashboard and the other runs.
MEMORY_SHARE = 0.5
# A streamed dataset's mean and std come from this many of its training photos (seeded).
STATS_SAMPLE = 2_000
MAX_WORKERS = 4


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.1f} MiB"


def plan(n_images: int, size: int, channels: int = 3, available_mb: float | None = None,
         stream: bool | None = None) -> tuple[bool, str]:
    """Whether ``n_images`` photos stored at ``size`` px are streamed, and the sentence that says why.

    ``available_mb``: the memory available now (default ``device.available_memory_mb``; where it
    cannot be read, photos stay in memory). ``stream``: True or False decides, None chooses."""
    need = n_images * channels * size * size
    what = f"{n_images:,} photos at {size}x{size} take {_gib(need)} decoded"
    if stream is not None:
        return stream, (f"Streamed from disk, as asked ({what})." if stream else f"In memory, as asked: {what}.")
    free_mb = available_memory_mb() if available_mb is None else available_mb
    if free_mb is None:
        return False, f"In memory: {what} (this computer does not say how much memory is free)."
    free = free_mb * 2**20
    if need <= MEMORY_SHARE * free:
        return False, f"In memory: {what}, within {MEMORY_SHARE:.0%} of the {_gib(free)} available."
    return True, (f"Streamed from disk, {_workers()} DataLoader workers decoding each batch: {what}, more than "
                  f"{MEMORY_SHARE:.0%} of the {_gib(free)} available.")


def _workers() -> int:
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 1)))


class LazyImages:
    """Photo files standing for a uint8 ``(N, 3, size, size)`` tensor: indexing decodes what it selects.

    ``x[i]`` is ``(3, size, size)``; a slice, a list or an index tensor gives ``(k, 3, size, size)``.
    ``subset(idx)`` is another LazyImages of those files, nothing decoded."""

    dtype = torch.uint8

    def __init__(self, files: Sequence[str], size: int, squash: bool, root: Path | None):
        self.files, self.size, self.squash, self.root = list(files), int(size), bool(squash), root

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), 3, self.size, self.size))

    def dim(self) -> int:
        return 4

    def decode(self, i: int) -> torch.Tensor:
        """One photo as uint8 ``(3, size, size)``."""
        image = imagefiles.decode_image(self.files[i], self.size, self.root, self.squash)
        return torch.from_numpy(image).permute(2, 0, 1)

    def _positions(self, index) -> list[int]:
        if isinstance(index, slice):
            return list(range(len(self.files)))[index]
        if isinstance(index, torch.Tensor):
            return [int(i) for i in index.reshape(-1).tolist()]
        return [int(i) for i in index]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, int) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            return self.decode(int(index))
        files = [self.files[i] for i in self._positions(index)]
        return imagefiles.decode_files(files, self.size, self.root, self.squash)

    def subset(self, index) -> "LazyImages":
        """The photos at ``index`` (a slice, list or index tensor), still undecoded."""
        return LazyImages([self.files[i] for i in self._positions(index)], self.size, self.squash, self.root)

    def __repr__(self) -> str:
        return f"LazyImages({len(self.files)} photos at {self.size}x{self.size}{', squashed' if self.squash else ''})"


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, images: LazyImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images.decode(i)


def epoch_batches(images: LazyImages, index_batches: Sequence[torch.Tensor],
                  workers: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 batches of ``images``, one per index tensor of ``index_batches``, in that order,
    decoded by DataLoader workers a few batches ahead of the training step."""
    batches = [[int(i) for i in b.cpu().tolist()] for b in index_batches]
    loader = torch.utils.data.DataLoader(
        _Decoded(images), batch_sampler=batches, num_workers=_workers() if workers is None else workers,
        pin_memory=torch.cuda.is_available(), persistent_workers=False,
    )
    return iter(loader)

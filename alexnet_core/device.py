"""Device choice, CPU threads and seeding: one place each.

torch is imported when a device is resolved, not with this module: ``config``
lists ``DEVICES`` for a form and the CLI without loading it.
"""

from __future__ import annotations

import contextlib
import random

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """The ``torch.device`` for ``name``: ``auto`` picks cuda, then mps, then cpu; an absent
    device raises ValueError."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was asked for, but this machine has no CUDA GPU; use 'auto' or 'cpu'.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("Device 'mps' was asked for, but this machine has no Apple GPU; use 'auto' or 'cpu'.")
    return torch.device(name)


def seed_everything(seed: int):
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def torch_threads(threads: int):
    """PyTorch's CPU threads set to ``threads`` inside the block (0: leave its default)."""
    import torch

    if threads and threads > 0:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    else:
        yield


def available_memory_mb() -> float | None:
    """Memory the system can give a new process now (Linux's MemAvailable), in MB;
    None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None

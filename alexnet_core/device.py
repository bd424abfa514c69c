"""Device choice and seeding: one place each."""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an absent device raises ValueError."""
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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)

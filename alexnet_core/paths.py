"""Every folder the project reads or writes, in one place.

``ALEXNET_LAB_DATA``  root of datasets in torchvision's layout (default ``./data``)
``ALEXNET_LAB_RUNS``  the run store (default ``./runs``)
``ALEXNET_LAB_CACHE`` decoded-tensor cache (default ``<data root>/.cache``)
"""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_ARCHIVES = {
    # Debian's dataset-fashion-mnist package: the four idx .gz files.
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: the argument, else ``ALEXNET_LAB_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get("ALEXNET_LAB_DATA")
    return Path(env).expanduser().resolve() if env else Path("data").resolve()


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """The run store: the argument, else ``ALEXNET_LAB_RUNS``, else ``./runs``."""
    if runs_dir is not None:
        return Path(runs_dir).expanduser().resolve()
    env = os.environ.get("ALEXNET_LAB_RUNS")
    return Path(env).expanduser().resolve() if env else Path("runs").resolve()


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Where decoded uint8 tensors are cached."""
    env = os.environ.get("ALEXNET_LAB_CACHE")
    return Path(env).expanduser().resolve() if env else data_root(root) / ".cache"


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root``."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True
